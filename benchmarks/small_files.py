"""Many small files against one file of the same rows: ``python -m benchmarks.small_files``.

Writes ``--files`` Parquet files of ``--rows`` rows each (id, x: 64 float32, the benchmarks'
MLP input) and one file holding the same rows, then times ``beamscore score`` over each as a
whole process (spawn to exit, planning, model load and commit included), and counts the
part files and unit receipts each wrote. Small files are packed into work units
(``beamscore.io.base.pack_units``), so the target is: the small files within
:data:`TARGET_RATIO` x of the one file, and at most one part file per unit. Also printed by
``make bench`` (:func:`run`). Medians of three runs each, alternating: on a shared machine,
compare the ratio, not the seconds.

    python -m benchmarks.small_files                 # 5,000 files of 3 rows
    python -m benchmarks.small_files --files 500     # quicker
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_RATIO = 2.0
#: the issue's target for the job's cost of one more file (CPU milliseconds)
TARGET_PER_FILE_MS = 0.5
WIDTH = 64


def make_inputs(work: str, files: int, rows: int) -> tuple[str, str]:
    """``(glob of the small files, path of the one file)`` under ``work`` (reused when there)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    small = os.path.join(work, f"small-{files}x{rows}")
    one = os.path.join(work, f"one-{files * rows}.parquet")
    if not os.path.exists(one):
        os.makedirs(small, exist_ok=True)
        x = np.random.default_rng(0).normal(size=(files * rows, WIDTH)).astype(np.float32)
        table = pa.table(
            {"id": np.arange(files * rows), "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), WIDTH)}
        )
        for i in range(files):
            pq.write_table(table.slice(i * rows, rows), os.path.join(small, f"f{i:06d}.parquet"))
        pq.write_table(table, one + ".tmp")
        os.replace(one + ".tmp", one)
    return os.path.join(small, "*.parquet"), one


def score(model: str, inputs: str, output: str) -> dict:
    """One ``beamscore score`` process over ``inputs``: wall seconds, rows, units, part files."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "beamscore", "score", "--model", model, "--input", inputs]
    command += ["--output", output, "--overwrite", "--keep", "id"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode:
        raise SystemExit(f"beamscore score failed over {inputs}:\n{done.stderr[-3000:]}")
    with open(os.path.join(output, "_manifest.json")) as f:
        manifest = json.load(f)
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rows": manifest["rows_out"],
        "units": manifest["units"],
        "parts": len(glob.glob(os.path.join(output, "part-*"))),
        "receipts": len(glob.glob(os.path.join(output, "_units", "part-*.json"))),
    }


def median_run(runs: list[dict]) -> dict:
    """The runs' medians of seconds and CPU seconds (counts are the same in every run)."""
    out = dict(runs[0])
    for key in ("seconds", "cpu"):
        out[key] = statistics.median(r[key] for r in runs)
    return out


def run(work: str, files: int = 5_000, rows: int = 3, repeat: int = 3) -> list[str]:
    """Build what is missing, run both jobs ``repeat`` times, alternating, and return the
    printed lines (medians: one run of either job varies by a second on a shared machine)."""
    from benchmarks.build import build_mlp

    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "mlp")
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        build_mlp(model)
    small, one = make_inputs(work, files, rows)
    runs: dict[str, list[dict]] = {"many": [], "one": []}
    for _ in range(max(1, repeat)):
        runs["many"].append(score(model, small, os.path.join(work, "out-small")))
        runs["one"].append(score(model, one, os.path.join(work, "out-one")))
    many, single = median_run(runs["many"]), median_run(runs["one"])
    ratio = many["seconds"] / single["seconds"]
    total = files * rows
    each = "one run each" if repeat <= 1 else f"median of {repeat} runs each, alternating"
    lines = [f"small files: {files:,} Parquet files of {rows} rows ({total:,} rows, {WIDTH} floats), {each}"]
    lines.append(f"{'input':<24}{'seconds':>9}{'CPU s':>8}{'rows':>9}{'units':>7}{'parts':>7}{'receipts':>10}")
    for name, r in ((f"{files:,} small files", many), ("one file", single)):
        lines.append(
            f"{name:<24}{r['seconds']:>9.1f}{r['cpu']:>8.1f}{r['rows']:>9,}{r['units']:>7}{r['parts']:>7}"
            f"{r['receipts']:>10}"
        )
    per_file_cpu = (many["cpu"] - single["cpu"]) / files * 1000
    per_file_wall = (many["seconds"] - single["seconds"]) / files * 1000
    lines.append(
        f"per-file cost: {per_file_cpu:.2f} ms CPU, {per_file_wall:.2f} ms wall "
        f"(whole process, small files minus one file, over {files:,} files)"
    )
    lines.append(
        f"target per-file cost under {TARGET_PER_FILE_MS} ms CPU: "
        f"{'met' if per_file_cpu < TARGET_PER_FILE_MS else 'MISSED'} ({per_file_cpu:.2f} ms)"
    )
    met = ratio <= TARGET_RATIO and many["parts"] <= many["units"]
    lines.append(
        f"target small files within {TARGET_RATIO:.0f}x of one file, at most one part file per unit: "
        f"{'met' if met else 'MISSED'} ({ratio:.2f}x, {many['parts']} part files for {many['units']} units)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5_000, help="small files (default 5000)")
    parser.add_argument("--rows", type=int, default=3, help="rows per small file (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each job, alternating (default 3)")
    parser.add_argument("--work", default=os.path.join(ROOT, "build", "small-files"), help="data and outputs")
    args = parser.parse_args(argv)
    print("\n".join(run(args.work, args.files, args.rows, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
