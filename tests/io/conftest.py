"""Writers for the source contract suite: the same rows as Parquet, TFRecord, npz or npy.

Each writer is test-side code (per-row Python is fine here) and the files it makes are
read back by the real sources; see ``test_contract.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

#: every source in the contract suite: format name -> file suffix
FORMATS = {
    "parquet": ".parquet",
    "tfrecord": ".tfrecord",
    "tfrecord.gz": ".tfrecord.gz",
    "npz": ".npz",
    "npy": ".npy",
}


def example(row: dict[str, np.ndarray]) -> bytes:
    """One ``tf.train.Example`` from a row of named values (float, int or bytes)."""
    import tensorflow as tf

    feature = {}
    for name, value in row.items():
        flat = np.asarray(value).reshape(-1)
        if flat.dtype.kind == "f":
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))
        elif flat.dtype.kind in "iub":
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=flat.tolist()))
        else:
            values = [v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()]
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecord(path: str, records: list[bytes]) -> str:
    import tensorflow as tf

    options = tf.io.TFRecordOptions(compression_type="GZIP" if path.endswith(".gz") else "")
    with tf.io.TFRecordWriter(path, options) as writer:
        for record in records:
            writer.write(record)
    return path


def write_rows(fmt: str, stem: str, columns: dict[str, np.ndarray]) -> str:
    """Write ``columns`` (equal first dimension) as one file of ``fmt``; return its path."""
    path = stem + FORMATS[fmt]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = len(next(iter(columns.values())))
    if fmt == "parquet":
        arrays = {}
        for name, values in columns.items():
            arr = pa.array(values.reshape(-1))
            for size in reversed(values.shape[1:]):
                arr = pa.FixedSizeListArray.from_arrays(arr, size)
            arrays[name] = arr
        pq.write_table(pa.table(arrays), path, row_group_size=64)
    elif fmt.startswith("tfrecord"):
        write_tfrecord(path, [example({k: v[i] for k, v in columns.items()}) for i in range(n)])
    elif fmt == "npz":
        np.savez(path, **columns)
    elif fmt == "npy":
        (values,) = [v for k, v in columns.items() if k != "id"]
        np.save(path, values)
    return path


@pytest.fixture(scope="session")
def rows() -> dict[str, np.ndarray]:
    """300 rows: ``id`` int64 and ``x`` float32[4] (the ``two_sig`` model's input)."""
    rng = np.random.default_rng(7)
    return {"id": np.arange(300, dtype=np.int64) + 5000, "x": rng.normal(size=(300, 4)).astype(np.float32)}


@pytest.fixture(name="write_rows", scope="session")
def write_rows_fixture():
    """:func:`write_rows`, for tests: ``write_rows(fmt, stem, columns) -> path``."""
    return write_rows
