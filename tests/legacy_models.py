"""SavedModels of the kinds TensorFlow Serving and old exports have, built here with TensorFlow.

Each builder writes one small model and says what is in it; nothing is downloaded.

- :func:`save_tf1_example_model`: a TF1 ``SavedModelBuilder`` export like TF Serving's
  ``half_plus_two``: ``y = 0.5 * x + 2`` over ``tf.io.parse_example`` of a string input of
  unknown rank, signatures ``regress_x_to_y`` (= ``serving_default``), ``classify_x_to_y``
  and ``predict`` (``x`` float [None, 1] -> ``y``); a second MetaGraph ``serve,gpu`` has the
  same signatures computing ``0.5 * x + 3``. No ``fingerprint.pb``.
- :func:`save_tf1_counter_model`: TF Serving's ``saved_model_counter``: a ref variable and
  signatures whose outputs are ref-typed (``float_ref``): ``get_counter`` and
  ``incr_counter`` (no inputs), ``incr_counter_by`` (``delta`` of unknown shape ->
  ``counter`` = AssignAdd), ``scaled`` (``x`` [None] -> ``y`` = assign(buf, 3x)), and a plain
  ``serving_default`` (``x`` -> ``y`` = 2x + 1).
- :func:`to_pbtxt`: a copy of a model with ``saved_model.pbtxt`` instead of ``saved_model.pb``.
- :func:`with_renamed_op`: a copy whose graph uses an op type this TensorFlow does not have.
- :func:`save_shape_model`: a TF2 module with a fixed-shape output ``grid`` (1, 10, 10, 1)
  beside a batch-major ``y``, and a signature ``head`` whose output ``first`` declares
  (-1, 4) but always has one row, and ``constant`` with no inputs.
- :func:`save_fixed_batch_model`: a signature whose input declares a fixed first dimension
  (``x`` float32 [2, 3] -> ``y`` = row sums, [2]).
- :func:`save_dtype_model`: outputs of dtypes Arrow has no type for: ``half`` bfloat16 and
  ``wave`` complex64, beside a plain ``y`` (``x`` float32 [None, 3]); signature ``from_half``
  takes a bfloat16 ``x``; ``scaled`` is ``x * scale`` traced from ``scaled(x, scale=2.0)``: the
  default became a required scalar input ``scale``.
- :func:`save_tf1_sparse_model`: a TF1 export whose ``serving_default`` takes a
  ``sparse_placeholder`` (a ``coo_sparse`` TensorInfo, no tensor name) beside a dense ``x``;
  ``dense_only`` takes ``x`` alone.
- :func:`save_tf1_defaults_model`: a TF1 export whose ``serving_default`` takes ``x`` [None, 3]
  and ``scale`` [None, 3] (a ``placeholder_with_default``, still fed) plus scalar
  ``placeholder_with_default`` inputs ``keep_prob`` (1.0, dropout) and ``is_training`` (False;
  True zeroes ``y``): ``y = dropout(x) * scale``.
- :func:`save_ragged_model`: TF2 signatures over a ``tf.RaggedTensorSpec`` (``serving_default``,
  row sums: SignatureDef inputs ``x`` values and ``x_1`` row splits) and a
  ``tf.SparseTensorSpec`` (``sparse``), beside a dense ``dense`` (``x`` [None, 3]).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow as tf

A, B, B_GPU = 0.5, 2.0, 3.0


def save_tf1_example_model(path: str, b: float = B) -> str:
    """``half_plus_two`` as TF1 exported it (see the module docstring); ``b`` sets the offset."""
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        a = v1.get_variable("a", initializer=np.float32(A))
        bv = v1.get_variable("b", initializer=np.float32(b))
        serialized = v1.placeholder(tf.string, name="tf_example")  # unknown rank, as Estimators export
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        x = tf.identity(parsed["x"], name="x")
        y = tf.add(a * x, bv, name="y")
        y_gpu = tf.add(a * x, np.float32(B_GPU - b) + bv, name="y_gpu")
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map=_example_signatures(serialized, x, y))
        builder.add_meta_graph(["serve", "gpu"], signature_def_map=_example_signatures(serialized, x, y_gpu))
        builder.save()
    return path


def _example_signatures(serialized, x, y) -> dict:
    v1 = tf.compat.v1
    info = v1.saved_model.utils.build_tensor_info
    sig = v1.saved_model.signature_def_utils.build_signature_def
    regress = sig({"inputs": info(serialized)}, {"outputs": info(y)}, "tensorflow/serving/regress")
    return {
        "serving_default": regress,
        "regress_x_to_y": regress,
        "classify_x_to_y": sig({"inputs": info(serialized)}, {"scores": info(y)}, "tensorflow/serving/classify"),
        "predict": sig({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
    }


def save_tf1_counter_model(path: str) -> str:
    """Ref-typed outputs (see the module docstring), which ``tf.saved_model.load`` cannot run."""
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        counter = v1.Variable(0.0, name="counter", use_resource=False)
        buf = v1.Variable(np.zeros(1, np.float32), name="buf", use_resource=False, validate_shape=False)
        delta = v1.placeholder(tf.float32, name="delta")  # no shape, as TF Serving's counter
        x = v1.placeholder(tf.float32, [None], name="x")
        incr = v1.assign_add(counter, delta)
        incr_one = v1.assign_add(counter, 1.0)
        scaled = v1.assign(buf, x * 3.0, validate_shape=False)
        y = tf.identity(x * 2.0 + 1.0, name="y")
        sess.run(v1.global_variables_initializer())
        info = v1.saved_model.utils.build_tensor_info
        sig = v1.saved_model.signature_def_utils.build_signature_def
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(
            sess,
            ["serve"],
            signature_def_map={
                "get_counter": sig({}, {"counter": info(counter)}, "tensorflow/serving/predict"),
                "incr_counter": sig({}, {"counter": info(incr_one)}, "tensorflow/serving/predict"),
                "incr_counter_by": sig({"delta": info(delta)}, {"counter": info(incr)}, "tensorflow/serving/predict"),
                "scaled": sig({"x": info(x)}, {"y": info(scaled)}, "tensorflow/serving/predict"),
                "serving_default": sig({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
            },
        )
        builder.save()
    return path


def session_call(path: str, signature: str, tags: str = "serve", **feeds: np.ndarray) -> dict[str, np.ndarray]:
    """The reference for TF1 models: load into a fresh ``tf.compat.v1`` Session and run the
    SignatureDef's tensor names, as ``saved_model_cli run`` does."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        meta = v1.saved_model.load(sess, tags.split(","), path)
        sd = meta.signature_def[signature]
        fetches = {k: v.name for k, v in sd.outputs.items()}
        return sess.run(fetches, {sd.inputs[k].name: v for k, v in feeds.items()})


