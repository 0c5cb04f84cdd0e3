"""Scheduled scoring as a scheduler sees it: exit codes, ``_SUCCESS``, the manifest's
``status``, ``--resume`` refusing a changed job, ``--date`` and the docs' cron line and
Airflow task run as written.

The exit codes are read from real ``python -m beamscore`` processes: a job whose rows fail
(a model that raises on one row: its one stderr line, nothing of TensorFlow's), a refused
one and one stopped by SIGINT. A succeeded job's 0 and a crashed one's 3 are ``main``'s
return value in this process (what ``python -m beamscore`` passes to ``sys.exit``); the
docs' cron line and Airflow task read 0 from real processes, ``tests/test_cli_failures.py``
3. The crash is a real one on the worker: a file-size limit (``RLIMIT_FSIZE``,
:mod:`file_limits`) makes the Parquet writer fail with ``EFBIG`` as a full disk would.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runs import error_lines, run_cli
from conftest import read_output
from docs_blocks import docs_block
from file_limits import file_size_limit
from kill_jobs import kill_midway

import beamscore as beamscore_api
from beamscore.cli import main
from beamscore.dates import fill_date, parse_date
from beamscore.errors import BeamscoreError, TryLater
from beamscore.exitcodes import (
    EXIT_CRASHED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROWS_FAILED,
    EXIT_TEMPFAIL,
    EXIT_USAGE,
)
from beamscore.pipelines.claim import Claim

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
#: the keys of the manifest's ``settings`` (documented in docs/outputs.md)
SETTINGS = {
    "version",
    "signature",
    "tag_set",
    "map",
    "cast",
    "pad",
    "keep",
    "outputs",
    "output_format",
    "output_compression",
    "output_compression_level",
    "reject_nan",
    "jit_compile",
    "fixed_batch_size",
}


def beamscore(*args: str) -> subprocess.CompletedProcess:
    """``python -m beamscore ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "beamscore", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
        check=False,
    )


