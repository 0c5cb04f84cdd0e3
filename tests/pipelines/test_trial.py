"""The trial call (issue 33, item 2): a few rows of the first input through the signature on
the launcher; a model that cannot run here is refused in one line (exit 2) before anything
is written; ``--no-trial`` / ``trial=False`` skips it."""

from __future__ import annotations

import json

import pytest
import shape_models
from builders import write_parquet_shards
from cli_runs import run_cli
from conftest import direct_call, read_output
from scores import assert_scores_close

import beamscore
from beamscore.errors import BeamscoreError, JobFailed


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    root = tmp_path_factory.mktemp("trial")
    paths = shape_models.build(str(root / "models"))
    files, _, x = write_parquet_shards(str(root / "data"), rows=100, shards=1)
    return paths, files[0], x


def test_a_model_that_cannot_run_here_is_refused_before_anything_is_written(trial, tmp_path):
    paths, data, _ = trial
    out = tmp_path / "out"
    run = run_cli("score", "--model", paths["broken"], "--input", data, "--output", str(out))
    assert run.code == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    line = run.stderr.strip()
    assert "trial call of 'serving_default'" in line and "cannot run here" in line
    assert "this model cannot run here" in line  # the model's own error, without --debug
    assert "--no-trial skips this check" in line
    assert not out.exists()


def test_the_trial_call_is_timed_and_a_good_model_runs_as_before(trial, tmp_path):
    paths, data, x = trial
    out = tmp_path / "out"
    run = run_cli("score", "--model", paths["even"], "--input", data, "--output", str(out), "--batch-size", "32")
    assert run.code == 0, run.stderr
    assert json.loads((out / "_manifest.json").read_text())["rows_failed"] == 0
    assert_scores_close(read_output(str(out))["y"].to_numpy(), direct_call(paths["even"], "serving_default", x=x)["y"])


def test_the_trial_is_a_timed_planning_step_that_no_trial_skips(trial, tmp_path):
    from beamscore.config import ScoreConfig
    from beamscore.model.loader import ModelSpec, discard_preloaded
    from beamscore.pipelines.plan import plan_job

    paths, data, _ = trial
    config = ScoreConfig(model=paths["even"], inputs=[data], output=str(tmp_path / "out"))
    plan = plan_job(config)
    discard_preloaded(plan.spec)
    assert list(plan.planning_s)[-1] == "trial"
    assert set(plan.trial_s) == {"read", "load", "call"}  # where the trial's time went
    assert all(v > 0 for v in plan.trial_s.values()) and sum(plan.trial_s.values()) <= plan.planning_s["trial"]
    skipped = plan_job(ScoreConfig(model=paths["broken"], inputs=[data], output=str(tmp_path / "o"), trial=False))
    assert "trial" not in skipped.planning_s or skipped.planning_s["trial"] < 0.05
    assert isinstance(skipped.spec, ModelSpec)


def test_score_takes_trial_false(trial, tmp_path):
    paths, data, _ = trial
    with pytest.raises(BeamscoreError, match="trial=False skips this check") as refused:
        beamscore.score(paths["broken"], data, str(tmp_path / "a"))
    assert not isinstance(refused.value, JobFailed)
    with pytest.raises(JobFailed, match="the model failed on all 100 rows"):
        beamscore.score(paths["broken"], data, str(tmp_path / "b"), trial=False)