def examples(xs) -> np.ndarray:
    """Serialized ``tf.train.Example`` s with one float feature ``x`` each."""
    out = [
        tf.train.Example(
            features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))})
        ).SerializeToString()
        for v in xs
    ]
    return np.array(out, dtype=object)


def write_examples_tfrecord(path: str, xs) -> str:
    with tf.io.TFRecordWriter(path) as writer:
        for record in examples(xs):
            writer.write(record)
    return path


def to_pbtxt(src: str, dst: str) -> str:
    """A copy of the model at ``src`` with its graph as ``saved_model.pbtxt`` (text format)."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(src, dst)
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(dst, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    os.remove(os.path.join(dst, "saved_model.pb"))
    with open(os.path.join(dst, "saved_model.pbtxt"), "w") as f:
        f.write(text_format.MessageToString(sm))
    return dst


def with_renamed_op(src: str, dst: str, old: str, new: str) -> str:
    """A copy of ``src`` whose graph and functions use op type ``new`` wherever ``old`` was."""
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(src, dst)
    pb = os.path.join(dst, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(pb, "rb") as f:
        sm.ParseFromString(f.read())
    renamed = 0
    for mg in sm.meta_graphs:
        nodes = [*mg.graph_def.node, *(n for fn in mg.graph_def.library.function for n in fn.node_def)]
        for node in nodes:
            if node.op == old:
                node.op = new
                renamed += 1
    assert renamed, f"no {old} op in {src}"
    with open(pb, "wb") as f:
        f.write(sm.SerializeToString())
    if os.path.exists(os.path.join(dst, "fingerprint.pb")):
        os.remove(os.path.join(dst, "fingerprint.pb"))
    return dst


def corrupt_data(path: str) -> str:
    """Flip every byte of the weights (the index, and so the checksums it holds, stays intact)."""
    variables = os.path.join(path, "variables")
    (data,) = [f for f in os.listdir(variables) if f.startswith("variables.data")]
    with open(os.path.join(variables, data), "r+b") as f:
        raw = f.read()
        f.seek(0)
        f.write(bytes(b ^ 0xFF for b in raw))
    return path


class ShapeModule(tf.Module):
    """``serving_default``: ``x`` [None, 4] -> ``y`` [None] and ``grid`` (1, 10, 10, 1);
    ``head``: ``x`` -> ``first`` = ``x[:1]``, declared (-1, 4), one row whatever the batch."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.reduce_sum(x, axis=1), "grid": tf.zeros([1, 10, 10, 1]) + tf.reduce_mean(x)}

    @tf.function(input_signature=[])
    def constant(self):
        return {"c": tf.constant([1.0, 2.0])}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def head(self, x):
        first = tf.slice(x, [0, 0], tf.stack([tf.minimum(tf.shape(x)[0], 1), 4]))
        return {"first": tf.ensure_shape(first, [None, 4])}