def fixed(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    return m


@pytest.fixture(scope="module")
def jm(tmp_path_factory) -> dict[str, str]:
    return job_models.build_all(str(tmp_path_factory.mktemp("job_models")))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    """200 rows: ``id``, ``x`` and ``x2`` (float32 [4]), ``name``; row 37 has ``x[0] = 150``,
    which the ``raising`` model refuses (a dead letter), and which others score."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    x[37, 0] = 150.0
    path = tmp_path_factory.mktemp("data") / "in.parquet"
    table = pa.table({"id": np.arange(200), "x": fixed(x), "x2": fixed(x * 2), "name": [f"n{i}" for i in range(200)]})
    pq.write_table(table, path, row_group_size=50)
    return str(path)


def job(model: str, data: str, out, *extra: str) -> list[str]:
    return ["score", "--model", model, "--input", data, "--output", str(out), "--rows-per-unit", "50", *extra]


def test_exit_0_status_succeeded_and_success_written_last(models, data, tmp_path):
    out = tmp_path / "out"
    done = run_cli(*job(models["two_sig"], data, out, "--keep", "id", "x", "--date", "2026-12-01"))
    assert done.code == EXIT_OK, done.stderr
    m = manifest_of(out)
    assert (m["status"], m["status_reason"]) == ("succeeded", None)
    assert m["date"] == "2026-12-01"
    assert set(m["settings"]) == SETTINGS
    assert m["settings"]["keep"] == ["id", "x"] and m["settings"]["map"] == {"x": "x"}
    assert m["settings"]["output_compression"] == "snappy" and m["settings"]["fixed_batch_size"] is None
    success = out / "_SUCCESS"
    assert success.read_bytes() == b""
    assert success.stat().st_mtime_ns >= (out / "_manifest.json").stat().st_mtime_ns  # written last
    # _SUCCESS is never data: the output directory as an input reads its part files only
    again = tmp_path / "again"
    assert main(["score", "--model", models["two_sig"], "--input", str(out), "--output", str(again)]) == 0
    assert manifest_of(again)["rows_in"] == 200


def test_exit_1_rows_over_the_limit_status_failed_no_success(jm, data, tmp_path, capsys):
    out = tmp_path / "out"
    run = beamscore(*job(jm["raising"], data, out, "--keep", "id"))
    assert run.returncode == EXIT_ROWS_FAILED, run.stderr
    m = manifest_of(out)  # the outputs and the manifest are written...
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (200, 199, 1)
    assert m["status"] == "failed"
    assert m["status_reason"].startswith("1 of 200 rows failed (0.50%), over the limit (no failed rows allowed")
    assert error_lines(run.stderr) == [f"beamscore: error: {m['status_reason']}"]
    assert not (out / "_SUCCESS").exists()  # ...but no _SUCCESS
    assert read_output(str(out))["id"].to_pylist() == [i for i in range(200) if i != 37]

    # a retry that allows the failed row: "already complete", exit 0, the verdict rewritten
    assert main([*job(jm["raising"], data, out, "--keep", "id"), "--resume", "--max-failed-rows", "1"]) == EXIT_OK
    assert "already complete" in capsys.readouterr().out
    m = manifest_of(out)
    assert (m["status"], m["status_reason"]) == ("succeeded", None)
    assert m["failure_limits"] == {"max_failed_rows": 1, "max_failed_fraction": None}
    assert (out / "_SUCCESS").exists()
    # and one with the default limit again: failed, _SUCCESS gone
    assert main([*job(jm["raising"], data, out, "--keep", "id"), "--resume"]) == EXIT_ROWS_FAILED
    assert manifest_of(out)["status"] == "failed" and not (out / "_SUCCESS").exists()
    # an unfinished output with a stale _SUCCESS (its manifest gone): the resumed run that
    # fails again leaves no _SUCCESS
    (out / "_manifest.json").unlink()
    (out / "_SUCCESS").write_bytes(b"")
    assert main([*job(jm["raising"], data, out, "--keep", "id"), "--resume"]) == EXIT_ROWS_FAILED
    assert manifest_of(out)["units_resumed"] == 4 and not (out / "_SUCCESS").exists()


def test_exit_2_refused_before_anything_is_written(models, data, tmp_path):
    out = tmp_path / "out"
    for args, message in (
        (job(models["two_sig"], data, out, "--date", "2026-02-30"), "--date '2026-02-30': day is out of range"),
        (job(models["two_sig"], data, out, "--keep", "nope"), "no column 'nope' to --keep"),
    ):
        run = beamscore(*args)
        assert run.returncode == EXIT_USAGE, run.stderr
        (line,) = error_lines(run.stderr)
        assert line.startswith("beamscore: error: ") and message in line, line
        assert not out.exists()


def test_exit_75_try_again_later_nothing_written(models, data, tmp_path, capsys):
    """What a scheduler should retry unchanged (EX_TEMPFAIL), told apart from a job to fix:
    no input yet, an empty partition (unless --allow-empty), the output held by another job."""
    out = tmp_path / "out"
    run = beamscore(*job(models["two_sig"], str(tmp_path / "landing" / "*.parquet"), out))
    assert run.returncode == EXIT_TEMPFAIL, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line == f"beamscore: error: input '{tmp_path / 'landing' / '*.parquet'}' matches no files"
    assert not out.exists()

    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(data).slice(0, 0), empty)  # an upstream partition written with 0 rows
    assert main([*job(models["two_sig"], str(empty), out), "--json"]) == EXIT_TEMPFAIL
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"beamscore: error: input {empty} holds no rows (1 file, 0 rows); try again when the data has landed, "
        "or pass --allow-empty to write an empty result"
    ]
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert (summary["status"], summary["exit_code"]) == ("retry_later", EXIT_TEMPFAIL)
    assert not out.exists() or not any(out.iterdir())
    assert main([*job(models["two_sig"], str(empty), out), "--allow-empty"]) == EXIT_OK
    m = manifest_of(out)
    assert (m["status"], m["rows_in"]) == ("succeeded", 0) and (out / "_SUCCESS").exists()
    with pytest.raises(TryLater, match="holds no rows"):
        beamscore_api.score(models["two_sig"], str(empty), str(tmp_path / "api"))
    assert beamscore_api.score(models["two_sig"], str(empty), str(tmp_path / "api"), allow_empty=True)["rows_in"] == 0

    held = tmp_path / "held"
    claim = Claim.acquire(str(held))  # another job (this process, alive, its heartbeat fresh)
    try:
        assert main(job(models["two_sig"], data, held)) == EXIT_TEMPFAIL
        assert "is being written by another job" in capsys.readouterr().err
    finally:
        claim.release()
    assert main(job(models["two_sig"], data, held)) == EXIT_OK


def test_exit_3_a_crash_leaves_no_success_and_resume_finishes(models, tmp_path, capsys):
    rng = np.random.default_rng(2)
    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({"x": fixed(rng.normal(size=(20_000, 4)).astype(np.float32))}), big)
    out = tmp_path / "out"
    args = job(models["two_sig"], str(big), out)[:-2]
    assert main(args) == EXIT_OK and (out / "_SUCCESS").exists()
    capsys.readouterr()
    # the same job again with --overwrite, killed on the worker by a full "disk": the stale
    # _SUCCESS of the first run is gone before anything else happens (in this process: a real
    # child's exit 3 and bare stderr are tests/test_cli_failures.py's)
    with file_size_limit(100_000):
        done = run_cli(*args, "--overwrite")
    err = done.stderr
    assert done.code == EXIT_CRASHED, err
    (line,) = error_lines(err)
    assert line.startswith("beamscore: error: the job failed: ") and "File too large" in line
    assert "--overwrite left" not in err  # _SUCCESS was beamscore's own, not a foreign file
    assert not (out / "_SUCCESS").exists() and not (out / "_manifest.json").exists()
    assert main([*args, "--resume"]) == EXIT_OK
    assert manifest_of(out)["status"] == "succeeded" and (out / "_SUCCESS").exists()


def test_exit_130_on_sigint_leaves_no_success(jm, tmp_path):
    x = np.random.default_rng(3).normal(size=(40 * 40, 4)).astype(np.float32)
    source = tmp_path / "many.parquet"
    pq.write_table(pa.table({"x": fixed(x)}), source, row_group_size=40)
    out = tmp_path / "out"
    receipts = out / "_units"

    def done() -> int:
        return len([f for f in os.listdir(receipts) if f.startswith("part-")]) if receipts.exists() else 0

    args = ["score", "--model", jm["slow"], "--input", str(source), "--output", str(out), "--rows-per-unit", "40"]
    proc = kill_midway(args, ENV, done, at_least=2, sig=signal.SIGINT)
    assert proc.returncode == EXIT_INTERRUPTED, proc.stderr_text
    assert not (out / "_SUCCESS").exists() and not (out / "_manifest.json").exists()


# --resume with one setting changed: refused, naming the setting, its old and its new value
CHANGES = [
    (("--map", "x=x2"), (), '--map was {"x": "x2"}, now {"x": "x"}'),
    (("--cast",), (), "--cast was true, now false"),
    (("--pad", "x=4"), ("--pad", "x=4:1"), '--pad was {"x": "4"}, now {"x": "4:1"}'),
    (("--keep", "id"), ("--keep", "id", "name"), '--keep was ["id"], now ["id", "name"]'),
    (("--outputs", "scores"), (), '--outputs was ["scores"], now ["label", "scores"]'),
    (("--output-format", "npy"), (), '--output-format was "npy", now "parquet"'),
    (("--output-compression", "zstd"), (), '--output-compression was "zstd", now "snappy"'),
    (
        ("--output-compression", "zstd", "--output-compression-level", "3"),
        ("--output-compression", "zstd", "--output-compression-level", "5"),
        "--output-compression-level was 3, now 5",
    ),
    (("--reject-nan",), (), "--reject-nan was true, now false"),
    (("--signature", "embed"), (), '--signature was "embed", now "serving_default"'),
    (
        ("--jit-compile", "--batch-size", "64"),
        ("--jit-compile", "--batch-size", "32"),
        "--batch-size (with --jit-compile) was 64, now 32",
    ),
    (("--version", "1"), ("--version", "2"), 'the model version was "1", now "2"'),
]


@pytest.mark.parametrize(("first", "then", "message"), CHANGES, ids=[c[2].split(" was")[0] for c in CHANGES])
def test_resume_with_a_setting_changed_is_refused(models, data, tmp_path, capsys, first, then, message):
    model = models["versioned"] if "--version" in first else models["two_sig"]
    out = tmp_path / "out"
    assert main(job(model, data, out, *first)) == EXIT_OK, capsys.readouterr().err
    (out / "_manifest.json").unlink()  # as if the job had stopped before its commit
    (out / "_SUCCESS").unlink()
    capsys.readouterr()
    assert main([*job(model, data, out, *then), "--resume"]) == EXIT_USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"beamscore: error: --resume: output {str(out)!r} was started by a different job: {message}; "
        "pass --overwrite to start again"
    )
    assert main([*job(model, data, out, *first), "--resume"]) == EXIT_OK  # unchanged: it resumes


def test_resume_with_another_tag_set_is_refused(legacy, tmp_path, capsys):
    """The TF1 example model has the same signatures under ``serve`` and ``serve,gpu`` (the
    latter with other weights): resuming under the other tag set would mix them."""
    import legacy_models

    records = legacy_models.write_examples_tfrecord(str(tmp_path / "in.tfrecord"), np.linspace(-4, 4, 37))
    out = tmp_path / "out"
    args = ["score", "--model", legacy["ex"], "--input", records, "--output", str(out)]
    assert main([*args, "--tag-set", "serve"]) == EXIT_OK, capsys.readouterr().err
    (out / "_manifest.json").unlink()
    capsys.readouterr()
    assert main([*args, "--tag-set", "serve,gpu", "--resume"]) == EXIT_USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(
        'was started by a different job: --tag-set was "serve", now "gpu,serve"; pass --overwrite to start again'
    )


# --date and the fields it fills


def test_date_fields_and_literal_percent():
    day = dt.date(2026, 3, 9)
    assert fill_date("gs://b/%Y/%m/%d/{date}/*.parquet", day, "--input") == "gs://b/2026/03/09/2026-03-09/*.parquet"
    assert fill_date("w%V-%j-%a-%B-100%%", day, "--output") == "w11-068-Mon-March-100%"
    assert fill_date("no fields {model_version}", day, "--output") == "no fields {model_version}"
    for bad, shown in (("a%Hb", "%H is not a date field"), ("a%", "a lone % at the end"), ("%2F", "%2 is not")):
        with pytest.raises(BeamscoreError, match="write %% for a literal %") as info:
            fill_date(bad, day, "--output")
        assert shown in str(info.value) and f"--output {bad!r}" in str(info.value)
    today = dt.datetime.now(dt.UTC).date()
    assert parse_date(None) == today or parse_date(None) == today + dt.timedelta(days=1)  # midnight
    assert parse_date("2026-12-01") == dt.date(2026, 12, 1)
    assert parse_date("yesterday") in (today - dt.timedelta(days=1), today)
    for bad in ("2026-13-01", "12/01/2026", "2026-1-1", "tomorrow", ""):
        with pytest.raises(BeamscoreError, match="--date"):
            parse_date(bad)


def _scheduled_setup(root, model: str, days: list[dt.date]) -> dict[str, str]:
    """The docs' GCS paths under ``root``: a day's events for each of ``days``; returns the
    replacements that move the docs' commands there."""
    rng = np.random.default_rng(9)
    for day in days:
        part = root / "events" / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        part.mkdir(parents=True, exist_ok=True)
        x = rng.normal(size=(30, 4)).astype(np.float32)
        pq.write_table(pa.table({"user_id": np.arange(30), "x": fixed(x)}), part / "part-0.parquet")
    (root / "scores").mkdir(exist_ok=True)
    return {
        "gs://models/churn": model,
        "gs://events": str(root / "events"),
        "gs://scores": str(root / "scores"),
        "/srv/scoring": str(root / "srv"),
        "/var/log/beamscore.log": str(root / "beamscore.log"),
    }


def _moved(command: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        command = command.replace(old, new)
    return command


def _cron_command(line: str) -> str:
    """What cron runs for a crontab line: the sixth field on, up to the first unescaped
    ``%`` (the rest is stdin), with ``\\%`` turned into ``%`` (crontab(5))."""
    command = line.split(None, 5)[5]
    out, i = [], 0
    while i < len(command):
        if command.startswith("\\%", i):
            out.append("%")
            i += 2
        elif command[i] == "%":
            break
        else:
            out.append(command[i])
            i += 1
    return "".join(out)


def test_docs_cron_line_runs_as_written(models, tmp_path):
    (line,) = [ln for ln in docs_block("scheduled.md", "cron").splitlines() if ln and not ln.startswith("#")]
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=1), today]  # --date yesterday, and the day after if midnight passes
    moved = _moved(_cron_command(line), _scheduled_setup(tmp_path, models["two_sig"], days))
    venv = tmp_path / "srv" / ".venv" / "bin"
    venv.mkdir(parents=True)
    os.symlink(os.path.join(os.path.dirname(sys.executable), "beamscore"), venv / "beamscore")
    for _night in (1, 2):  # the second run (a retry after a success) is "already complete"
        run = subprocess.run(["/bin/sh", "-c", moved], env=ENV, capture_output=True, text=True, timeout=600)
        log = (tmp_path / "beamscore.log").read_text()
        assert run.returncode == 0, log[-3000:]
    (made,) = os.listdir(tmp_path / "scores" / "churn")
    out = tmp_path / "scores" / "churn" / made
    m = manifest_of(out)
    assert m["date"] == made and dt.date.fromisoformat(made) in days
    assert m["inputs"] == [str(tmp_path / "events" / made.replace("-", "/") / "part-0.parquet")]
    assert (out / "_SUCCESS").exists() and "already complete" in log


