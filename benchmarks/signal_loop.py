"""By hand, not in the suite: SIGTERM / Ctrl-C a real job at random moments, count the endings.

    PYTHONPATH=. python -m benchmarks.signal_loop --runs 50 --signal TERM
    PYTHONPATH=. python -m benchmarks.signal_loop --runs 20 --signal INT --multi

Each run starts ``beamscore score`` in its own process group on a slow model (so the job is
still running when the signal comes), waits a random time from 0 to ``--within`` seconds and
sends the signal: SIGTERM to the launcher (a scheduler's timeout), SIGINT to the whole group
(what Ctrl-C at a terminal does). A run is good when it exits 143 (TERM) or 130 (INT), or 0
when the job finished first, and stderr is exactly one line. Prints one line per run and a
count; exits 1 when any run was bad. Nothing is asserted about timing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--signal", choices=("TERM", "INT"), default="TERM")
    parser.add_argument("--within", type=float, default=45.0, help="latest moment of the signal, in seconds")
    parser.add_argument("--earliest", type=float, default=0.0, help="earliest moment of the signal, in seconds")
    parser.add_argument("--multi", action="store_true", help="--direct_running_mode=multi_processing")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()
    import builders
    import job_models

    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="beamscore-signals-")
    models = job_models.build_all(os.path.join(work, "models"))
    paths, _ids, _x = builders.write_parquet_shards(os.path.join(work, "in"), rows=40 * 40, shards=1)
    signum = signal.SIGTERM if args.signal == "TERM" else signal.SIGINT
    want = 143 if args.signal == "TERM" else 130
    codes: dict[int, int] = {}
    bad = 0
    for run in range(args.runs):
        out = os.path.join(work, f"out-{run}")
        cmd = [sys.executable, "-m", "beamscore", "score", "--model", models["slow"], "--input", paths[0]]
        cmd += ["--output", out, "--rows-per-unit", "40", "--no-progress"]
        if args.multi:
            cmd += ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        at = rng.uniform(args.earliest, args.within)
        time.sleep(at)
        if job.poll() is None:
            if signum == signal.SIGINT:
                os.killpg(job.pid, signum)
            else:
                job.send_signal(signum)
        try:
            _stdout, stderr = job.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            _stdout, stderr = job.communicate()
        lines = stderr.decode(errors="replace").strip().splitlines()
        code = job.returncode
        codes[code] = codes.get(code, 0) + 1
        good = (code == want and len(lines) == 1) or (code == 0 and not lines)
        bad += not good
        shown = lines[0][:110] if len(lines) == 1 else f"{len(lines)} lines: " + " | ".join(lines[-3:])[:300]
        print(f"run {run:2d}: signal at {at:5.2f} s -> exit {code}{'' if good else '  BAD'}: {shown}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        # the group's stragglers, if any (there should be none)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
    print(f"{args.runs} runs, SIG{args.signal}: exit codes {dict(sorted(codes.items()))}; {bad} bad")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
