"""Beam PTransforms and DoFns: read units, run the signature, write units, the manifest."""