def save_shape_model(path: str) -> str:
    module = ShapeModule()
    signatures = {"serving_default": module.serve, "head": module.head, "constant": module.constant}
    tf.saved_model.save(module, path, signatures=signatures)
    return path


class FixedBatchModule(tf.Module):
    """``x`` float32 [2, 3] -> ``y`` [2] (row sums): a graph traced for exactly two rows."""

    @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.reduce_sum(x, axis=1) * 10.0}


def save_fixed_batch_model(path: str) -> str:
    module = FixedBatchModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def save_no_signature_model(path: str) -> str:
    """A ``tf.Module`` saved without ``signatures=``: a saved function, no SignatureDef."""
    module = tf.Module()
    module.double = tf.function(lambda x: {"y": x * 2.0}, input_signature=[tf.TensorSpec([None], tf.float32)])
    module.triple = tf.function(lambda x: {"y": x * 3.0}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, path)
    return path


class DtypeModule(tf.Module):
    """``x`` float32 [None, 3] -> ``half`` = bfloat16(x / 7), ``wave`` = complex(x, -x), ``y`` = 2x."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"half": tf.cast(x / 7.0, tf.bfloat16), "wave": tf.complex(x, -x), "y": x * 2.0}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.bfloat16, name="x")])
    def from_half(self, x):
        return {"y": tf.cast(x, tf.float32) * 2.0}

    @tf.function
    def scaled(self, x, scale=tf.constant(2.0)):  # noqa: B008 - the user pattern under test
        return {"y": x * scale}


def save_dtype_model(path: str) -> str:
    module = DtypeModule()
    scaled = module.scaled.get_concrete_function(tf.TensorSpec([None, 3], tf.float32, name="x"))
    signatures = {"serving_default": module.serve, "from_half": module.from_half, "scaled": scaled}
    tf.saved_model.save(module, path, signatures=signatures)
    return path


def save_tf1_sparse_model(path: str) -> str:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        sparse = v1.sparse_placeholder(tf.float32, shape=[None, 5], name="sp")
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        info = v1.saved_model.build_tensor_info
        both = v1.saved_model.build_signature_def(
            {"sp": info(sparse), "x": info(x)},
            {"y": info(tf.sparse.reduce_sum(sparse, axis=1) + tf.reduce_sum(x, 1))},
            "tensorflow/serving/predict",
        )
        dense = v1.saved_model.predict_signature_def({"x": x}, {"y": tf.reduce_sum(x, 1)})
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": both, "dense_only": dense})
        builder.save()
    return path


def save_tf1_defaults_model(path: str) -> str:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        keep = v1.placeholder_with_default(1.0, [], name="keep_prob")
        training = v1.placeholder_with_default(False, [], name="is_training")
        scale = v1.placeholder_with_default(tf.ones([1, 3]), [None, 3], name="scale")
        y = tf.nn.dropout(x, rate=1 - keep) * scale
        y = v1.where(training, y * 0, y)
        inputs = {"x": x, "keep_prob": keep, "is_training": training, "scale": scale}
        builder = v1.saved_model.Builder(path)
        signature = v1.saved_model.predict_signature_def(inputs, {"y": y})
        builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": signature})
        builder.save()
    return path


class RaggedModule(tf.Module):
    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.float32)])
    def serve(self, x):
        return {"y": tf.reduce_sum(x, axis=1)}

    @tf.function(input_signature=[tf.SparseTensorSpec([None, 5], tf.float32)])
    def sparse(self, x):
        return {"y": tf.sparse.reduce_sum(x, axis=1, output_is_sparse=False)}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def dense(self, x):
        return {"y": tf.reduce_sum(x, axis=1)}


def save_ragged_model(path: str) -> str:
    module = RaggedModule()
    signatures = {"serving_default": module.serve, "sparse": module.sparse, "dense": module.dense}
    tf.saved_model.save(module, path, signatures=signatures)
    return path


def build_all(root: str) -> dict[str, str]:
    """Every legacy model the tests use, under ``root`` (name -> path): TF1 exports, a TF
    Serving version dir, ``.pbtxt`` copies, unregistered ops and broken variables."""
    import builders

    p = {name: os.path.join(root, name) for name in ("ex", "counter", "shape", "fixed", "nosig", "two", "base")}
    save_tf1_example_model(p["ex"])
    save_tf1_counter_model(p["counter"])
    save_shape_model(p["shape"])
    save_fixed_batch_model(p["fixed"])
    save_no_signature_model(p["nosig"])
    builders.save_two_signature_model(p["two"])
    save_tf1_example_model(os.path.join(p["base"], "00000123"))
    save_tf1_example_model(os.path.join(p["base"], "00000124"), b=5.0)
    p["ex_txt"] = to_pbtxt(p["ex"], os.path.join(root, "ex_txt"))
    p["two_txt"] = to_pbtxt(p["two"], os.path.join(root, "two_txt"))
    p["text_op"] = with_renamed_op(p["two"], os.path.join(root, "text_op"), "Softmax", "WordpieceTokenizeWithOffsets")
    p["odd_op"] = with_renamed_op(p["two"], os.path.join(root, "odd_op"), "Softmax", "BeamscoreNoSuchOp")
    p["no_index"] = shutil.copytree(p["two"], os.path.join(root, "no_index"))
    os.remove(os.path.join(p["no_index"], "variables", "variables.index"))
    p["bad_index"] = shutil.copytree(p["two"], os.path.join(root, "bad_index"))
    with open(os.path.join(p["bad_index"], "variables", "variables.index"), "wb") as f:
        f.write(b"not a table")
    p["bad_data"] = corrupt_data(shutil.copytree(p["two"], os.path.join(root, "bad_data")))
    p["no_vars_dir"] = shutil.copytree(p["ex"], os.path.join(root, "no_vars_dir"))
    shutil.rmtree(os.path.join(p["no_vars_dir"], "variables"))
    p["dtypes"] = save_dtype_model(os.path.join(root, "dtypes"))
    p["sparse"] = save_tf1_sparse_model(os.path.join(root, "sparse"))
    p["ragged"] = save_ragged_model(os.path.join(root, "ragged"))
    p["defaults"] = save_tf1_defaults_model(os.path.join(root, "defaults"))
    return p
