"""Parquet files of many tiny row groups, end to end: ``python -m benchmarks.small_row_groups``.

Some writers flush a row group per few rows (streaming appenders, per-event exports). The
rows (an ``id`` and ``x``: 64 float32 values) are written once under ``--work`` with
``--row-group-rows`` rows per row group; ``beamscore score`` (in process, the demo MLP of
``benchmarks.build``) then scores them, and the median wall time of ``--repeat`` runs and the
rows/s are printed. Before batches were joined across row groups, one-row row groups meant
one model call per row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

import numpy as np

WIDTH = 64


def write_input(work: str, rows: int, group: int) -> str:
    """The input file (reused when it is there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(work, f"rows-{rows}-rg-{group}.parquet")
    if not os.path.exists(path):
        os.makedirs(work, exist_ok=True)
        x = np.random.default_rng(0).normal(size=(rows, WIDTH)).astype(np.float32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), WIDTH)
        table = pa.table({"id": np.arange(rows), "x": column})
        pq.write_table(table, path + ".tmp", row_group_size=group)
        os.rename(path + ".tmp", path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--row-group-rows", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--work", default=os.path.join("build", "bench-small-row-groups"))
    args = parser.parse_args(argv)
    import beamscore
    from benchmarks.build import build_mlp

    model = os.path.join(args.work, "mlp")
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        build_mlp(model)
    path = write_input(args.work, args.rows, args.row_group_rows)
    seconds = []
    for i in range(args.repeat):
        out = os.path.join(args.work, f"out-{i}")
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        manifest = beamscore.score(model=model, inputs=[path], output=out)
        seconds.append(time.perf_counter() - start)
        assert manifest["rows_out"] == args.rows, manifest
    median = statistics.median(seconds)
    print(
        f"{args.rows:,} rows in row groups of {args.row_group_rows}: {median:.2f} s median of {args.repeat} "
        f"({args.rows / median:,.0f} rows/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
