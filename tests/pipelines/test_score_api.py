"""beamscore.score(): the CLI's job as one Python call, returning the manifest."""

from __future__ import annotations

import logging
import os
import pathlib
import signal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close

import beamscore


def test_too_many_failed_rows_raise_job_failed_with_the_written_manifest(models, tmp_path):
    x = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    lists = [row.tolist() for row in x]
    lists[4] = lists[4][:3]  # a row of the wrong length: a dead letter
    column = pa.array(lists, type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"id": np.arange(20), "x": column}), tmp_path / "in.parquet")
    out = str(tmp_path / "out")
    with pytest.raises(beamscore.RowsFailed, match="1 of 20 rows failed") as info:
        beamscore.score(model=models["two_sig"], inputs=[str(tmp_path / "in.parquet")], output=out, keep=["id"])
    assert "see max_failed_rows" in str(info.value) and "--max-failed-rows" not in str(info.value)
    assert isinstance(info.value, beamscore.JobFailed)  # code that catches JobFailed still sees it
    m = info.value.manifest
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (20, 19, 1)
    assert (m["status"], m["status_reason"]) == ("failed", str(info.value))
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    got = read_output(out)
    keep = np.delete(np.arange(20), 4)
    assert got["id"].to_pylist() == keep.tolist()
    expected = direct_call(models["two_sig"], "serving_default", x=x[keep])["scores"]
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), expected)
    # the same job with a limit passes and returns the manifest
    again = beamscore.score(
        model=models["two_sig"], inputs=str(tmp_path / "in.parquet"), output=out, overwrite=True, max_failed_rows=1
    )
    assert again["rows_failed"] == 1 and again["model"]["signature"] == "serving_default"
    assert (again["status"], again["status_reason"]) == ("succeeded", None)
    assert (tmp_path / "out" / "_SUCCESS").read_bytes() == b""


def test_an_unknown_option_is_refused_with_the_valid_ones(models, tmp_path):
    out = str(tmp_path / "o")
    with pytest.raises(
        TypeError,
        match=r"score\(\) got unknown keyword argument\(s\) batchsize \(did you mean batch_size\?\); it takes",
    ):
        beamscore.score(model=models["two_sig"], inputs=["x"], output=out, batchsize=3)  # type: ignore[call-arg]
    # Beam's usual name for a list of flags: pointed at beam_args, which the list names too
    with pytest.raises(beamscore.BeamscoreError) as refused:
        beamscore.score(models["two_sig"], "x", out, pipeline_args=["--runner=DirectRunner"])  # type: ignore[call-arg]
    message = str(refused.value)
    assert "pipeline_args (Beam flags go in beam_args=[...]" in message and ", beam_args, " in message
    assert isinstance(refused.value, TypeError)
    assert not os.path.exists(out)


def test_every_score_config_field_is_a_keyword_of_score():
    """score() declares each job setting (mypy and pyright check the calls); a field added to
    ScoreConfig without its keyword fails here."""
    import dataclasses
    import inspect

    from beamscore.config import ScoreConfig

    fields = {f.name for f in dataclasses.fields(ScoreConfig)} - {"origins"}
    keywords = set(inspect.signature(beamscore.score).parameters) - {"config", "beam_args", "progress"}
    assert fields == keywords, (sorted(fields - keywords), sorted(keywords - fields))


def test_paths_may_be_path_like(models, tmp_path):
    """model, inputs, output and config as pathlib.Path (they failed inside fs.py)."""
    (tmp_path / "job.yaml").write_text("output:\n  overwrite: true\n")
    manifest = beamscore.score(
        model=pathlib.Path(models["two_sig"]),
        inputs=pathlib.Path(_input(tmp_path)),
        output=tmp_path / "out",
        config=tmp_path / "job.yaml",
    )
    assert manifest["rows_out"] == 8
    assert beamscore.inspect_model(pathlib.Path(models["two_sig"])).path == models["two_sig"]


def _input(tmp_path) -> str:
    x = np.random.default_rng(2).normal(size=(8, 4)).astype(np.float32)
    pq.write_table(
        pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)}), tmp_path / "in.parquet"
    )
    return str(tmp_path / "in.parquet")


def test_score_leaves_the_callers_process_as_it_found_it(models, tmp_path, monkeypatch):
    """score() left BEAMSCORE_LAUNCHER_PID in the caller's os.environ; signal handlers, logging
    handlers and the working directory must come back too, however the job ends."""
    path = _input(tmp_path)
    monkeypatch.delenv("BEAMSCORE_LAUNCHER_PID", raising=False)  # an in-process CLI test before may have set it

    def mine(signum, frame):  # a notebook's or scheduler's own handler
        return None

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        before = (dict(os.environ), signal.getsignal(signal.SIGINT), list(logging.getLogger().handlers), os.getcwd())
        beamscore.score(model=models["two_sig"], inputs=path, output=str(tmp_path / "out"))
        with pytest.raises(beamscore.BeamscoreError, match="pass overwrite=True to replace it") as info:
            beamscore.score(model=models["two_sig"], inputs=path, output=str(tmp_path / "out"))
        assert "--overwrite" not in str(info.value)
        after = (dict(os.environ), signal.getsignal(signal.SIGINT), list(logging.getLogger().handlers), os.getcwd())
        assert "BEAMSCORE_LAUNCHER_PID" not in os.environ
        assert after == before
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
