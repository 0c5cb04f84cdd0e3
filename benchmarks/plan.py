"""Planning throughput on an object store's latency: ``python -m benchmarks.plan`` (``make bench-plan``).

N small Parquet files (hard links to one file, so 20,000 cost no disk) are planned through
``delayed://`` (:mod:`benchmarks.delayed_fs`: the local disk at ``--delay`` seconds per
request, concurrent requests sleeping concurrently, as on gcsfs/s3fs). Each size runs in a
fresh process, which lists the files (``beamscore.fs.list_files``: one detailed listing)
and plans them as ``beamscore score`` does (``beamscore.pipelines.survey.survey``: footers
read concurrently, every file's schema checked), and reports files/s, requests and the
growth of its peak RSS during listing and planning (``RSS +MB``), of which ``listing`` is
the listing's share (fsspec's info dict per file, as before this change). ``--serial N``
also times the old way (each file opened and its footer read in turn) on N files, and
``--job-files N`` times ``beamscore score --dry-run`` over N such files (64 floats, the MLP)
from a fresh process's start, then the job in that process until its first batch is scored. The
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


def make_files(directory: str, n: int, width: int = 4) -> str:
    """``n`` hard links to one 3-row Parquet file (id, x[width] float32) under ``directory``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    seed = os.path.join(directory, "_seed.parquet")
    x = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(3 * width, np.float32)), width)
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


def measure_job(pattern: str, delay: float, model: str, output: str) -> dict:
    """``beamscore score --dry-run`` over ``pattern`` (planning, as the CLI does it, from the
    process's start: TensorFlow's import included), then the job itself in this process
    until its first batch is scored (the clock stops there: reading thousands of files at
    ``delay`` each is the job, not its start)."""
    import threading

    from benchmarks.delayed_fs import register

    start = time.perf_counter()
    register(delay)
    from beamscore.cli import main as cli

    args = ["score", "--model", model, "--input", pattern, "--output", output, "--overwrite"]
    if cli([*args, "--dry-run"]) != 0:
        raise SystemExit("the dry run failed")
    dry = time.perf_counter() - start
    from beamscore.transforms.run_signature import RunSignatureFn

    first = threading.Event()
    real = RunSignatureFn._process_batch

    def timed(self, batch):
        out = real(self, batch)
        first.set()
        return out

    RunSignatureFn._process_batch = timed
    job_start = time.perf_counter()
    threading.Thread(target=cli, args=(args,), daemon=True).start()  # in-process runner: the hook sees it
    first.wait(600)
    to_first = time.perf_counter() - job_start
    return {"dry_run_s": dry, "first_row_s": to_first, "first_row_total_s": dry + to_first}


def _child(pattern: str, delay: float, serial: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.plan", "--child", pattern, "--delay", str(delay)]
    out = subprocess.run([*command, *(["--serial-child"] if serial else [])], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _job_child(work: str, n: int, delay: float) -> dict:
    """:func:`measure_job` in a fresh process over ``n`` 64-float files and the MLP."""
    from benchmarks.build import build_mlp

    model = os.path.join(work, "mlp")
    build_mlp(model)
    pattern = make_files(os.path.join(work, f"job{n}"), n, width=64)
    command = [sys.executable, "-m", "benchmarks.plan", "--child", pattern, "--delay", str(delay)]
    out = subprocess.run([*command, "--job-child", model, os.path.join(work, "out")], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1_000, 20_000], help="file counts to plan")
    parser.add_argument("--delay", type=float, default=0.04, help="seconds per request (default 0.04)")
    parser.add_argument("--serial", type=int, default=100, help="also plan N files the old way, one by one (0: no)")
    parser.add_argument("--job-files", type=int, default=0, help="also time a dry run and a job's first row on N files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serial-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child and args.job_child:
        print(json.dumps(measure_job(args.child, args.delay, *args.job_child)))
        os._exit(0)  # the job's threads are left running: its clock has stopped
    if args.child:
        print(json.dumps(measure(args.child, args.delay, args.serial_child)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as work:
        runs = [(n, False) for n in args.files] + ([(args.serial, True)] if args.serial else [])
        for n, serial in runs:
            pattern = make_files(os.path.join(work, f"{'serial' if serial else 'n'}{n}"), n)
            rows.append((serial, _child(pattern, args.delay, serial)))
        if args.job_files:
            job = _job_child(work, args.job_files, args.delay)
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
    if args.job_files:
        print(
            f"job over {args.job_files:,} files: dry run {job['dry_run_s']:.1f} s (process start to plan, TensorFlow's "
            f"import included); first row scored {job['first_row_s']:.1f} s after the job started "
            f"({job['first_row_total_s']:.1f} s after the dry run's start)"
        )
        if args.job_files >= TARGET_FILES:
            met = "met" if job["dry_run_s"] < TARGET_SECONDS else "MISSED"
            print(f"target {TARGET_FILES:,} files planned, the job started, < {TARGET_SECONDS:.0f} s: {met}")
    for serial, r in rows:
        if not serial and r["files"] >= TARGET_FILES:
            verdict = "met" if r["seconds"] < TARGET_SECONDS else "MISSED"
            print(f"target {TARGET_FILES:,} files < {TARGET_SECONDS:.0f} s: {verdict} ({r['seconds']:.1f} s)")


if __name__ == "__main__":
    main()
