"""``check_launch``: local paths are flagged only for runners whose workers are elsewhere."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beamscore.cli import main
from beamscore.pipelines.dry_run import workers_in_this_process


@pytest.mark.parametrize(
    ("flags", "here"),
    [
        (["--runner=PrismRunner"], True),  # Prism's default environment is LOOPBACK
        (["--runner=PrismRunner", "--environment_type=DOCKER"], False),
        (["--runner=PortableRunner", "--job_endpoint=localhost:1", "--environment_type=LOOPBACK"], True),
        (["--runner=PortableRunner", "--job_endpoint=localhost:1"], False),
        (["--runner=FlinkRunner"], False),
    ],
)
def test_workers_in_this_process(flags, here):
    assert workers_in_this_process(PipelineOptions(flags)) is here


def test_a_loopback_runner_is_not_warned_about_local_paths(models, shards, tmp_path, capsys):
    args = ["score", "--model", models["two_sig"], "--input", shards[0][0], "--output", str(tmp_path / "o")]
    assert main([*args, "--runner=PrismRunner", "--dry-run"]) == 0
    assert "workers cannot" not in capsys.readouterr().out
    assert main([*args, "--runner=PortableRunner", "--job_endpoint=localhost:1", "--dry-run"]) == 0
    assert "PortableRunner workers cannot read it" in capsys.readouterr().out
