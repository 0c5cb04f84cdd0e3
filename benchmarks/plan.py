"""Planning throughput on an object store's latency: ``python -m benchmarks.plan`` (``make bench-plan``).

N small Parquet files (hard links to one file, so 20,000 cost no disk) are planned through
``delayed://`` (:mod:`benchmarks.delayed_fs`: the local disk at ``--delay`` seconds per
request, concurrent requests sleeping concurrently, as on gcsfs/s3fs). Each size runs in a
fresh process, which lists the files (``beamscore.fs.list_files``: one detailed listing)
and plans them as ``beamscore score`` does (``beamscore.pipelines.survey.survey``: footers
read concurrently, every file's schema checked), and reports files/s, requests and the
growth of its peak RSS during listing and planning (``RSS +MB``), of which ``listing`` is
the listing's share (fsspec's info dict per file, as before this change). ``--serial N``
also times the old way (each file opened and its footer read in turn) on N files. The
issue's target: 20,000 files in under 30 s at 40 ms per request, memory flat apart from the
unit list.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TARGET_FILES, TARGET_SECONDS = 20_000, 30.0


def make_files(directory: str, n: int) -> str:
    """``n`` hard links to one 3-row Parquet file (id, x[4] float32) under ``directory``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    seed = os.path.join(directory, "_seed.parquet")
    x = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(12, np.float32)), 4)
    pq.write_table(pa.table({"id": np.arange(3), "x": x}), seed)
    for i in range(n):
        os.link(seed, os.path.join(directory, f"part-{i:06d}.parquet"))
    return f"delayed://{directory}/part-*.parquet"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(pattern: str, delay: float, serial: bool) -> dict:
    """List and plan the files of ``pattern`` in this process (a child of :func:`main`)."""
    from beamscore import fs as bfs
    from beamscore.io.parquet import ParquetSource
    from beamscore.io.schemas import SameSchema
    from beamscore.pipelines.survey import survey
    from beamscore.transforms.read import plan_units  # imported before the baseline (Beam is big)
    from benchmarks.delayed_fs import DelayedFileSystem, register

    register(delay)
    source = ParquetSource()
    before = _peak_mb()
    start = time.perf_counter()
    facts = bfs.list_files([pattern])
    listed = time.perf_counter() - start
    after_listing = _peak_mb()
    if serial:
        units = plan_units(source, [f.url for f in facts])
    else:
        columns = source.columns(facts[0].url)
        units = survey(source, facts, SameSchema(facts[0].url, columns, ["x"], ["id"]))
    seconds = time.perf_counter() - start
    return {
        "files": len(facts),
        "units": len(units),
        "list_s": listed,
        "seconds": seconds,
        "requests": DelayedFileSystem.requests,
        "rss_list_mb": after_listing - before,
        "rss_growth_mb": _peak_mb() - before,
    }


def _child(pattern: str, delay: float, serial: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.plan", "--child", pattern, "--delay", str(delay)]
    out = subprocess.run([*command, *(["--serial-child"] if serial else [])], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1_000, 20_000], help="file counts to plan")
    parser.add_argument("--delay", type=float, default=0.04, help="seconds per request (default 0.04)")
    parser.add_argument("--serial", type=int, default=100, help="also plan N files the old way, one by one (0: no)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--serial-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.delay, args.serial_child)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as work:
        runs = [(n, False) for n in args.files] + ([(args.serial, True)] if args.serial else [])
        for n, serial in runs:
            pattern = make_files(os.path.join(work, f"{'serial' if serial else 'n'}{n}"), n)
            rows.append((serial, _child(pattern, args.delay, serial)))
    print(f"planning at {args.delay * 1000:.0f} ms per request (delayed:// over the local disk, Parquet footers)")
    heads = [("files", 7), ("units", 7), ("requests", 9), ("list s", 7), ("plan s", 7), ("files/s", 8)]
    heads += [("RSS +MB", 8), ("listing", 8)]
    print(f"{'mode':<22} " + " ".join(f"{h:>{w}}" for h, w in heads))
    for serial, r in rows:
        mode = "serial (before)" if serial else "concurrent (launcher)"
        rate = r["files"] / r["seconds"] if r["seconds"] else 0.0
        print(
            f"{mode:<22} {r['files']:>7,} {r['units']:>7,} {r['requests']:>9,} {r['list_s']:>7.2f} "
            f"{r['seconds']:>7.2f} {rate:>8,.0f} {r['rss_growth_mb']:>8.1f} {r['rss_list_mb']:>8.1f}"
        )
    for serial, r in rows:
        if not serial and r["files"] >= TARGET_FILES:
            verdict = "met" if r["seconds"] < TARGET_SECONDS else "MISSED"
            print(f"target {TARGET_FILES:,} files < {TARGET_SECONDS:.0f} s: {verdict} ({r['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
