"""Observability off a terminal (issue 33, item 7): a launch line, a first progress line
within seconds, batch latency percentiles and time per stage in the manifest, the ``--json``
summary and the text summary, receipts with start and end times, and a resumed run's own
rows told apart from the reused ones."""

from __future__ import annotations

import io
import json
import time

import pytest
from builders import write_parquet_shards
from cli_runs import run_cli

from beamscore import progress


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("observe")
    paths, _, _ = write_parquet_shards(str(root), rows=400, shards=2, row_group_size=50)
    return paths


def test_the_first_progress_line_comes_within_seconds_then_every_progress_every(monkeypatch):
    monkeypatch.setattr(progress, "FIRST_LINE_S", 0.2)
    stream = io.StringIO()
    launch = {"model": "m [serving_default]", "rows_planned": 10, "output": "out", "date": "2026-12-07"}
    with progress.Progress({"part-00000-00000": 10}, set, stream, every=60.0, launch=launch):
        time.sleep(0.6)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines  # the launch line, then one progress line long before 60 s
    assert "launch: model m [serving_default], rows_planned 10, output out, date 2026-12-07" in lines[0]
    assert lines[0][:4].isdigit() and lines[0][10] == "T"  # timestamped
    assert "progress: 0 / 10 rows" in lines[1]


def test_latency_percentiles_stage_times_and_receipt_times(models, data, tmp_path):
    out = tmp_path / "out"
    argv = ["score", "--model", models["two_sig"], "--input", data[0], "--input", data[1], "--output", str(out)]
    argv += ["--rows-per-unit", "100"]
    run = run_cli(*argv, "--batch-size", "25", "--date", "2026-12-01", "--json")
    assert run.code == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    m = json.loads((out / "_manifest.json").read_text())
    metrics = m["metrics"]
    assert metrics["batches"] == 16
    p50, p95, p99 = (metrics[f"batch_latency_ms_p{q}"] for q in (50, 95, 99))
    assert 0 < p50 <= p95 <= p99
    stages = metrics["stage_seconds"]
    assert list(stages) == ["read", "decode", "model", "encode", "write"]  # the five, in order
    assert all(v > 0 for v in stages.values()), stages
    assert summary["metrics"] == metrics
    assert summary["date"] == "2026-12-01" and summary["started"] <= summary["finished"] == m["finished"]
    receipts = [json.loads(p.read_text()) for p in (out / "_units").glob("part-*.json")]
    receipt = receipts[0]
    assert receipt["started"] <= receipt["finished"] and receipt["finished"].endswith("Z")
    assert len(receipt["batch_ms"]) == receipt["batches"] == 4
    assert 0 < receipt["decode_seconds"] + receipt["encode_seconds"] < receipt["batch_seconds"]
    scoring = sum(r["batch_seconds"] for r in receipts)  # decode and encode are parts of the scoring step
    assert stages["decode"] + stages["model"] + stages["encode"] == pytest.approx(scoring, abs=0.003)
    launch = [line for line in run.stderr.splitlines() if " launch: " in line]
    assert len(launch) == 1 and "rows_planned 400" in launch[0] and "date 2026-12-01" in launch[0]
    report = run_cli("report", str(out))
    assert report.code == 0, report.stderr
    assert f"batches:     p50 {p50:,.1f} ms, p95 {p95:,.1f} ms, p99 {p99:,.1f} ms" in report.stdout
    assert "stages:      read " in report.stdout and ", decode " in report.stdout and ", encode " in report.stdout
    page = tmp_path / "r.html"
    assert run_cli("report", str(out), "--html", str(page)).code == 0
    assert 'data-fact="batch latency"' in page.read_text() and 'data-fact="time per stage"' in page.read_text()


def test_the_text_summary_has_percentiles_stages_dates_and_a_resumed_runs_own_rows(models, data, tmp_path):
    out = tmp_path / "out"
    argv = ["score", "--model", models["two_sig"], "--input", data[0], "--input", data[1], "--output", str(out)]
    argv += ["--rows-per-unit", "100"]
    assert run_cli(*argv, "--date", "2026-12-01").code == 0
    (out / "_manifest.json").unlink()
    (out / "_SUCCESS").unlink()
    (out / "_units" / "part-00001-00001.json").unlink()
    run = run_cli(*argv, "--date", "2026-12-01", "--resume")
    assert run.code == 0, run.stderr
    text = run.stdout
    assert "p50/p95/p99 " in text and "time per stage (all workers): read " in text
    assert ", decode " in text and ", encode " in text
    assert "run: date 2026-12-01, started 20" in text
    assert "this run: 100 rows out; reused from an earlier run: 300 rows in 3 units" in text


def test_stage_seconds_of_receipts_without_decode_and_encode_count_the_scoring_step_as_model():
    from beamscore.transforms.batch import UnitResult
    from beamscore.transforms.manifest import stage_seconds

    old = UnitResult.from_json(
        {
            "unit": "u",
            "input": "f",
            "rows_in": 1,
            "rows_out": 1,
            "rows_failed": 0,
            "batch_seconds": 2.0,
            "read_seconds": 1.0,
            "write_seconds": 0.5,
        }
    )
    new = UnitResult.from_json({**old.to_json(), "decode_seconds": 0.25, "encode_seconds": 0.5})
    assert stage_seconds([old]) == {"read": 1.0, "decode": 0.0, "model": 2.0, "encode": 0.0, "write": 0.5}
    assert stage_seconds([old, new]) == {"read": 2.0, "decode": 0.25, "model": 3.25, "encode": 0.5, "write": 1.0}
