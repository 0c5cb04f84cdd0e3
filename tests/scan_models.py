"""SavedModels for the op scan (:mod:`beamscore.model.scan`): models whose signature reaches
files, Python or streams, and real model families that must pass.

Every model's ``serving_default`` takes ``x`` float32 [None, 2] and returns ``y`` float32
[None, 2]. :func:`build_flagged` writes, under ``root``:

- ``reads``: ``y = x + len(read_file(root/secret.txt))`` (``ReadFile``);
- ``writes``: ``y = 2x``, and ``write_file(root/leak/written.txt, sum(x))`` (``WriteFile``);
- ``lists``: ``y = x + len(matching_files(root/*))`` (``MatchingFiles``);
- ``tfrecord``: ``y = x + records in root/data.tfrecord`` read by a ``TFRecordDataset`` inside
  the signature;
- ``py_function``: ``y = tf.py_function(2x)`` (``EagerPyFunc``);
- ``prints``: ``y = 2x`` and ``tf.print(x, output_stream="file://root/leak/printed.txt")``
  (``PrintV2``);
- ``nested``: the ``ReadFile`` inside a ``tf.function`` that the signature's function calls;
- ``cond``: the ``ReadFile`` in one branch of a ``tf.cond``;
- ``tf1_reads``: a TF1 graph whose ``y`` depends on ``ReadFile`` (reached backward from the
  signature's output).

:data:`FLAGGED` names each one's flagged ops. The rest are real families that pass:
:func:`save_moved_lookup_model` (a lookup table initialised from a vocabulary file, an asset,
the export then moved to another directory), :func:`save_keras3_lookup_model` (Keras 3
``StringLookup`` with a vocabulary file, ``model.export``), :func:`save_estimator_model` (a TF1
Estimator-style export: ``tf.Example`` parsing, a vocabulary-file lookup table in the assets,
``legacy_init_op`` initialising it, variables), :func:`save_jax2tf_model` (``jax2tf.convert``:
an ``XlaCallModule`` node) and :func:`save_tf_text_model` (a ``tensorflow_text`` tokenizer), these
two built in a child process (:func:`build_in_child`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf

SPEC = [tf.TensorSpec([None, 2], tf.float32, name="x")]
VOCAB = ["apple", "banana", "cherry"]

#: model -> the ops the scan must flag in its serving_default
FLAGGED = {
    "reads": {"ReadFile"},
    "writes": {"WriteFile"},
    "lists": {"MatchingFiles"},
    "tfrecord": {"TFRecordDataset"},
    "py_function": {"EagerPyFunc"},
    "prints": {"PrintV2"},
    "nested": {"ReadFile"},
    "cond": {"ReadFile"},
    "tf1_reads": {"ReadFile"},
}


def _save(module: tf.Module, path: str) -> str:
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def build_flagged(root: str) -> dict[str, str]:
    """Every model of :data:`FLAGGED` under ``root`` (name -> path), beside ``root/secret.txt``,
    ``root/data.tfrecord`` and an empty ``root/leak/`` where the writing models write."""
    os.makedirs(root, exist_ok=True)
    secret = os.path.join(root, "secret.txt")
    with open(secret, "w") as f:
        f.write("s3cret")
    records = os.path.join(root, "data.tfrecord")
    with tf.io.TFRecordWriter(records) as writer:
        for i in range(3):
            writer.write(f"record {i}".encode())
    leak = os.path.join(root, "leak")
    os.makedirs(leak, exist_ok=True)
    written, printed = os.path.join(leak, "written.txt"), os.path.join(leak, "printed.txt")

    class Reads(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            return {"y": x + tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32)}

    class Writes(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            wrote = tf.io.write_file(written, tf.strings.as_string(tf.reduce_sum(x)))
            with tf.control_dependencies([wrote]):
                return {"y": x * 2.0}

    class Lists(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            return {"y": x + tf.cast(tf.size(tf.io.matching_files(os.path.join(root, "*"))), tf.float32)}

    class Records(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            count = tf.data.TFRecordDataset(records).reduce(np.float32(0), lambda n, _: n + 1.0)
            return {"y": x + count}

    class PyFunction(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            y = tf.py_function(lambda t: t * 2.0, [x], tf.float32)
            return {"y": tf.reshape(y, tf.shape(x))}

    class Prints(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            tf.print(x, output_stream=f"file://{printed}")
            return {"y": x * 2.0}

    @tf.function
    def secret_length():
        return tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32)

    class Nested(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            return {"y": x + secret_length()}

    class Cond(tf.Module):
        @tf.function(input_signature=SPEC)
        def serve(self, x):
            extra = tf.cond(
                tf.reduce_sum(x) > 1e30,
                lambda: tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32),
                lambda: tf.constant(0.0),
            )
            return {"y": x + extra}

    paths = {}
    for name, cls in (
        ("reads", Reads),
        ("writes", Writes),
        ("lists", Lists),
        ("tfrecord", Records),
        ("py_function", PyFunction),
        ("prints", Prints),
        ("nested", Nested),
        ("cond", Cond),
    ):
        paths[name] = _save(cls(), os.path.join(root, name))
    paths["tf1_reads"] = _save_tf1_reads(os.path.join(root, "tf1_reads"), secret)
    return paths


def _save_tf1_reads(path: str, secret: str) -> str:
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        y = tf.identity(x + tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32), name="y")
        info = v1.saved_model.utils.build_tensor_info
        sig = v1.saved_model.signature_def_utils.build_signature_def
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(
            sess,
            ["serve"],
            signature_def_map={"serving_default": sig({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict")},
        )
        builder.save()
    return path


def _vocab_file(directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    return path


class LookupModule(tf.Module):
    """``words`` string [None] -> ``ids`` int64 [None]: the line of each word in the vocabulary
    file (-1 when it is not there), a ``StaticHashTable`` initialised from the file."""

    def __init__(self, vocab: str) -> None:
        super().__init__()
        init = tf.lookup.TextFileInitializer(
            vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticHashTable(init, -1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="words")])
    def serve(self, words):
        return {"ids": self.table.lookup(words)}


def save_moved_lookup_model(root: str) -> str:
    """The lookup model, exported to ``root/built`` then moved to ``root/moved/model`` (the
    vocabulary file it was built from removed): its table reads ``assets/vocab.txt``."""
    vocab = _vocab_file(os.path.join(root, "vocab"))
    built = _save(LookupModule(vocab), os.path.join(root, "built"))
    shutil.rmtree(os.path.dirname(vocab))
    os.makedirs(os.path.join(root, "moved"), exist_ok=True)
    return shutil.move(built, os.path.join(root, "moved", "model"))


def save_keras3_lookup_model(path: str) -> str:
    """Keras 3: ``words`` string [None, 1] -> ``StringLookup(vocabulary=FILE)`` -> one-hot ->
    ``Dense(2)``, exported with ``model.export`` (the vocabulary becomes an asset)."""
    import keras

    vocab = _vocab_file(path + ".vocab")
    keras.utils.set_random_seed(3)
    words = keras.Input(shape=(1,), dtype="string", name="words")
    hot = keras.layers.StringLookup(vocabulary=vocab, output_mode="one_hot")(words)
    out = keras.layers.Dense(2)(keras.layers.Reshape((len(VOCAB) + 1,))(hot))
    keras.Model(words, out).export(path, verbose=False)
    return path


def save_estimator_model(path: str, assets: bool = True) -> str:
    """A TF1 Estimator-style export: ``inputs`` serialized ``tf.Example`` -> ``parse_example``
    of ``word`` (looked up in a vocabulary-file table, an asset) and ``x`` [2] -> ``y`` =
    ``x * w + id``; the table is initialised by ``legacy_init_op``, as Estimators export.
    ``assets=False`` leaves the vocabulary file out of the assets: the model then reads it
    from where it was built (an absolute path outside the model) when it loads."""
    v1 = tf.compat.v1
    vocab = _vocab_file(path + ".vocab")
    with tf.Graph().as_default(), v1.Session() as sess:
        serialized = v1.placeholder(tf.string, [None], name="input_example_tensor")
        features = tf.io.parse_example(
            serialized,
            {"word": tf.io.FixedLenFeature([], tf.string), "x": tf.io.FixedLenFeature([2], tf.float32)},
        )
        vocab_tensor = tf.constant(vocab, name="vocab_path")
        table = v1.lookup.StaticHashTable(
            v1.lookup.TextFileInitializer(
                vocab_tensor,
                tf.string,
                v1.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                v1.lookup.TextFileIndex.LINE_NUMBER,
            ),
            -1,
        )
        if not assets:  # TextFileInitializer lists its path there, and the builder copies what is listed
            tf.compat.v1.get_default_graph().clear_collection(v1.GraphKeys.ASSET_FILEPATHS)
        w = v1.get_variable("w", initializer=np.float32(0.5))
        ids = tf.cast(table.lookup(features["word"]), tf.float32)
        y = tf.identity(features["x"] * w + ids[:, None], name="y")
        sess.run(v1.global_variables_initializer())
        sess.run(v1.tables_initializer())
        info = v1.saved_model.utils.build_tensor_info
        sig = v1.saved_model.signature_def_utils.build_signature_def
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(
            sess,
            ["serve"],
            signature_def_map={
                "serving_default": sig({"inputs": info(serialized)}, {"y": info(y)}, "tensorflow/serving/predict")
            },
            assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),  # as Estimators export
            legacy_init_op=tf.group(v1.tables_initializer(), name="legacy_init_op"),
        )
        builder.save()
    return path


def save_jax2tf_model(path: str) -> str:
    """``jax2tf.convert`` of ``tanh(x @ w)`` for any batch: an ``XlaCallModule`` node."""
    import jax.numpy as jnp
    from jax.experimental import jax2tf

    w = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)

    def predict(x):
        return {"y": jnp.tanh(x @ w)}

    module = tf.Module()
    module.serve = tf.function(
        jax2tf.convert(predict, polymorphic_shapes=["(b, 2)"]), autograph=False, input_signature=SPEC
    )
    return _save(module, path)


def save_tf_text_model(path: str) -> str:
    """``text`` string [None] -> ``tokens`` int64 [None]: words per row, by ``tensorflow_text``'s
    ``WhitespaceTokenizer`` (a custom op, ``TFText>WhitespaceTokenizeWithOffsetsV2``)."""
    import tensorflow_text

    class TextModule(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokenizer = tensorflow_text.WhitespaceTokenizer()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"tokens": self.tokenizer.tokenize(text).row_lengths()}

    return _save(TextModule(), path)


#: the builders that import a library the test process must not carry into other tests:
#: tensorflow_text registers its ops process-wide (a test expects them unregistered), jax
#: starts its own runtime
IN_CHILD = {"jax2tf": "save_jax2tf_model", "tf_text": "save_tf_text_model"}


def build_in_child(paths: dict[str, str]) -> dict[str, str]:
    """Run the builders :data:`IN_CHILD` names for each kind of ``paths`` (kind -> path) in one
    child process (one TensorFlow import); return ``paths``."""
    argv = [arg for kind, path in paths.items() for arg in (kind, path)]
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"building {', '.join(paths)} failed:\n{done.stderr[-3000:]}")
    return paths


if __name__ == "__main__":
    for at in range(1, len(sys.argv), 2):
        globals()[IN_CHILD[sys.argv[at]]](sys.argv[at + 1])
