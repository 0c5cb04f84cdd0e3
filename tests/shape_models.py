"""SavedModels whose failures are the model's or the batch's, not a row's (issue 33).

- ``even``: ``x`` float32 [None, 4] -> ``y`` float32 [None] (``x`` times fixed weights,
  summed). It reshapes ``x`` to ``(-1, 2, 4)`` and back, so a call with an odd number of rows
  fails at call time, as a jax2tf export with the polymorphic shape ``(2*b, 8)`` does
  (without needing jax). Every row scores in an even batch.
- ``broken``: the same signature, but a ``tf.debugging.Assert`` on a constant ``False``: every
  call fails whatever its rows (a model that cannot run here: a CUDA-only jax2tf export, a
  ``tf.py_function`` whose Python is gone).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

W = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)


class EvenModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        pairs = tf.reshape(x, [-1, 2, 4])  # odd batches: "Input to reshape is a tensor with ..."
        return {"y": tf.reshape(tf.reduce_sum(pairs * W, axis=2), [-1])}


class BrokenModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        with tf.control_dependencies([tf.debugging.Assert(tf.constant(False), ["this model cannot run here"])]):
            return {"y": tf.reduce_sum(x * W, axis=1)}


def build(root: str) -> dict[str, str]:
    """Save both models under ``root``; return their paths by name."""
    paths = {}
    for name, module in (("even", EvenModule()), ("broken", BrokenModule())):
        paths[name] = os.path.join(root, name)
        tf.saved_model.save(module, paths[name], signatures={"serving_default": module.serve})
    return paths


def expected(x: np.ndarray) -> np.ndarray:
    """What ``even`` gives for the rows ``x`` (in any even batch): ``x @ W``."""
    return x @ W
