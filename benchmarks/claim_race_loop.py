"""By hand, not in the suite: race two launchers for one output's claim, N times.

    PYTHONPATH=. python -m benchmarks.claim_race_loop --runs 200          # the claim step alone
    PYTHONPATH=. python -m benchmarks.claim_race_loop --runs 20 --jobs    # whole `beamscore score` jobs

Without ``--jobs`` each run starts two processes that wait at a file barrier and then do what a
launcher does first: take the claim (:class:`~beamscore.pipelines.claim.Claim`) and, when they
win, clean the output's ``_temporary/`` as a job's start does, while the other is still
claiming (each waits a random 0-20 ms after the barrier, so the loser's claim is in flight while
the winner cleans). With ``--jobs`` they are two real jobs on two models, released together at
the claim (``BEAMSCORE_TEST_CLAIM_BARRIER``). A run is good when one wins (exit 0) and the
other exits 2 with the one "being written by another job" line. Prints a line per bad run and
a count; exits 1 when any run was bad.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

CLAIMER = """
import os, random, sys, time
barrier, out = sys.argv[1], sys.argv[2]
from beamscore.errors import BeamscoreError
from beamscore.pipelines.claim import Claim
from beamscore.pipelines.overwrite import remove_previous
open(os.path.join(barrier, f"ready-{os.getpid()}"), "w").close()
while not os.path.exists(os.path.join(barrier, "go")):
    time.sleep(0.001)
time.sleep(random.uniform(0, 0.02))
try:
    claim = Claim.acquire(out)
except BeamscoreError as exc:
    print(f"beamscore: error: {exc}", file=sys.stderr)
    sys.exit(2)
remove_previous(out, force=False)  # what a job's start does to a directory of temporary files only
time.sleep(0.05)
claim.release()
"""


def race_claims(work: str, run: int) -> list[tuple[int, str]]:
    barrier, out = os.path.join(work, f"barrier-{run}"), os.path.join(work, f"out-{run}")
    os.makedirs(barrier)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, barrier, out], stderr=subprocess.PIPE) for _ in range(2)]
    while len([n for n in os.listdir(barrier) if n.startswith("ready-")]) < 2:
        time.sleep(0.005)
    open(os.path.join(barrier, "go"), "w").close()
    return [(p.wait(), p.stderr.read().decode()) for p in procs]


def race_jobs(work: str, run: int, models: dict[str, str], data: str) -> list[tuple[int, str]]:
    barrier, out = os.path.join(work, f"barrier-{run}"), os.path.join(work, f"out-{run}")
    os.makedirs(barrier)
    env = {**os.environ, "BEAMSCORE_TEST_CLAIM_BARRIER": f"{barrier}:before", "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = []
    for model in (models["two_sig"], models["versioned"]):
        cmd = [sys.executable, "-m", "beamscore", "score", "--model", model, "--input", data, "--output", out]
        procs.append(subprocess.Popen([*cmd, "--keep", "id", "--no-progress"], stderr=subprocess.PIPE, env=env))
    while len([n for n in os.listdir(barrier) if n.startswith("ready-")]) < 2:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    open(os.path.join(barrier, "go"), "w").close()
    return [(p.wait(), p.stderr.read().decode()) for p in procs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--jobs", action="store_true", help="race whole beamscore score jobs")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="beamscore-races-")
    models, data = {}, ""
    if args.jobs:
        import builders

        root = os.path.join(work, "models")
        models = {"two_sig": builders.save_two_signature_model(os.path.join(root, "two_sig"))}
        models["versioned"] = builders.save_two_signature_model(os.path.join(root, "versioned", "1"))
        paths, _ids, _x = builders.write_parquet_shards(os.path.join(work, "in"), rows=200, shards=1)
        data = paths[0]
    tally: dict[str, int] = {}
    bad = 0
    for run in range(args.runs):
        results = race_jobs(work, run, models, data) if args.jobs else race_claims(work, run)
        codes = sorted(code for code, _ in results)
        loser = [err.strip() for code, err in results if code != 0]
        # a whole job says one line; the bare claim step may print a library's import warning first
        said = loser[0].splitlines() if loser else [""]
        one_line = len(said) == 1 or not args.jobs
        good = codes == [0, 2] and one_line and "being written by another job" in said[-1]
        key = f"exits {codes}"
        tally[key] = tally.get(key, 0) + 1
        if not good:
            bad += 1
        print(f"run {run}: {'ok' if good else 'BAD'} {codes}: {' | '.join(loser)[-200:]}", flush=True)
    kind = "job" if args.jobs else "claim"
    print(f"{args.runs} {kind} races: {dict(sorted(tally.items()))}; {bad} bad")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
