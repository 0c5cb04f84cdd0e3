"""SavedModels for the ``show`` and ``run`` tests, built once per test process from fixed values.

- ``tf1``: a TF1-style export made with ``tf.compat.v1.saved_model.Builder`` in graph mode,
  with two MetaGraphs: tag set ``serve`` (signature ``serving_default``: ``x`` float32
  [None, 2] -> ``y`` = x @ w + b) and tag set ``serve,gpu`` (signature ``predict``: ``x`` ->
  ``y2`` = 2 * (x @ w + b)). Both share one set of variables.
- ``edge``: a ``tf.Module`` whose output keys are ``../../escaped`` and ``a/b`` (names that
  must not become paths) plus a string output, with an int32 and a string input.
- ``counter``: TF Serving's counter (ref-typed outputs), see :mod:`legacy_models`.
- ``examples``: a ``tf.Module`` whose ``parse`` signature takes serialized
  ``tf.train.Example`` s (``examples`` string [None]) and parses ``age`` (int64 x2),
  ``education`` (string, variable length) and ``weight`` (float, default 1.0).
"""

from __future__ import annotations

import os

import legacy_models
import numpy as np
import tensorflow as tf

W = np.array([[1.0, -2.0], [0.5, 3.0]], dtype=np.float32)
B = np.array([0.25, -1.0], dtype=np.float32)
_BUILT: dict[str, str] = {}


def build_all(root: str) -> dict[str, str]:
    """Build every model under ``root`` (once per process) and return their paths."""
    if not _BUILT:
        _BUILT["tf1"] = save_tf1_multi_tag_model(os.path.join(root, "tf1"))
        _BUILT["edge"] = save_edge_model(os.path.join(root, "edge"))
        _BUILT["examples"] = save_examples_model(os.path.join(root, "examples"))
        _BUILT["counter"] = legacy_models.save_tf1_counter_model(os.path.join(root, "counter"))
    return dict(_BUILT)


def save_tf1_multi_tag_model(path: str) -> str:
    """Two MetaGraphs (``serve``; ``serve,gpu``) written in graph mode, as TF1 exports were."""
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        w = v1.get_variable("w", initializer=W)
        b = v1.get_variable("b", initializer=B)
        y = tf.identity(tf.matmul(x, w) + b, name="y")
        y2 = tf.identity(2.0 * y, name="y2")
        sess.run(v1.global_variables_initializer())
        info = v1.saved_model.utils.build_tensor_info
        serve = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"x": info(x)}, outputs={"y": info(y)}, method_name="tensorflow/serving/predict"
        )
        gpu = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"x": info(x)}, outputs={"y2": info(y2)}, method_name="tensorflow/serving/predict"
        )
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": serve})
        builder.add_meta_graph(["serve", "gpu"], signature_def_map={"predict": gpu})
        builder.save()
    return path


class EdgeModule(tf.Module):
    """``n`` int32 [None], ``s`` string [None] -> ``../../escaped`` int32 (2n),
    ``a/b`` int32 (byte length of s) and ``text`` string (s upper-cased)."""

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.int32, name="n"), tf.TensorSpec([None], tf.string, name="s")]
    )
    def serve(self, n, s):
        return {"../../escaped": n * 2, "a/b": tf.strings.length(s), "text": tf.strings.upper(s)}


def save_edge_model(path: str) -> str:
    module = EdgeModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


class ExamplesModule(tf.Module):
    """``parse``: serialized Examples -> ``age_sum`` int64 [None], ``n_education`` int64
    [None], ``weight`` float32 [None] (``serving_default`` is the same function)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def parse(self, examples):
        spec = {
            "age": tf.io.FixedLenFeature([2], tf.int64),
            "education": tf.io.VarLenFeature(tf.string),
            "weight": tf.io.FixedLenFeature([], tf.float32, default_value=1.0),
        }
        f = tf.io.parse_example(examples, spec)
        counts = tf.math.bincount(
            tf.cast(f["education"].indices[:, 0], tf.int32), minlength=tf.shape(examples)[0], dtype=tf.int64
        )
        return {"age_sum": tf.reduce_sum(f["age"], axis=1), "n_education": counts, "weight": f["weight"]}


def save_examples_model(path: str) -> str:
    module = ExamplesModule()
    tf.saved_model.save(module, path, signatures={"parse": module.parse, "serving_default": module.parse})
    return path
