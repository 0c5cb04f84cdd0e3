"""Test-side writers and models for the IO tests: the same rows as Parquet, TFRecord, npz or
npy, and the two small SavedModels only these tests need.

Per-row Python is fine here (it is the reference, not the data path); the files are read back
by the real sources. Imported as ``source_files`` (``tests/io`` is put on ``sys.path`` by
``tests/io/conftest.py``; a package named ``io`` would shadow the standard library).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: every source in the contract suite: format name -> file suffix
FORMATS = {
    "parquet": ".parquet",
    "tfrecord": ".tfrecord",
    "tfrecord.gz": ".tfrecord.gz",
    "npz": ".npz",
    "npy": ".npy",
    "feather": ".feather",
    "orc": ".orc",
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

    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP" if path.endswith(".gz") else "")
    with tf.io.TFRecordWriter(path, options) as writer:
        for record in records:
            writer.write(record)
    return path


def _orc_type(t: pa.DataType) -> pa.DataType:
    return pa.list_(_orc_type(t.value_type)) if pa.types.is_fixed_size_list(t) else t


def write_rows(fmt: str, stem: str, columns: dict[str, np.ndarray]) -> str:
    """Write ``columns`` (equal first dimension) as one file of ``fmt``; return its path."""
    path = stem + FORMATS[fmt]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = len(next(iter(columns.values())))
    if fmt in ("parquet", "feather", "orc"):
        arrays = {}
        for name, values in columns.items():
            arr = pa.array(values.reshape(-1))
            for size in reversed(values.shape[1:]):
                arr = pa.FixedSizeListArray.from_arrays(arr, size)
            arrays[name] = arr
        table = pa.table(arrays)
        if fmt == "parquet":
            pq.write_table(table, path, row_group_size=64)
        elif fmt == "feather":  # record batches of 64 rows, as Parquet's row groups above
            import pyarrow.feather as feather

            feather.write_feather(table, path, chunksize=64)
        else:  # ORC has no fixed-size list: lists of the same lengths
            import pyarrow.orc as orc

            orc.write_table(table.cast(pa.schema([(f.name, _orc_type(f.type)) for f in table.schema])), path)
    elif fmt.startswith("tfrecord"):
        write_tfrecord(path, [example({k: v[i] for k, v in columns.items()}) for i in range(n)])
    elif fmt == "npz":
        np.savez(path, **columns)
    elif fmt == "npy":
        (values,) = [v for k, v in columns.items() if k != "id"]
        np.save(path, values)
    return path


def save_example_model(path: str) -> str:
    """A serialized-Example signature, as Estimator exports have: ``examples`` string [None]
    -> parse ``x`` float[4] inside the graph -> ``score`` float32 [None] = x @ [1, 2, 3, 4]."""
    import tensorflow as tf

    class ExampleModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([4], tf.float32)})
            return {"score": tf.linalg.matvec(parsed["x"], tf.constant([1.0, 2.0, 3.0, 4.0]))}

    module = ExampleModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def save_tokens_model(path: str) -> str:
    """``tokens`` int64 [None, 5] -> ``total`` int64 [None] and ``first`` int64 [None]."""
    import tensorflow as tf

    class TokensModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.int64, name="tokens")])
        def serve(self, tokens):
            return {"total": tf.reduce_sum(tokens * tf.range(1, 6, dtype=tf.int64), axis=1), "first": tokens[:, 0]}

    module = TokensModule()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path
