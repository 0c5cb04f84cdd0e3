"""Parquet output codecs side by side: ``python -m benchmarks.write_codecs`` (``make bench-codecs``).

The rows are real model outputs: the benchmark MLP (:func:`benchmarks.build.build_mlp`) is
saved under ``--work`` and its ``serving_default`` signature is run on ``--rows`` random
inputs, giving ``scores`` (10 float32, softmax) and ``embedding`` (256 float32, ReLU: many
zeros), with an ``id`` int64 column. Each codec then writes them the way a worker does:
:class:`beamscore.io.parquet_sink.ParquetSink` opens a unit, takes batches of 4,096 rows and
commits one file. Reported: rows/s of the writer (best of ``--repeat``) and bytes per row
of the file. The ``--compression`` flag of ``score`` is the TFRecord input codec; these are
``--output-compression`` and ``--output-compression-level``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

#: (codec, level) pairs measured; None is the codec's default level
CASES = [("none", None), ("snappy", None), ("lz4", None), ("zstd", None), ("zstd", 9), ("gzip", None), ("gzip", 9)]
BATCH = 4096


def model_outputs(work: str, rows: int):
    """An Arrow table of ``rows`` rows of the MLP's outputs, with an ``id`` column."""
    import pyarrow as pa
    import tensorflow as tf

    from benchmarks.build import MLP_WIDTH, build_mlp

    path = os.path.join(work, "mlp")
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        build_mlp(path)
    fn = tf.saved_model.load(path).signatures["serving_default"]
    x = np.random.default_rng(0).normal(size=(rows, MLP_WIDTH)).astype(np.float32)
    parts = [fn(x=tf.constant(x[i : i + 16384])) for i in range(0, rows, 16384)]
    columns = {"id": pa.array(np.arange(rows, dtype=np.int64))}
    for key in ("scores", "embedding"):
        values = np.concatenate([p[key].numpy() for p in parts])
        columns[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    return pa.table(columns)


def write_once(table, codec: str, level: int | None, out: str) -> tuple[float, int]:
    """Seconds to write ``table`` as one unit, and the file's size in bytes."""
    from beamscore.io.base import WorkUnit
    from beamscore.io.parquet_sink import ParquetSink

    sink = ParquetSink(out, compression=codec, compression_level=level)
    unit = WorkUnit(shard=0, index=0, path="bench", start=0, stop=table.num_rows, rows=table.num_rows)
    start = time.perf_counter()
    writer = sink.open(unit, {"bench": "1"})
    for offset in range(0, table.num_rows, BATCH):
        writer.write(table.slice(offset, BATCH))
    (path,) = writer.close()
    seconds = time.perf_counter() - start
    size = os.path.getsize(path)
    os.remove(path)
    return seconds, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "beamscore-bench-codecs"))
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    table = model_outputs(args.work, args.rows)
    raw = table.nbytes / table.num_rows
    print(f"{args.rows:,} rows of MLP outputs (id int64, scores 10 x float32, embedding 256 x float32),")
    print(f"{raw:,.0f} bytes/row in memory; writer rows/s is the best of {args.repeat}")
    print()
    print("| --output-compression | level | rows/s | bytes/row | vs none |")
    print("|---|---|---|---|---|")
    base = None
    for codec, level in CASES:
        out = os.path.join(args.work, "out")
        runs = [write_once(table, codec, level, out) for _ in range(args.repeat)]
        seconds = min(s for s, _ in runs)
        per_row = runs[0][1] / args.rows
        base = base or per_row
        shown = "default" if level is None else str(level)
        print(f"| `{codec}` | {shown} | {args.rows / seconds:,.0f} | {per_row:,.0f} | {per_row / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
