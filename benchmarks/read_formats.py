"""Read-and-decode throughput of each source, one core: ``python -m benchmarks.read_formats``.

The same rows (an ``id`` int64 and ``x``: 64 float32 values) are written once per format
under ``--work`` (reused between runs). Each measurement then runs the real source the way a
worker does: ``units`` -> ``read(unit, [columns], batch_size)`` -> the signature input as a
numpy array (``beamscore.io.arrow.to_numpy``), so it counts framing, CRC checks, decompression
and ``tf.io.parse_example`` (TFRecord), zip members (npz), slices (npy) and row groups
(Parquet). The process is pinned to one CPU and TensorFlow to one thread. The issue's
targets on one core: TFRecord >= 250k rows/s, Parquet >= 500k rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

WIDTH = 64
FORMATS = ("tfrecord", "tfrecord.gz", "npz", "npy", "parquet")
TARGETS = {"tfrecord": 250_000, "parquet": 500_000}


def _one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def write_inputs(work: str, rows: int) -> dict[str, str]:
    """One file per format under ``work`` (skipped when it is already there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    os.makedirs(work, exist_ok=True)
    paths = {fmt: os.path.join(work, f"rows-{rows}.{fmt}") for fmt in FORMATS}
    paths["parquet"] = os.path.join(work, f"rows-{rows}.crc.parquet")  # written with page checksums
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, WIDTH)).astype(np.float32)
    ids = np.arange(rows, dtype=np.int64)
    if not os.path.exists(paths["parquet"]):
        table = pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), WIDTH)})
        # with page checksums, as careful writers do, so that verifying them on read is measured
        pq.write_table(table, paths["parquet"], row_group_size=65536, write_page_checksum=True)
    if not os.path.exists(paths["npz"]):
        np.savez(paths["npz"], id=ids, x=x)
    if not os.path.exists(paths["npy"]):
        np.save(paths["npy"], x)
    for fmt in ("tfrecord", "tfrecord.gz"):
        if os.path.exists(paths[fmt]):
            continue
        options = tf.io.TFRecordOptions(compression_type="GZIP" if fmt.endswith(".gz") else "")
        with tf.io.TFRecordWriter(paths[fmt] + ".tmp", options) as writer:
            for i in range(rows):
                feature = {
                    "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                    "x": tf.train.Feature(float_list=tf.train.FloatList(value=x[i])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        os.rename(paths[fmt] + ".tmp", paths[fmt])
    return paths


def read_once(fmt: str, path: str, batch_size: int) -> tuple[int, float]:
    """Rows read and seconds taken, through the real source, to numpy."""
    from beamscore.io import source_for
    from beamscore.io.arrow import to_numpy

    source = source_for("tfrecord" if fmt.startswith("tfrecord") else fmt, path)
    column = "*" if fmt == "npy" else "x"
    start = time.perf_counter()
    source.columns(path)
    rows = 0
    for unit in source.units(path, 0):
        for table in source.read(unit, [column], batch_size):
            values = to_numpy(table[column], column, path)
            assert values.shape[1:] == (WIDTH,)
            rows += len(values)
    return rows, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3, help="runs per format; the median is reported")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--work", default=os.path.join("build", "bench-read"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _one_core()
    paths = write_inputs(args.work, args.rows)
    results = {}
    for fmt in args.formats.split(","):
        read_once(fmt, paths[fmt], args.batch_size)  # warm: imports, first parse, page cache
        runs = [read_once(fmt, paths[fmt], args.batch_size) for _ in range(args.repeat)]
        seconds = statistics.median(s for _, s in runs)
        results[fmt] = {"rows": runs[0][0], "seconds": round(seconds, 4), "rows_per_s": round(runs[0][0] / seconds)}
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"read + decode, {WIDTH} float32 per row, batch {args.batch_size}, one core (median of {args.repeat})")
    print(f"{'format':<12} {'rows':>9} {'seconds':>8} {'rows/s':>11}  target")
    for fmt, r in results.items():
        target = TARGETS.get(fmt)
        verdict = "" if target is None else f"{target:,} {'ok' if r['rows_per_s'] >= target else 'MISSED'}"
        print(f"{fmt:<12} {r['rows']:>9,} {r['seconds']:>8.3f} {r['rows_per_s']:>11,}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
