"""The trial call of a job whose workers are other processes runs in a child process
(issue 33, item 8): TensorFlow's CPU allocator keeps a dropped model's memory for the
process's lifetime, so a launcher that loaded the model for the trial stayed one model
larger while its workers scored. The child's refusal is the launcher's, word for word."""

from __future__ import annotations

import pytest
import shape_models
from builders import write_parquet_shards

from beamscore.config import ScoreConfig
from beamscore.errors import BeamscoreError
from beamscore.model import loader
from beamscore.pipelines.score import prepare

MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

#: a custom-op module (``--import``) that crashes the process it is imported in when that
#: process is the trial call's (``python -c ... trial_apart``), as a model that crashes
#: TensorFlow would; the launcher imports it too, unharmed
#: aborts in the trial's child process only: argv ``-c BOOT LEVEL``, its launcher (the test
#: process) its parent. Not on ``sys.argv == ["-c"]`` alone: a pytest-xdist worker runs as
#: ``python -c`` too, and aborted itself (the launcher imports the module as well)
CRASHING = """
import os, sys
child = len(sys.argv) == 3 and sys.argv[0] == "-c" and os.environ.get("BEAMSCORE_LAUNCHER_PID") == str(os.getppid())
if child and "beamscore.pipelines.trial_apart" in sys.modules:
    os.abort()
"""


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    root = tmp_path_factory.mktemp("trial_apart")
    paths = shape_models.build(str(root / "models"))
    files, _, _ = write_parquet_shards(str(root / "data"), rows=20, shards=1)
    return paths, files[0]


@pytest.mark.slow
def test_a_multi_process_job_is_refused_by_the_child_in_the_launchers_words(trial, tmp_path):
    paths, data = trial
    config = ScoreConfig(model=paths["broken"], inputs=[data], output=str(tmp_path / "out"))
    loads = loader.load_count()
    with pytest.raises(BeamscoreError) as apart:
        prepare(config, MULTI)
    assert loader.load_count() == loads  # the launcher loaded nothing: the child did
    with pytest.raises(BeamscoreError) as here:
        prepare(config, [])
    assert loader.load_count() == loads + 1
    assert str(apart.value) == str(here.value)
    assert "cannot run here" in str(apart.value) and "this model cannot run here" in str(apart.value)


@pytest.mark.slow
def test_a_trial_process_that_crashes_refuses_the_job_in_one_line(trial, tmp_path, monkeypatch):
    paths, data = trial
    (tmp_path / "crashing_ops.py").write_text(CRASHING)
    monkeypatch.syspath_prepend(str(tmp_path))  # found by the child through the launcher's sys.path
    config = ScoreConfig(model=paths["even"], inputs=[data], output=str(tmp_path / "out"), imports=["crashing_ops"])
    with pytest.raises(BeamscoreError, match=r"cannot run here: its process ended with signal SIGABRT") as refused:
        prepare(config, MULTI)
    assert "\n" not in str(refused.value) and "--no-trial skips this check" in str(refused.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "from_config", "copies", "apart"),
    [
        ([], None, None, False),
        (["--direct_num_workers=2"], None, None, False),
        (MULTI, None, None, True),
        (["--direct_running_mode", "multi_processing"], None, None, True),
        (["--direct_running_mode=multi_threading"], None, None, False),
        ([], {"direct_running_mode": "multi_processing"}, None, True),
        ([], None, 2, True),
        (["--runner=DataflowRunner", "--project=p"], None, None, True),
        (["--runner", "dask"], None, None, True),
        (["--runner=direct"], None, None, False),
        (["--runner", "FnApiRunner"], None, None, False),
        ([], {"runner": "FlinkRunner"}, None, True),
        (["--runner_x=DataflowRunner"], None, None, False),  # not Beam's --runner: planning decides
    ],
)
def test_the_flags_alone_say_when_the_trial_runs_apart(flags, from_config, copies, apart):
    from beamscore.pipelines.trial_apart import apart_named

    assert apart_named(flags, from_config, copies) is apart


@pytest.mark.parametrize("multi", [True, False], ids=["multi-process", "in-process"])
def test_a_multi_process_jobs_trial_process_starts_before_the_launcher_imports_tensorflow(
    trial, tmp_path, monkeypatch, multi
):
    """Started at planning, the trial's process imported TensorFlow while the launcher waited
    (some 3 s of a multi-process job's start). Started before the launcher's own imports, on
    the flags' word, the two imports overlap; planning uses that process (one is started, and
    it answers and exits 0). An in-process job starts none."""
    from beamscore import cli
    from beamscore.cli import main
    from beamscore.pipelines import trial_apart

    events: list[str] = []
    children: list = []
    start_child, quiet = trial_apart.start_child, cli._quiet_libraries

    def recorded_start():
        events.append("trial process")
        children.append(start_child())
        return children[-1]

    def recorded_quiet(args):
        events.append("imports")
        quiet(args)

    monkeypatch.setattr(trial_apart, "start_child", recorded_start)
    monkeypatch.setattr(cli, "_quiet_libraries", recorded_quiet)
    paths, data = trial
    args = ["score", "--model", paths["even"], "--input", data, "--output", str(tmp_path / "out"), "--dry-run"]
    assert main([*args, *(MULTI if multi else [])]) == 0
    if multi:
        assert events == ["trial process", "imports"]
        assert len(children) == 1 and children[0].proc.returncode == 0  # it answered: planning took it
    else:
        assert events == ["imports"] and not children
