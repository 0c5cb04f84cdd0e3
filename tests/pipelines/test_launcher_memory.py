"""The launcher does not hold the weights while local worker processes score (issue 33,
item 8): for worker processes the trial call loads the model in a child process
(TensorFlow keeps a dropped model's memory in the process), so the launcher never loads it;
an in-process runner reuses the launcher's trial copy instead of loading the model again."""

from __future__ import annotations

import gc
import weakref

import pytest
from builders import write_parquet_shards

from beamscore.config import ScoreConfig
from beamscore.model import loader
from beamscore.pipelines import score as score_module


@pytest.fixture
def job(models, tmp_path):
    files, _, _ = write_parquet_shards(str(tmp_path / "data"), rows=40, shards=1)
    return ScoreConfig(model=models["two_sig"], inputs=files, output=str(tmp_path / "out"))


def _held_while_building(monkeypatch, config, beam_args):
    """Plan the job, then run it; return whether the trial's model was alive when the
    pipeline was built (after the launcher decided what to keep) and the load count."""
    plan, options, _ = score_module.prepare(config, beam_args)
    trial = weakref.ref(loader._PRELOADED[plan.spec.key].obj)
    seen = []
    build = score_module.build_pipeline

    def watching(*args, **kwargs):
        gc.collect()
        seen.append(trial() is not None)
        return build(*args, **kwargs)

    monkeypatch.setattr(score_module, "build_pipeline", watching)
    loads = loader.load_count()
    result = score_module.run_plan(plan, options, progress=False)
    assert result.manifest["rows_out"] == 40
    return seen, loader.load_count() - loads


@pytest.mark.slow
def test_worker_processes_score_while_the_launcher_never_loaded_the_model(job):
    multi = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    loads = loader.load_count()
    plan, options, _ = score_module.prepare(job, multi)
    assert loader.load_count() == loads and not loader.is_preloaded(plan.spec)  # the trial ran elsewhere
    assert set(plan.trial_s) == {"read", "load", "call", "process"}  # its parts, timed in the child
    result = score_module.run_plan(plan, options, progress=False)
    assert result.manifest["rows_out"] == 40
    assert loader.load_count() == loads


def test_an_in_process_worker_takes_the_trial_calls_copy(monkeypatch, job):
    seen, loads = _held_while_building(monkeypatch, job, [])
    assert seen == [True] and loads == 0  # no second load in this process
