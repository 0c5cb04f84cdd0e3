"""Small real SavedModels and Parquet shards for the tests, built from fixed seeds.

Each builder says what it makes; nothing is downloaded.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf


class TwoSignatureModule(tf.Module):
    """``tf.Module`` with two signatures, dict outputs and renamed outputs.

    ``serving_default``: ``x`` float32 [None, 4] -> ``scores`` float32 [None, 3],
    ``label`` int64 [None].  ``embed``: ``x`` -> ``embedding`` float32 [None, 2, 4]
    (a rank-3 output) and ``norm`` float64 [None].
    """

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32))
        self.b = tf.Variable(rng.normal(size=(3,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        scores = tf.nn.softmax(tf.matmul(x, self.w) + self.b)
        return {"scores": scores, "label": tf.argmax(scores, axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def embed(self, x):
        stacked = tf.stack([x, x * 2.0], axis=1)
        return {"embedding": stacked, "norm": tf.cast(tf.norm(x, axis=1), tf.float64)}


def save_two_signature_model(path: str) -> str:
    module = TwoSignatureModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve, "embed": module.embed})
    return path


class ImageModule(tf.Module):
    """``image`` float32 [None, 8, 8, 3] -> ``mean`` float32 [None, 3]: tests the reshape
    of a flat 192-value column to an image shape."""

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def serve(self, image):
        return {"mean": tf.reduce_mean(image, axis=[1, 2])}


def save_image_model(path: str) -> str:
    module = ImageModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


class MixedModule(tf.Module):
    """``a`` int64 [None], ``b`` float32 [None, 2] -> ``out`` float32 [None]:
    for the int32->int64 and float16->float32 lossless casts."""

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.int64, name="a"), tf.TensorSpec([None, 2], tf.float32, name="b")]
    )
    def serve(self, a, b):
        return {"out": tf.cast(a, tf.float32) + tf.reduce_sum(b, axis=1)}


def save_mixed_model(path: str) -> str:
    module = MixedModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def save_keras_model(path: str) -> str:
    """A Keras 3 functional model exported with ``model.export`` (input key ``features``)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4,), name="features")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(2)(hidden)
    model = keras.Model(inputs, outputs)
    model.export(path, verbose=False)
    return path


def write_parquet_shards(
    directory: str, rows: int, shards: int = 2, width: int = 4, row_group_size: int | None = None, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``shards`` files with columns ``id`` int64, ``x`` fixed_size_list<float32>[width],
    ``name`` string. Returns the file paths, all ids and all x rows in order."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, width)).astype(np.float32)
    ids = np.arange(rows, dtype=np.int64) + 1000
    paths = []
    for i, (xs, idx) in enumerate(zip(np.array_split(x, shards), np.array_split(ids, shards), strict=True)):
        table = pa.table(
            {
                "id": pa.array(idx),
                "x": pa.FixedSizeListArray.from_arrays(pa.array(xs.reshape(-1)), width),
                "name": pa.array([f"row-{j}" for j in idx]),
            }
        )
        path = os.path.join(directory, f"shard-{i:02d}.parquet")
        pq.write_table(table, path, row_group_size=row_group_size or max(rows, 1))
        paths.append(path)
    return paths, ids, x
