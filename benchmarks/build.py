"""Build the benchmark models and data: random weights and fixed seeds, nothing downloaded.

Models:
- ``mlp``: a ``tf.Module`` MLP 64 -> 256 -> 256 -> 10; signature ``serving_default`` takes
  ``x`` float32 ``[None, 64]`` and returns ``scores [None, 10]`` and ``embedding [None, 256]``;
  signature ``serve_examples`` takes serialized ``tf.Example`` s (for tfx-bsl) and returns the same.
- ``mobilenet``: Keras 3 ``MobileNetV2(weights=None)`` at 224x224x3, exported with
  ``model.export`` (input ``keras_tensor``, output ``output_0``).

Data: the same rows as Parquet (``id`` int64 + ``x`` fixed-size list), TFRecord (``tf.Example``
with features ``id`` and ``x``) and ``.npz`` (arrays ``id`` and ``x``) shards. Images are stored
as uint8 and cast to float32 on read.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Dataset", "build_dataset", "build_mlp", "build_mobilenet", "build_resnet50"]

MLP_WIDTH = 64


def build_mlp(path: str) -> str:
    """Save the MLP (both signatures) at ``path``; return ``path``."""
    import tensorflow as tf

    class MLP(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)
            sizes = [MLP_WIDTH, 256, 256, 10]
            self.ws = [
                tf.Variable(rng.normal(scale=1 / np.sqrt(a), size=(a, b)).astype(np.float32))
                for a, b in itertools.pairwise(sizes)
            ]
            self.bs = [tf.Variable(np.zeros(b, np.float32)) for b in sizes[1:]]

        def _forward(self, x):
            h1 = tf.nn.relu(x @ self.ws[0] + self.bs[0])
            h2 = tf.nn.relu(h1 @ self.ws[1] + self.bs[1])
            return {"scores": tf.nn.softmax(h2 @ self.ws[2] + self.bs[2]), "embedding": h2}

        @tf.function(input_signature=[tf.TensorSpec([None, MLP_WIDTH], tf.float32, name="x")])
        def serve(self, x):
            return self._forward(x)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(self, examples):
            parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([MLP_WIDTH], tf.float32)})
            return self._forward(parsed["x"])

    mlp = MLP()
    tf.saved_model.save(mlp, path, signatures={"serving_default": mlp.serve, "serve_examples": mlp.serve_examples})
    return path


def _export_keras_app(factory, path: str) -> str:
    import keras

    keras.utils.set_random_seed(0)
    model = factory(weights=None, input_shape=(224, 224, 3))
    model.export(path, verbose=False)
    return path


def build_mobilenet(path: str) -> str:
    """Export ``keras.applications.MobileNetV2(weights=None)`` at 224x224x3 to ``path``."""
    import keras

    return _export_keras_app(keras.applications.MobileNetV2, path)


def build_resnet50(path: str) -> str:
    """Export ``keras.applications.ResNet50(weights=None)`` at 224x224x3 to ``path`` (GPU bench)."""
    import keras

    return _export_keras_app(keras.applications.ResNet50, path)


@dataclass(frozen=True)
class Dataset:
    """Where one data set lives in each format, and what it holds."""

    name: str
    rows: int
    shards: int
    column: str
    row_shape: tuple[int, ...]
    dtype: str
    parquet: list[str]
    tfrecord: list[str]
    npz: list[str]

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path: str) -> Dataset:
        with open(path) as f:
            data = json.load(f)
        data["row_shape"] = tuple(data["row_shape"])
        return cls(**data)


def _rows(kind: str, start: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "mlp":
        return rng.normal(size=(n, MLP_WIDTH)).astype(np.float32)
    return rng.integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)


def build_dataset(
    directory: str, kind: str, rows: int, shards: int, row_group_rows: int = 65536, parquet_only: bool = False
) -> Dataset:
    """Write ``rows`` rows of ``kind`` (``mlp`` or ``image``) in ``shards`` shards of each format
    (of Parquet alone with ``parquet_only``).

    Reuses an existing build with the same parameters (the ``dataset.json`` marker is written last).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    marker = os.path.join(directory, "dataset.json")
    if os.path.exists(marker):
        found = Dataset.load(marker)
        if (found.rows, found.shards) == (rows, shards):
            return found
    shutil.rmtree(directory, ignore_errors=True)
    for fmt in ("parquet", "tfrecord", "npz"):
        os.makedirs(os.path.join(directory, fmt))
    rng = np.random.default_rng(0)
    bounds = np.linspace(0, rows, shards + 1).astype(np.int64)
    files: dict[str, list[str]] = {"parquet": [], "tfrecord": [], "npz": []}
    row_shape: tuple[int, ...] = ()
    dtype = ""
    for s in range(shards):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        x = _rows(kind, lo, hi - lo, rng)
        ids = np.arange(lo, hi, dtype=np.int64)
        row_shape, dtype = x.shape[1:], str(x.dtype)
        stem = f"shard-{s:05d}"
        flat = pa.array(x.reshape(-1))
        width = int(np.prod(row_shape))
        table = pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(flat, width)})
        path = os.path.join(directory, "parquet", f"{stem}.parquet")
        pq.write_table(table, path, row_group_size=row_group_rows if kind == "mlp" else 64)
        files["parquet"].append(path)
        if parquet_only:
            continue
        path = os.path.join(directory, "npz", f"{stem}.npz")
        np.savez(path, id=ids, x=x)
        files["npz"].append(path)
        path = os.path.join(directory, "tfrecord", f"{stem}.tfrecord")
        with tf.io.TFRecordWriter(path) as w:
            for i, row in zip(ids.tolist(), x.reshape(len(ids), -1), strict=True):
                value = (
                    tf.train.Feature(float_list=tf.train.FloatList(value=row))
                    if kind == "mlp"
                    else tf.train.Feature(bytes_list=tf.train.BytesList(value=[row.tobytes()]))
                )
                example = tf.train.Example(
                    features=tf.train.Features(
                        feature={"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])), "x": value}
                    )
                )
                w.write(example.SerializeToString())
        files["tfrecord"].append(path)
    ds = Dataset(kind, rows, shards, "x", tuple(int(d) for d in row_shape), dtype, **files)
    ds.save(marker)
    return ds


IMAGE_BUILDERS = {"mobilenet": build_mobilenet, "resnet50": build_resnet50}


def prepare(spec: dict) -> dict:
    """Build everything one benchmark run needs (what exists is reused) and describe it.

    Runs in a child process of the bench, so that the bench itself stays small: a child's
    peak RSS (``wait4``) starts from its parent's size at ``fork``.
    """
    from beamscore._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from beamscore.io import SOURCES
    from beamscore.model.inspect import inspect_model

    work = spec["work"]
    models = os.path.join(work, "models")
    os.makedirs(models, exist_ok=True)
    out: dict = {"models": {}, "inputs": {}, "data": {}, "tfrecord": "tfrecord" in SOURCES}
    mlp = os.path.join(models, "mlp")
    if not os.path.exists(os.path.join(mlp, "saved_model.pb")):
        build_mlp(mlp)
    out["models"]["mlp"] = mlp
    data = os.path.join(work, "data")
    out["data"]["mlp"] = build_dataset(os.path.join(data, "mlp"), "mlp", spec["rows"], spec["shards"])
    out["data"]["small"] = build_dataset(os.path.join(data, "mlp-small"), "mlp", spec["baseline_rows"], 2)
    if spec.get("small_rows"):  # a small scheduled job: start-up is most of it
        out["data"]["job"] = build_dataset(
            os.path.join(data, "mlp-job"), "mlp", spec["small_rows"], 2, parquet_only=True
        )
    if spec.get("rss_rows"):
        out["data"]["rss"] = build_dataset(
            os.path.join(data, "mlp-rss"), "mlp", spec["rss_rows"], spec["shards"] * 4, parquet_only=True
        )
    images = [m for m in spec["models"] if m in IMAGE_BUILDERS]
    if spec["images"] and images:
        out["data"]["image"] = build_dataset(os.path.join(data, "image"), "image", spec["images"], 2)
        for name in images:
            path = os.path.join(models, name)
            if not os.path.exists(os.path.join(path, "saved_model.pb")):
                IMAGE_BUILDERS[name](path)
            out["models"][name] = path
            (out["inputs"][name],) = inspect_model(path).signature("serve", "serve").inputs
    out["data"] = {k: asdict(v) for k, v in out["data"].items()}
    return out


if __name__ == "__main__":
    import sys

    with open(sys.argv[1]) as f:
        request = json.load(f)
    result = prepare(request)
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
