"""Keras 2 SavedModels for the tests, built by ``tf_keras`` in a child process.

Run as ``python keras2_models.py DIR``: writes ``DIR/model`` (a tf.keras 2 functional model
with two inputs, a ``Normalization`` and a ``StringLookup`` layer, compiled with a legacy
Adam optimizer and fitted one epoch, so the export holds optimizer slot variables, then
``model.save(DIR/model)``, the SavedModel format of TF <= 2.15), ``DIR/rows.parquet`` (the
inputs) and ``DIR/expected.npz`` (a direct ``tf.saved_model.load(...).signatures[...]``
call, made here where ``tf_keras`` is importable).

A child process, because importing ``tf_keras`` registers Keras 2 types in TensorFlow's
global state, which the test process must not carry into other tests; and because the tests
then load the model in processes that cannot import ``tf_keras`` (:data:`HIDE_TF_KERAS`).
"""

from __future__ import annotations

import os
import subprocess
import sys

ROWS = 40


def build(root: str) -> dict[str, str]:
    """Build the model, its input rows and the expected outputs under ``root`` (a child process)."""
    os.makedirs(root, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, root], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"building the Keras 2 model failed:\n{done.stderr[-3000:]}")
    return {
        "model": os.path.join(root, "model"),
        "rows": os.path.join(root, "rows.parquet"),
        "expected": os.path.join(root, "expected.npz"),
    }


def hide_tf_keras(root: str) -> str:
    """A directory to put first on ``PYTHONPATH`` so that ``import tf_keras`` fails there, as
    it does where tf-keras is not installed (TensorFlow then cannot revive Keras 2 objects)."""
    hide = os.path.join(root, "no_tf_keras")
    os.makedirs(hide, exist_ok=True)
    with open(os.path.join(hide, "tf_keras.py"), "w") as f:
        f.write("raise ImportError('tf_keras is hidden by the test')\n")
    return hide


def _main(root: str) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(7)
    num = keras.Input(shape=(3,), name="num", dtype="float32")
    cat = keras.Input(shape=(1,), name="cat", dtype="string")
    norm = keras.layers.Normalization()
    norm.adapt(np.array([[0.0, 1, 2], [2, 3, 4], [4, 5, 9]], dtype="float32"))
    lookup = keras.layers.StringLookup(vocabulary=["a", "b", "c"], output_mode="one_hot")
    x = keras.layers.Concatenate()([norm(num), keras.layers.Reshape((4,))(lookup(cat))])
    out = keras.layers.Dense(2, name="score")(keras.layers.Dense(8, activation="relu")(x))
    model = keras.Model({"num": num, "cat": cat}, out)
    model.compile(optimizer=keras.optimizers.legacy.Adam(), loss="mse")
    rng = np.random.default_rng(3)
    nums = rng.normal(size=(ROWS, 3)).astype("float32")
    cats = np.array([["a", "b", "c", "zz"][i % 4] for i in range(ROWS)], dtype=object)
    model.fit({"num": nums, "cat": cats.reshape(-1, 1)}, np.zeros((ROWS, 2), "float32"), epochs=1, verbose=0)
    path = os.path.join(root, "model")
    model.save(path)  # the SavedModel format: a directory
    table = pa.table(
        {
            "num": pa.FixedSizeListArray.from_arrays(pa.array(nums.reshape(-1)), 3),
            "cat": pa.FixedSizeListArray.from_arrays(pa.array(cats.tolist(), pa.string()), 1),
        }
    )
    pq.write_table(table, os.path.join(root, "rows.parquet"))
    fn = tf.saved_model.load(path).signatures["serving_default"]
    result = fn(num=tf.constant(nums), cat=tf.constant(cats.reshape(-1, 1).astype(bytes)))
    np.savez(os.path.join(root, "expected.npz"), nums=nums, **{k: v.numpy() for k, v in result.items()})


if __name__ == "__main__":
    _main(sys.argv[1])
