"""SavedModels for the dead-letter, resume and .npy tests, built from fixed values; nothing downloaded.

- ``raising``: ``x`` float32 [None, 4] -> ``y`` = 2x [None, 4] and ``s`` = sum(x) [None];
  ``tf.debugging.assert_less(x[:, 0], 100)``: a row whose first value is 100 or more makes
  the whole call raise (``InvalidArgumentError``), the "model that raises on one row".
- ``escape``: ``x`` -> outputs named ``../x``, ``a/b`` and ``_errors``: output keys that must
  never become paths outside the output dir (nor take the place of beamscore's own files).
- ``slow``: like ``raising`` without the assert, plus a ``tf.while_loop`` of ``ITERATIONS``
  steps per call, so that a job of many small units runs long enough to be killed part-way.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

ITERATIONS = 3000
_BUILT: dict[str, str] = {}


class RaisingModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        check = tf.debugging.assert_less(x[:, 0], 100.0, message="x[:, 0] must be below 100")
        with tf.control_dependencies([check]):
            return {"y": x * 2.0, "s": tf.reduce_sum(x, axis=1)}


class EscapeModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"../x": x[:, 0], "a/b": x * 3.0, "_errors": tf.cast(x[:, 1] > 0, tf.int64)}


class SlowModule(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        _, spin = tf.while_loop(
            lambda i, a: i < ITERATIONS, lambda i, a: (i + 1, a * 0.5), [tf.constant(0), tf.constant(1.0)]
        )
        return {"y": x * 2.0 + spin * 0.0, "s": tf.reduce_sum(x, axis=1)}


def build_all(root: str) -> dict[str, str]:
    """Build every model under ``root`` (once per process) and return their paths."""
    if not _BUILT:
        for name, module in (("raising", RaisingModule()), ("escape", EscapeModule()), ("slow", SlowModule())):
            path = os.path.join(root, name)
            tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
            _BUILT[name] = path
    return dict(_BUILT)


def reference(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """The direct call ``tf.saved_model.load(model).signatures['serving_default'](x=x)``."""
    fn = tf.saved_model.load(model).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(x=tf.constant(x)).items()}
