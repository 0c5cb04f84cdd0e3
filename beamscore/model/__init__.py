"""The SavedModel side, with no Beam in it: inspect, bind inputs, load, call."""
