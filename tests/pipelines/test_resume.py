"""Commit and resume: a killed job leaves no manifest, ``--resume`` finishes it identically.

The killed job is a real ``python -m beamscore score`` process over many small units (a
model that spins ~50 ms per call makes it slow enough to catch); the test kills it with
SIGKILL once some units have receipts, then reruns the same command with ``--resume``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import time

import builders
import job_models
import pyarrow.parquet as pq
import pytest
from cli_runs import error_lines
from conftest import read_output
from kill_jobs import kill_midway

from beamscore.cli import main
from beamscore.transforms.watchdog import worker_processes

UNITS = 60


@pytest.fixture(scope="module")
def jm(tmp_path_factory) -> dict[str, str]:
    return job_models.build_all(str(tmp_path_factory.mktemp("job_models")))


@pytest.fixture(scope="module")
def many_units(tmp_path_factory) -> tuple[list[str], object, object]:
    """One Parquet file of ``UNITS`` row groups of 40 rows: one work unit per row group."""
    root = tmp_path_factory.mktemp("many_units")
    return builders.write_parquet_shards(str(root), rows=40 * UNITS, shards=1, row_group_size=40)


def job(model: str, data: str, out) -> list[str]:
    return ["score", "--model", model, "--input", data, "--output", str(out), "--keep", "id", "--rows-per-unit", "40"]


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    return m


def test_killed_run_then_resume_gives_the_uninterrupted_result(jm, many_units, tmp_path, capsys):
    paths, ids, _x = many_units
    reference = tmp_path / "reference"
    assert main(job(jm["slow"], paths[0], reference)) == 0
    capsys.readouterr()

    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    receipts = out / "_units"

    def done() -> int:
        return len([f for f in os.listdir(receipts) if f.startswith("part-")]) if receipts.exists() else 0

    proc = kill_midway(job(jm["slow"], paths[0], out), env, done, at_least=5)
    assert proc.returncode == -signal.SIGKILL
    done_before = sorted(f for f in os.listdir(receipts) if f.startswith("part-"))
    assert 5 <= len(done_before) < UNITS
    assert not (out / "_manifest.json").exists()  # killed: visibly unfinished

    # without --resume the unfinished dir is refused, with it the job is finished
    assert main(job(jm["slow"], paths[0], out)) == 2
    err = capsys.readouterr().err
    assert "pass --resume to continue it" in err
    # the killed launcher's claim names a process that is gone: taken over, and said so
    assert "taking over the stale claim" in err and f"pid {proc.pid}" in err
    assert main([*job(jm["slow"], paths[0], out), "--resume"]) == 0
    summary = capsys.readouterr().out
    assert "units already done, resumed" in summary
    # rows/s is this run's rows over this run's time: the resumed units' rows are not counted
    seconds, rate = re.search(r"rows in ([\d.]+)s \(([\d,]+) rows/s\)", summary).groups()
    scored_now = len(ids) - 40 * len(done_before)
    assert int(rate.replace(",", "")) <= scored_now / (float(seconds) - 0.05) + 1
    assert not (out / "_claim.json").exists()
    m = manifest_of(out)
    assert m["units"] == UNITS and m["units_resumed"] >= len(done_before)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (len(ids), len(ids), 0)
    ref = manifest_of(reference)
    assert [os.path.basename(f) for f in m["outputs"]] == [os.path.basename(f) for f in ref["outputs"]]
    assert read_output(str(out)).equals(read_output(str(reference)))
    assert not (out / "_temporary").exists()

    # a finished output: --resume (a scheduler's retry after a success) is "already complete",
    # exit 0, nothing rewritten; without --resume or --overwrite it is refused
    before = {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out) if f.startswith("part-")}
    assert main([*job(jm["slow"], paths[0], out), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert before == {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out) if f.startswith("part-")}
    assert main(job(jm["slow"], paths[0], out)) == 2
    assert "holds a finished result (_manifest.json); pass --overwrite" in capsys.readouterr().err


def test_sigterm_stops_the_job_releases_its_claim_and_resume_finishes_it(jm, many_units, tmp_path):
    """A scheduler's timeout or a stopping Kubernetes pod sends SIGTERM: the launcher says so
    in one line, exits 143 and releases its claim at once, so a retry on another machine is
    not refused as "being written by another job" until the claim goes stale."""
    paths, ids, _x = many_units
    out = tmp_path / "out"
    receipts = out / "_units"

    def done() -> int:
        return len([f for f in os.listdir(receipts) if f.startswith("part-")]) if receipts.exists() else 0

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = kill_midway(job(jm["slow"], paths[0], out), env, done, at_least=3, sig=signal.SIGTERM)
    assert proc.returncode == 143, proc.stderr_text
    assert error_lines(proc.stderr_text) == [
        "beamscore: error: terminated (SIGTERM); rerun with --resume to continue the job"
    ]
    assert not (out / "_claim.json").exists() and not (out / "_manifest.json").exists()
    assert main([*job(jm["slow"], paths[0], out), "--resume"]) == 0
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["units"]) == (len(ids), len(ids), UNITS)
    assert read_output(str(out))["id"].to_pylist() == ids.tolist()


def test_sighup_is_handled_as_sigterm_with_exit_129(jm, many_units, tmp_path):
    """A closed terminal or ssh session sends SIGHUP: it used to kill the launcher where it
    stood (exit 129, nothing on stderr, _claim.json and _temporary/ left); now the job unwinds
    as for SIGTERM, says so in one line and releases its claim and temporary files."""
    paths, ids, _x = many_units
    out = tmp_path / "out"
    receipts = out / "_units"

    def done() -> int:
        return len([f for f in os.listdir(receipts) if f.startswith("part-")]) if receipts.exists() else 0

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = kill_midway(job(jm["slow"], paths[0], out), env, done, at_least=3, sig=signal.SIGHUP)
    assert proc.returncode == 129, proc.stderr_text
    assert error_lines(proc.stderr_text) == [
        "beamscore: error: hung up (SIGHUP: the terminal or session closed); rerun with --resume to continue the job"
    ]
    assert not (out / "_claim.json").exists() and not (out / "_manifest.json").exists()
    assert not (out / "_temporary").exists()
    assert main([*job(jm["slow"], paths[0], out), "--resume"]) == 0
    assert read_output(str(out))["id"].to_pylist() == ids.tolist()


@pytest.mark.slow
def test_sigterm_on_worker_processes_leaves_no_temporary_files(jm, many_units, tmp_path):
    """With local worker processes, a stopped job's workers are ended before its clean-up:
    left alone they went on writing until they saw their launcher gone, and a unit file
    opened in that moment was left in _temporary/."""
    paths, ids, _x = many_units
    out = tmp_path / "out"
    receipts = out / "_units"

    def done() -> int:
        return len([f for f in os.listdir(receipts) if f.startswith("part-")]) if receipts.exists() else 0

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [*job(jm["slow"], paths[0], out), "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    proc = kill_midway(args, env, done, at_least=3, sig=signal.SIGTERM)
    assert proc.returncode == 143, proc.stderr_text
    assert not (out / "_claim.json").exists() and not (out / "_manifest.json").exists()
    time.sleep(1.0)  # a worker that outlived its launcher would have written by now
    assert not (out / "_temporary").exists()
    assert worker_processes(proc.pid) == []
    assert main([*job(jm["slow"], paths[0], out), "--resume"]) == 0
    assert read_output(str(out))["id"].to_pylist() == ids.tolist()


def test_sigquit_stops_at_once_even_when_started_ignoring_it(jm, many_units, tmp_path):
    """SIGQUIT (Ctrl-\\) is the emergency stop: one line, exit 131, no clean-up, even for a job
    a script started in the background (SIGQUIT ignored: it used to be a no-op); the claim of
    a launcher gone from this machine is stale at once, so --resume continues."""
    paths, ids, _x = many_units
    out = tmp_path / "out"
    receipts = out / "_units"

    def done() -> int:
        return len([f for f in os.listdir(receipts) if f.startswith("part-")]) if receipts.exists() else 0

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = kill_midway(
        job(jm["slow"], paths[0], out), env, done, at_least=3, sig=signal.SIGQUIT, ignoring=(signal.SIGQUIT,)
    )
    assert proc.returncode == 131, proc.stderr_text
    assert error_lines(proc.stderr_text) == [
        "beamscore: error: quit (SIGQUIT) at once, nothing cleaned up; rerun with --resume"
    ]
    assert (out / "_claim.json").exists() and not (out / "_manifest.json").exists()
    assert main([*job(jm["slow"], paths[0], out), "--resume"]) == 0
    assert read_output(str(out))["id"].to_pylist() == ids.tolist()


def test_resume_refuses_another_job_and_redoes_half_written_units(jm, models, many_units, tmp_path, capsys):
    paths, _ids, _x = many_units
    out = tmp_path / "out"
    assert main(job(jm["slow"], paths[0], out)) == 0
    first = read_output(str(out))
    # simulate a run killed after unit 7's file was renamed but before its receipt was written,
    # and one killed before unit 8's file appeared
    (out / "_manifest.json").unlink()
    (out / "_units" / "part-00000-00007.json").unlink()
    (out / "part-00000-00008.parquet").unlink()
    pq.write_table(first.slice(0, 3), out / "part-00000-00007.parquet")  # garbage under the final name
    code = main([*job(models["two_sig"], paths[0], out)[:-2], "--rows-per-unit", "40", "--resume"])
    assert code == 2
    assert "was started by a different job: the model (fingerprint) was" in capsys.readouterr().err
    assert main([*job(jm["slow"], paths[0], out), "--resume"]) == 0
    m = manifest_of(out)
    assert m["units_resumed"] == UNITS - 2 and m["units"] == UNITS
    assert read_output(str(out)).equals(first)


def test_output_path_placeholders(models, shards, tmp_path, capsys):
    paths, _ids, _x = shards
    template = str(tmp_path / "runs" / "{date}" / "v{model_version}")
    assert main(["score", "--model", models["versioned"], "--input", paths[0], "--output", template]) == 0
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    out = tmp_path / "runs" / today / "v2"
    assert manifest_of(out)["output"] == str(out)
    assert f"output: {out}" in capsys.readouterr().out
    stamped = str(tmp_path / "stamped" / "{datetime}")
    assert main(["score", "--model", models["two_sig"], "--input", paths[0], "--output", stamped]) == 0
    (made,) = os.listdir(tmp_path / "stamped")
    assert dt.datetime.strptime(made, "%Y-%m-%dT%H-%M-%SZ")
    for bad, message in (
        ("{user}", "unknown placeholder {user}; known: {date}, {datetime}, {model_version}"),
        ("{model_version}", "is not a versioned base dir"),
        ("{date.__class__}", "unknown placeholder {date.__class__}"),
    ):
        code = main(["score", "--model", models["two_sig"], "--input", paths[0], "--output", str(tmp_path / bad)])
        assert code == 2
        assert message in capsys.readouterr().err
