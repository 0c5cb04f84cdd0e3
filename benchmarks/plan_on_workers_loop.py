"""By hand, not in the suite: run ``beamscore score --plan-on-workers`` over many small files
again and again, and count the endings (issue 33: one run in five ended ``NotImplementedError:
Invalid PaneInfoEncoding: 6``, exit 3, no manifest).

    PYTHONPATH=. python -m benchmarks.plan_on_workers_loop --files 5000 --runs 20

Builds a small model and ``--files`` Parquet files of a few rows once, then runs the job
``--runs`` times (each into a fresh output, in a child process, the default local runner).
Prints one line per run (exit code, seconds, the last stderr line) and a count; exits 1 when
any run did not exit 0 with every row written. Each run's address space is limited to
``--max-gb`` (default 8; TensorFlow alone reserves about 4): the fault this loop looked for
could ask for 22 GB.

Found (2026-12-07): Beam's ``multi_threading`` harness flushed its output every second from
another thread and could cut an element in two; beamscore's local runner now turns that
flush off (see ``beamscore.pipelines.runners._local_runner`` and ``benchmarks/flush_race.py``,
which reproduces it every time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

BUILD = """
import os, sys
sys.path.insert(0, sys.argv[3])
import builders
builders.save_two_signature_model(sys.argv[1])
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
n, root = int(sys.argv[2]), sys.argv[4]
x = np.random.default_rng(0).normal(size=(n * 3, 4)).astype(np.float32)
for i in range(n):
    rows = x[3 * i : 3 * i + 3]
    xs = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), 4)
    table = pa.table({"id": np.arange(3 * i, 3 * i + 3), "x": xs})
    pq.write_table(table, os.path.join(root, f"f-{i:05d}.parquet"))
"""


def _limit(gb: float):
    """A ``preexec_fn`` limiting the child's address space to ``gb`` GB."""
    import resource

    size = int(gb * (1 << 30))
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (size, size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--max-gb", type=float, default=8.0, help="address-space limit of each run (GB)")
    parser.add_argument("beam_args", nargs="*", help="extra flags for beamscore score (after --)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="beamscore-pow-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    model = os.path.join(work, "model")
    subprocess.run([sys.executable, "-c", BUILD, model, str(args.files), tests, data], check=True, capture_output=True)
    bad = 0
    for run in range(args.runs):
        out = os.path.join(work, f"out-{run}")
        cmd = [sys.executable, "-m", "beamscore", "score", "--model", model, "--input", data, "--output", out]
        cmd += ["--plan-on-workers", "--no-progress", *args.beam_args]
        began = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, preexec_fn=_limit(args.max_gb))
        seconds = time.perf_counter() - began
        last = (done.stderr.strip().splitlines() or [""])[-1][:300]
        rows = None
        if os.path.exists(os.path.join(out, "_manifest.json")):
            with open(os.path.join(out, "_manifest.json")) as f:
                rows = json.load(f)["rows_out"]
        ok = done.returncode == 0 and rows == 3 * args.files
        bad += not ok
        said = "" if ok else last
        print(f"run {run:2d}: exit {done.returncode} in {seconds:5.1f}s rows_out {rows} {said}", flush=True)
        if ok:
            shutil.rmtree(out, ignore_errors=True)
        else:
            with open(os.path.join(work, f"stderr-{run}.txt"), "w") as f:
                f.write(done.stderr)
    print(f"{args.runs - bad} of {args.runs} runs good; work dir {work}")
    if not args.keep and not bad:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
