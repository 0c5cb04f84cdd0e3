"""By hand, not in the suite: where the trial call's time goes, and what it adds to a job.

    PYTHONPATH=. python -m benchmarks.trial_time [--repeat 5]

Builds the bench MLP (64 -> 256 -> 256 -> 10) and one Parquet file of 20,000 rows (in a child
process), then runs fresh interpreters, alternating with and without ``--no-trial``; each
plans the job with an in-process runner (``prepare``), loads the model as ``run_plan`` does
when the trial did not (``preload``) and scores a first batch of 4,096 rows through the
worker's copy. It prints the medians of: the trial call's parts (reading its 8 rows, the
model load, the 8-row call: TensorFlow instantiating the signature's function, then
running it), the whole planning, and the time until the first batch is scored. With an
in-process runner the trial's load and first call are the worker's (its copy is reused),
so what the trial adds to a job is the last column's difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

BUILD = """
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from benchmarks.build import build_mlp
build_mlp(sys.argv[1])
x = np.random.default_rng(0).normal(size=(20000, 64)).astype(np.float32)
pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 64)}), sys.argv[2])
"""

ONE = """
import json, sys, time
from beamscore._quiet import import_tensorflow_quietly
import_tensorflow_quietly()
import numpy as np, pyarrow.parquet as pq
from beamscore.config import ScoreConfig
from beamscore.model.loader import is_preloaded, load_model, preload
from beamscore.pipelines.score import prepare
model, data, out, trial = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
x = np.stack(pq.read_table(data)["x"].to_numpy(zero_copy_only=False)[:4096])
began = time.perf_counter()
plan, _, _ = prepare(ScoreConfig(model=model, inputs=[data], output=out, overwrite=True, trial=trial))
planned = time.perf_counter()
if not is_preloaded(plan.spec):
    preload(plan.spec)  # what run_plan does for an in-process runner when the trial did not load it
fn = load_model(plan.spec).signature("serving_default")  # the worker's copy
fn(x=x)
scored = time.perf_counter()
print(json.dumps({**plan.trial_s, "trial step": plan.planning_s.get("trial", 0.0),
                  "planning": planned - began, "first batch scored": scored - began}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="beamscore-trial-")
    model, data = os.path.join(root, "mlp"), os.path.join(root, "x.parquet")
    subprocess.run([sys.executable, "-c", BUILD, model, data], check=True, capture_output=True)
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for i in range(args.repeat * 2):
        trial = i % 2 == 0
        cmd = [sys.executable, "-c", ONE, model, data, os.path.join(root, f"out{i}"), "1" if trial else "0"]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs[trial].append(json.loads(done.stdout.strip().splitlines()[-1]))
    keys = ["read", "load", "call", "trial step", "planning", "first batch scored"]
    print(f"median of {args.repeat} fresh processes each, seconds")
    print(f"{'':<12}" + "".join(f"{k:>20}" for k in keys))
    for trial in (True, False):
        row = [statistics.median(r.get(k, 0.0) for r in runs[trial]) for k in keys]
        print(f"{'trial' if trial else '--no-trial':<12}" + "".join(f"{v:>20.3f}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
