"""What a scheduler sees of a job: progress lines off a terminal, ``--json``, ``--log-format json``.

The progress test runs ``python -m beamscore`` as a real process whose stderr is a pipe (not a
terminal), on a job made slow honestly: a model that spins a ``tf.while_loop`` on every call
(``job_models.slow``) and batches of 5 rows, so it runs for seconds while progress is due
every 0.5 s.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import subprocess
import sys

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beamscore.cli import main

ROWS = 600
#: the progress interval: well under the job's length on any CPU (0.5 s gave one line on a
#: quiet machine, where the 600 rows took 0.9 s; the test had passed only under load)
EVERY = 0.1
PROGRESS = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) progress: ([\d,]+) / 600 rows \(\d+%\), \d+ / 12 units"
)


@pytest.fixture(scope="module")
def slow_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow_job")
    model = job_models.build_all(str(root / "models"))["slow"]
    x = np.random.default_rng(3).normal(size=(ROWS, 4)).astype(np.float32)
    data = root / "in.parquet"
    table = pa.table({"id": np.arange(ROWS), "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})
    pq.write_table(table, data, row_group_size=50)  # 12 work units
    return model, str(data)


def test_off_a_terminal_progress_is_a_timestamped_line_every_interval_and_json_is_the_summary(slow_job, tmp_path):
    model, data = slow_job
    out = tmp_path / "out"
    args = [model, "--input", data, "--output", str(out), "--batch_size", "5", "--rows_per_unit", "50"]
    args += ["--progress-every", str(EVERY), "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "beamscore", "score", *args], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # stdout: exactly one line, the summary
    assert proc.stdout.count("\n") == 1
    summary = json.loads(proc.stdout)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert summary["status"] == manifest.get("status", "succeeded") == "succeeded"
    assert (summary["exit_code"], summary["error"]) == (0, None)
    assert (summary["rows_in"], summary["rows_out"], summary["rows_failed"]) == (ROWS, ROWS, 0)
    assert summary["output"] == str(out) and summary["manifest"] == str(out / "_manifest.json")
    assert summary["fingerprint"] == manifest["model"]["fingerprint"] and summary["seconds"] > 0
    metrics = summary["metrics"]
    assert metrics == manifest["metrics"]
    assert metrics["batches"] == ROWS // 5 and metrics["batch_rows_mean"] == 5.0
    assert metrics["model_loads"] == metrics["workers"] == 1 and metrics["model_loads_per_worker"] == 1.0
    assert metrics["batch_latency_ms_mean"] > 0
    # stderr: a timestamped progress line every EVERY seconds while the job ran, rows never going back
    lines = [m for m in map(PROGRESS.match, proc.stderr.splitlines()) if m]
    assert len(lines) >= 2, proc.stderr[-3000:]
    times = [dt.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) for m in lines]
    rows = [int(m.group(2).replace(",", "")) for m in lines]
    assert times == sorted(times) and rows == sorted(rows) and rows[-1] <= ROWS
    assert all(abs(b - a).total_seconds() >= 0.8 * EVERY for a, b in itertools.pairwise(times))
    # the human summary went to stderr, with the counters
    assert "scored 600 rows" in proc.stderr and "model loads 1 (1 per worker), 120 batches" in proc.stderr
    assert not [f for f in os.listdir(os.path.dirname(str(out))) if f.startswith("beamscore-progress")]


def test_json_log_format_and_summary_in_process(models, shards, tmp_path, capsys):
    paths, _ids, _x = shards
    out = tmp_path / "out"
    argv = ["score", models["two_sig"], "--input", paths[0], "--output", str(out), "--log-format", "json", "--json"]
    assert main([*argv, "--progress-every", "0.01"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["status"] == "succeeded" and summary["rows_out"] == summary["rows_in"] > 0
    events = [json.loads(line) for line in captured.err.splitlines()]
    assert events and all({"ts", "level", "event", "message"} <= set(e) for e in events)
    assert all(e["ts"].endswith("Z") and dt.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in events)
    progress = [e for e in events if e["event"] == "progress"]
    assert all({"rows_done", "rows_total", "units_done", "units_total", "eta_s"} <= set(e) for e in progress)
    assert any(e["message"].startswith("scored ") for e in events)
    # a refusal: one error event on stderr, and still one summary line on stdout
    assert main(argv) == 2
    captured = capsys.readouterr()
    (event,) = [json.loads(line) for line in captured.err.splitlines()]
    assert (event["level"], event["event"]) == ("error", "error") and "is not empty" in event["message"]
    summary = json.loads(captured.out)
    assert (summary["status"], summary["exit_code"]) == ("refused", 2) and summary["error"] == event["message"]
    # a mistyped flag, before anything is parsed: the same shapes
    assert main([*argv, "--keeep", "id"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.err)["message"].endswith("did you mean --keep?")
    assert json.loads(captured.out)["status"] == "refused"


def test_a_mistyped_flag_in_a_real_process_exits_2_with_the_suggestion(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "beamscore",
            "score",
            "m",
            "--input",
            "x",
            "--output",
            str(tmp_path),
            "--batch_sise",
            "9",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "beamscore: error: unknown option --batch_sise (neither a beamscore flag nor a Beam pipeline option); "
        "did you mean --batch-size?\n"
    )
