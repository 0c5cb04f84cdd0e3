"""The shipped job configs: each loads, names only real Beam options, and dry-runs.

``configs/dataflow*.yaml`` and ``configs/flink.yaml`` point at cloud paths; here their model,
input and output are overridden with local ones, so the dry run resolves a real model and
real Parquet shards while the runner and pipeline options stay those of the file.
"""

from __future__ import annotations

import os

import pytest

from beamscore.cli import main
from beamscore.config import load_yaml
from beamscore.pipelines.runners import launch_problems, pipeline_options, unknown_options

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
LAUNCH_CONFIGS = {
    "dataflow.yaml": "DataflowRunner",
    "dataflow-gpu.yaml": "DataflowRunner",
    "flink.yaml": "FlinkRunner",
}


def dry_run(config: str, models, shards, out, *extra: str) -> int:
    paths, _ids, _x = shards
    return main(
        [
            "score",
            "--config",
            os.path.join(CONFIGS, config),
            "--model",
            models["two_sig"],
            "--input",
            os.path.dirname(paths[0]) + "/*.parquet",
            "--output",
            str(out),
            "--dry-run",
            *extra,
        ]
    )


@pytest.mark.parametrize("name", sorted(LAUNCH_CONFIGS))
def test_config_options_are_known_to_beam_and_complete(name):
    config = load_yaml(os.path.join(CONFIGS, name))
    options = pipeline_options([], config.pipeline_options)
    assert unknown_options(options) == []
    errors, warnings = launch_problems(options)
    assert errors == [] and warnings == []
    assert options.get_all_options()["runner"] == LAUNCH_CONFIGS[name]
    assert config.model.startswith(("gs://", "s3://")) and config.output.startswith(("gs://", "s3://"))


@pytest.mark.parametrize("name", sorted(LAUNCH_CONFIGS))
def test_dry_run_of_each_config_against_a_local_model(name, models, shards, tmp_path, capsys):
    out = tmp_path / "out"
    assert dry_run(name, models, shards, out) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert text.startswith("dry run: nothing was submitted")
    assert f"model:       {models['two_sig']}" in text
    assert "x            float32 (-1, 4)          <- column 'x'" in text
    assert "label        int64 (-1)" in text and "scores       float32 (-1, 3)" in text
    assert "2 parquet file(s), 700 rows, 2 work unit(s)" in text
    assert "-> part-00001-00000.parquet" in text
    assert f"runner:      {LAUNCH_CONFIGS[name]}" in text
    assert f"--runner={LAUNCH_CONFIGS[name]}" in text
    assert "workers cannot read it" in text  # local paths flagged for a remote runner
    assert "unknown pipeline option" not in text
    assert not out.exists()  # a dry run writes nothing


def test_dry_run_shows_gpu_and_flink_options(models, shards, tmp_path, capsys):
    assert dry_run("dataflow-gpu.yaml", models, shards, tmp_path / "a") == 0
    gpu = capsys.readouterr().out
    assert "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" in gpu
    assert "--sdk_container_image=" in gpu and "worker-gpu" in gpu
    doctor = gpu.split("\ndoctor (this launcher; the GPU workers run the worker image):\n", 1)[1]
    assert "  tensorflow:    2.21.0" in doctor and "  verdict:       CPU only" in doctor
    assert doctor.rstrip().endswith(
        "docker run --rm --gpus all --entrypoint beamscore "
        "us-central1-docker.pkg.dev/my-project/beamscore/worker-gpu:0.1.0 doctor --require-gpu"
    )
    assert dry_run("flink.yaml", models, shards, tmp_path / "b") == 0
    flink = capsys.readouterr().out
    assert "doctor" not in flink  # CPU workers: no GPU report
    assert "--flink_master=flink-jobmanager:8081" in flink
    assert "--environment_type=EXTERNAL" in flink and "--environment_config=localhost:50000" in flink


def test_dry_run_refuses_what_the_launch_would_refuse(models, shards, tmp_path, capsys):
    out = tmp_path / "out"
    # a Dataflow job without a project or a worker image
    code = dry_run("local.yaml", models, shards, out, "--runner=DataflowRunner", "--region=r", "--temp_location=/tmp")
    err = capsys.readouterr().err
    assert code == 2
    assert "DataflowRunner needs --project" in err and "--temp_location must be a gs:// URL" in err
    assert "--sdk_container_image" in err
    # a non-empty output without --overwrite
    out.mkdir()
    (out / "part-00000-00000.parquet").write_bytes(b"x")
    assert dry_run("dataflow.yaml", models, shards, out) == 2
    assert "is not empty" in capsys.readouterr().err
    # a file no beamscore job recorded, where this job would write: refused unless --force
    assert dry_run("dataflow.yaml", models, shards, out, "--overwrite") == 2
    assert "pass --force to replace them" in capsys.readouterr().err
    assert dry_run("dataflow.yaml", models, shards, out, "--overwrite", "--force") == 0
    assert (out / "part-00000-00000.parquet").exists()


def test_unknown_options_are_refused_with_the_nearest_name(models, shards, tmp_path, capsys):
    # a mistyped Beam flag on the command line: refused before TensorFlow or Beam is imported
    assert dry_run("local.yaml", models, shards, tmp_path / "out", "--direct_num_wokers=2") == 2
    err = capsys.readouterr().err
    assert err == (
        "beamscore: error: unknown option --direct_num_wokers (neither a beamscore flag nor a Beam pipeline "
        "option); did you mean --direct_num_workers?\n"
    )
    # the same in a config's pipeline_options
    config = tmp_path / "job.yaml"
    config.write_text("pipeline_options:\n  runner: DirectRunner\n  direct_num_wokers: 2\n")
    assert dry_run(str(config), models, shards, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "pipeline_options: 'direct_num_wokers' is neither a Beam pipeline option nor a beamscore key" in err
    assert err.rstrip().endswith("did you mean direct_num_workers?") and err.count("\n") == 1
    # the check after Beam's import (beamscore.score(), a module named by --import) says the same
    options = pipeline_options(["--direct_num_wokers=2", "--batch_size=3"], {})
    errors, _warnings = launch_problems(options)
    assert errors == [
        "unknown option --batch_size (neither a beamscore flag nor a Beam pipeline option); did you mean --batch-size?",
        "unknown option --direct_num_wokers (neither a beamscore flag nor a Beam pipeline option); "
        "did you mean --direct_num_workers?",
    ]
