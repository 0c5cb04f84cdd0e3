"""A job that fails on a worker: exit 3 and a last stderr line that names the real cause.

The failure is real: the job runs in a child process whose file-size limit
(``RLIMIT_FSIZE``) is below what the output needs, so the Parquet writer gets
``OSError: [Errno 27] File too large`` from the kernel, as it would get ``No space left on
device`` from a full disk. A child where the point is what a terminal gets (exit code, the
bare stderr, worker processes' output); ``--debug``'s extra text is read in this process
under the same limit (:mod:`file_limits`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runs import run_cli
from file_limits import file_size_limit

from beamscore.errors import JobFailed, describe_failure

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
from beamscore.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> str:
    x = np.random.default_rng(2).normal(size=(20_000, 4)).astype(np.float32)
    path = str(tmp_path_factory.mktemp("failures") / "in.parquet")
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)}), path)
    return path


def score_limited(
    model: str, source: str, out: str, *extra: str, tmpdir: str | None = None
) -> subprocess.CompletedProcess:
    # --no-progress: off a terminal a progress line is due every 30 s, and a loaded machine may get there
    args = ["score", "--model", model, "--input", source, "--output", out, "--no-progress", *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    if tmpdir:
        env["TMPDIR"] = tmpdir
    return subprocess.run(
        [sys.executable, "-c", LIMITED, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_a_worker_error_is_one_line_naming_file_stage_and_cause(models, big_input, tmp_path):
    run = score_limited(models["two_sig"], big_input, str(tmp_path / "out"))
    assert run.returncode == 3, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines == [
        f"beamscore: error: the job failed: {big_input} (part-00000-00000): write: OSError: [Errno 27] File too large"
    ], run.stderr  # nothing of Beam's log, no traceback
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_debug_shows_the_log_and_never_says_rerun_with_debug(models, big_input, tmp_path):
    """The same failure in this process (:func:`cli_runs.run_cli`), under the same file-size
    limit (the exit code and the bare terminal are the test above's)."""
    args = ["score", "--model", models["two_sig"], "--input", big_input, "--output", str(tmp_path / "out")]
    with file_size_limit(100_000):
        done = run_cli(*args, "--no-progress", "--debug")
    err = done.stderr
    assert done.code == 3, err
    assert "Traceback" in err and "rerun with --debug" not in err
    assert err.strip().splitlines()[-1].endswith("write: OSError: [Errno 27] File too large")


MULTI_PROCESS = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")


def test_worker_processes_keep_their_log_and_tracebacks_off_the_terminal(models, big_input, tmp_path):
    """Beam's local worker processes print a failed bundle's traceback (and log at INFO) to
    the stderr they inherit: it goes to a log file that the error line names."""
    logs = tmp_path / "tmp"
    logs.mkdir()
    run = score_limited(models["two_sig"], big_input, str(tmp_path / "out"), *MULTI_PROCESS, tmpdir=str(logs))
    assert run.returncode == 3, run.stderr
    (line,) = run.stderr.strip().splitlines()  # one line, nothing of the workers' log
    (log,) = logs.glob("beamscore-workers-*.log")
    assert line.startswith(f"beamscore: error: the job failed: {big_input} (part-00000-00000): write: OSError: ")
    assert "File too large" in line and line.endswith(f"(the worker processes' log: {log})")
    assert "Traceback" in log.read_text() and "File too large" in log.read_text()


def test_a_multi_process_job_that_succeeds_leaves_no_worker_log(models, tmp_path):
    logs = tmp_path / "tmp"
    logs.mkdir()
    source = str(tmp_path / "small.parquet")
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(40, np.float32)), 4)}), source)
    run = score_limited(models["two_sig"], source, str(tmp_path / "out"), *MULTI_PROCESS, tmpdir=str(logs))
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and "rows in 10, out 10, failed 0" in run.stdout
    assert not list(logs.iterdir())


def test_describe_failure_reads_a_runners_traceback_text():
    """Runners hand back the worker's traceback as text; the step and the first line win."""
    text = (
        "Traceback (most recent call last):\n  File 'x.py', line 1\n"
        "OSError: [Errno 28] No space left on device\n\n"
        "RuntimeError: OSError: [Errno 28] No space left on device [while running 'Run/ParDo(RunSignatureFn)']"
    )
    assert describe_failure(RuntimeError(text)) == (
        "step 'Run/ParDo(RunSignatureFn)': OSError: [Errno 28] No space left on device"
    )
    ours = text + "\nbeamscore.errors.JobFailed: a.parquet (part-00001-00000): write: OSError: boom [while running 'W']"
    assert describe_failure(RuntimeError(ours)) == "a.parquet (part-00001-00000): write: OSError: boom"
    try:
        raise RuntimeError("wrapped") from JobFailed("in.parquet (part-00000-00000): write: OSError: full")
    except RuntimeError as exc:
        assert describe_failure(exc) == "in.parquet (part-00000-00000): write: OSError: full"
    assert describe_failure(ValueError("odd\nsecond line")) == "ValueError: odd"
