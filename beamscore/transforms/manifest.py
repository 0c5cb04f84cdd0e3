"""``WriteManifest``: after every unit is committed, write ``_manifest.json`` last.

The manifest is the commit marker of a job: no manifest, no result. It is written by one
step that runs only after all :class:`~beamscore.transforms.batch.UnitResult` s are in.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import platform
from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam

from beamscore import fs as bfs
from beamscore._version import __version__
from beamscore.transforms.batch import UnitResult

__all__ = ["MANIFEST", "WriteManifest", "versions", "write_manifest"]

MANIFEST = "_manifest.json"


def versions() -> dict[str, str]:
    """Versions of the pieces that made a result (worker images depend on them)."""
    import pyarrow
    import tensorflow as tf

    return {
        "beamscore": __version__,
        "tensorflow": tf.__version__,
        "apache_beam": beam.__version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }


def write_manifest(output: str, header: Mapping[str, Any], results: Iterable[UnitResult]) -> dict:
    """Write ``OUTPUT/_manifest.json`` from the job header and every unit's result."""
    results = sorted(results, key=lambda r: r.unit)
    manifest = {
        **header,
        "outputs": [f for r in results for f in r.files],
        "units": len(results),
        "rows_in": sum(r.rows_in for r in results),
        "rows_out": sum(r.rows_out for r in results),
        "rows_failed": sum(r.rows_failed for r in results),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    fs, root = bfs.filesystem(output)
    temp = bfs.join(root, "_temporary", MANIFEST)
    fs.makedirs(temp.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(temp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
    fs.mv(temp, bfs.join(root, MANIFEST))
    with contextlib.suppress(FileNotFoundError):
        fs.rm(bfs.join(root, "_temporary"), recursive=True)
    return manifest


class WriteManifest(beam.PTransform):
    """Gather all unit results, then write the manifest (one element, written last)."""

    def __init__(self, output: str, header: Mapping[str, Any]) -> None:
        super().__init__()
        self.output = output
        self.header = dict(header)

    def expand(self, results):
        output, header = self.output, self.header
        return (
            results
            | "Gather" >> beam.combiners.ToList()
            | "Write" >> beam.Map(lambda rs: write_manifest(output, header, rs))
        )