def test_docs_airflow_task_runs_as_written(models, tmp_path):
    tree = ast.parse(docs_block("scheduled.md", "airflow"))
    (command,) = [
        ast.literal_eval(k.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for k in node.keywords
        if k.arg == "bash_command"
    ]
    import jinja2

    day = dt.date(2026, 12, 1)  # the run's logical date, as Airflow renders {{ ds }}
    rendered = jinja2.Template(command).render(ds=day.isoformat())
    moved = _moved(rendered, _scheduled_setup(tmp_path, models["two_sig"], [day]))
    env = {**ENV, "PATH": os.path.dirname(sys.executable) + os.pathsep + ENV.get("PATH", "")}
    run = subprocess.run(["bash", "-c", moved], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "scores" / "churn" / "2026-12-01"
    m = manifest_of(out)
    assert m["date"] == "2026-12-01" and m["rows_out"] == 30 and (out / "_SUCCESS").exists()
    assert m["inputs"] == [str(tmp_path / "events" / "2026" / "12" / "01" / "part-0.parquet")]


# config files: relative paths are relative to the file


def test_shipped_local_config_runs_from_another_directory(tmp_path, monkeypatch, capsys):
    """``configs/local.yaml`` as shipped, beside a small ``demo/`` (the demo's MLP, 300 rows),
    run from an unrelated working directory."""
    from benchmarks.build import MLP_WIDTH, build_mlp

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    (tmp_path / "configs").mkdir()
    shutil.copy(os.path.join(repo, "configs", "local.yaml"), tmp_path / "configs" / "local.yaml")
    build_mlp(str(tmp_path / "demo" / "model"))
    (tmp_path / "demo" / "data").mkdir()
    x = np.random.default_rng(4).normal(size=(300, MLP_WIDTH)).astype(np.float32)
    pq.write_table(pa.table({"id": np.arange(300), "x": fixed(x)}), tmp_path / "demo" / "data" / "a.parquet")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["score", "--config", "../configs/local.yaml"]) == EXIT_OK, capsys.readouterr().err
    m = manifest_of(tmp_path / "demo" / "output")
    assert m["rows_out"] == 300 and m["inputs"] == [str(tmp_path / "demo" / "data" / "a.parquet")]
    assert not os.listdir(elsewhere)
    # a path that does not resolve: the key and the path it resolved to
    shutil.rmtree(tmp_path / "demo" / "model")
    assert main(["score", "--config", "../configs/local.yaml"]) == EXIT_USAGE
    (line,) = error_lines(capsys.readouterr().err)
    assert line == (
        f"beamscore: error: ../configs/local.yaml: model.path '../demo/model' resolves to "
        f"{tmp_path / 'demo' / 'model'}, which does not exist (a relative path in a config file is relative "
        "to the file's directory)"
    )
