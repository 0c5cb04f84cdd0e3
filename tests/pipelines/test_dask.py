"""DaskRunner on a real ``dask.distributed`` cluster: a ``dask scheduler`` and two ``dask worker``
processes (one thread each) on 127.0.0.1, started by the tests (``tests/dask_cluster.py``), once
for this module (the tests that kill a worker or the launcher start their own:
``test_dask_faults.py``).

* ``--runner=DaskRunner`` by its short name with ``--dask_*`` options parsed, not dropped;
* ``--dry-run`` asks the cluster: scheduler reachable, workers present, beamscore importable;
* a job's outputs equal the in-process run's, the manifest accounts for every row, the units
  spread over both workers and each worker process loads the model exactly once (read from
  the workers' own ``load_count`` with ``Client.run``);
* progress lines and ``--json``'s metrics of a job on the cluster;
* a user's own pipeline with ``RunSignature(...).with_exception_handling()`` on DaskRunner."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call
from dask_cluster import dask_cluster
from dask_jobs import assert_slow_result, slow_job
from runner_jobs import assert_same_result, beamscore_cli, job_args, run_in_process, worker_env
from s3_server import s3_env, s3_server
from scores import assert_scores_close

import beamscore
from beamscore.cli import main
from beamscore.model.loader import load_count
from beamscore.pipelines.runners import (
    DASK_RUNNER,
    describe_runner,
    launch_problems,
    make_runner,
    pipeline_options,
    runner_name,
    spread_units,
    unknown_options,
)

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server: its endpoint URL (the workers get its variables when they start)."""
    with s3_server() as url:
        yield url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    root = tmp_path_factory.mktemp("dask")
    with dask_cluster(root, workers=2, env={**s3_env(s3), "BEAMSCORE_CACHE": str(root / "cache")}) as running:
        yield running


@pytest.fixture(scope="module")
def in_process(models, shards, tmp_path_factory):
    return run_in_process(models, shards, tmp_path_factory)


def test_dask_runner_by_short_name_with_its_options_parsed():
    from apache_beam.runners.dask.dask_runner import DaskRunner

    for runner in ("DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"):
        options = pipeline_options([f"--runner={runner}", "--dask_client_address=tcp://10.0.0.1:8786"], {})
        assert runner_name(options) == DASK_RUNNER
        assert unknown_options(options) == []
        assert isinstance(make_runner(options), DaskRunner)
        assert options.get_all_options()["address"] == "tcp://10.0.0.1:8786"
    # from a config: one partition per work unit unless the user chose
    options = pipeline_options([], {"runner": "DaskRunner", "dask_scheduler_file": "/shared/s.json"})
    assert spread_units(options, 12).get_all_options()["npartitions"] == 12
    assert describe_runner(options) == "DaskRunner: scheduler file /shared/s.json, 12 partitions"
    chosen = pipeline_options(["--runner=DaskRunner", "--dask_partition_size=4"], {})
    assert spread_units(chosen, 12).get_all_options()["npartitions"] is None
    assert launch_problems(chosen)[1] == [
        "no --dask_client_address or --dask_scheduler_file: DaskRunner starts a throwaway local Dask cluster "
        "on this machine"
    ]
    # other runners are untouched
    assert spread_units(pipeline_options([], {}), 12).get_all_options().get("npartitions") is None


def test_dask_config_names_only_known_options():
    from beamscore.config import load_yaml

    config = load_yaml(os.path.join(CONFIGS, "dask.yaml"))
    options = pipeline_options([], config.pipeline_options)
    assert runner_name(options) == DASK_RUNNER and unknown_options(options) == []
    assert launch_problems(options) == ([], [])
    assert options.get_all_options()["address"] == "tcp://dask-scheduler:8786"
    assert config.model.startswith("s3://") and config.output.startswith("s3://")


def test_dask_option_mistakes_are_one_line(models, shards, tmp_path, capsys, monkeypatch):
    paths, _ids, _x = shards
    common = ["score", "--model", models["two_sig"], "--input", paths[0], "--output", str(tmp_path / "o"), "--dry-run"]
    both = ["--runner=DaskRunner", "--dask_npartitions=2", "--dask_partition_size=3"]
    assert main([*common, *both]) == 2
    err = capsys.readouterr().err
    assert err == "beamscore: error: --dask_npartitions and --dask_partition_size exclude each other; give one\n"
    monkeypatch.setitem(sys.modules, "apache_beam.runners.dask.dask_runner", None)  # as if dask were not installed
    assert main([*common, "--runner=DaskRunner"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("beamscore: error: DaskRunner needs dask and distributed") and err.count("\n") == 1
    assert "pip install 'beamscore[dask]'" in err


@pytest.mark.distributed
def test_dry_run_asks_the_cluster(models, shards, cluster, tmp_path, capsys):
    paths, _ids, _x = shards
    common = ["--model", models["two_sig"], "--input", os.path.dirname(paths[0]) + "/*.parquet", "--dry-run"]
    config = ["--config", os.path.join(CONFIGS, "dask.yaml")]
    code = main(
        ["score", *config, *common, "--output", str(tmp_path / "out"), f"--dask_client_address={cluster.address}"]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert f"runner:      DaskRunner: scheduler {cluster.address}, one partition per work unit" in text
    assert "unknown pipeline option" not in text and "warnings:" not in text  # loopback workers read local paths
    assert f"  --dask_client_address={cluster.address}\n  --dask_connection_timeout=10\n  --runner=DaskRunner" in text
    assert not (tmp_path / "out").exists()

    # nothing listens: one line, in about the connection timeout
    start = time.monotonic()
    closed = "tcp://127.0.0.1:9"
    flags = ["--runner=DaskRunner", f"--dask_client_address={closed}", "--dask_connection_timeout=2"]
    assert main(["score", *common, "--output", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 15
    assert (
        err.startswith(f"beamscore: error: cannot reach the Dask scheduler at {closed} within 2s")
        and err.count("\n") == 1
    ), err

    # a scheduler without workers, and workers whose beamscore cannot be imported
    broken = tmp_path / "broken" / "beamscore"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this install of beamscore is broken')\n")
    with dask_cluster(tmp_path / "c0", workers=0) as empty:
        assert main(["score", *common, "--output", str(tmp_path / "o"), "--runner=DaskRunner",
                     f"--dask_client_address={empty.address}"]) == 2  # fmt: skip
        assert f"the Dask scheduler at {empty.address} has no workers" in capsys.readouterr().err
    with dask_cluster(tmp_path / "c1", workers=1, python_path=[str(broken.parent)]) as bad:
        assert main(["score", *common, "--output", str(tmp_path / "o"), "--runner=DaskRunner",
                     f"--dask_client_address={bad.address}"]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert "cannot import beamscore: ImportError: this install of beamscore is broken" in err, err
        assert err.startswith("beamscore: error: Dask worker tcp://127.0.0.1:") and err.count("\n") == 1


@pytest.mark.distributed
def test_dask_job_equals_in_process_and_loads_once_per_worker(models, shards, in_process, cluster, tmp_path, capsys):
    """Launched from this process (``main``): the job from and to S3 below is the fresh
    ``python -m beamscore`` launcher, as a user runs it."""
    before = cluster.run(load_count)
    out = tmp_path / "out"
    code = main(["score", *job_args(models, shards, out), "--runner=DaskRunner",
                 f"--dask_client_address={cluster.address}"])  # fmt: skip
    done = capsys.readouterr()
    assert code == 0, done.err[-3000:] + cluster.log_tail()
    assert "on DaskRunner" in done.out and "rows in 700, out 700, failed 0" in done.out
    assert_same_result(out, in_process, models, shards)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"]
    loads = {worker: n - before[worker] for worker, n in cluster.run(load_count).items()}
    # both workers ran units (one partition per unit), and each loaded the model once for all of them
    assert sorted(loads.values()) == [1, 1], loads


@pytest.mark.distributed
def test_dask_job_from_and_to_s3(models, shards, in_process, cluster, s3, tmp_path):
    import s3fs

    paths, _ids, _x = shards
    fs = s3fs.S3FileSystem(endpoint_url=s3, key="testing", secret="testing")
    fs.mkdir("jobs")
    fs.put(models["two_sig"], "jobs/model", recursive=True)
    fs.put(paths, "jobs/data/")
    args = ["--model", "s3://jobs/model", "--input", "s3://jobs/data/*.parquet", "--output", "s3://jobs/out"]
    args += ["--keep", "id", "--rows-per-unit", "128", "--batch-size", "50"]
    done = beamscore_cli("score", *args, "--runner=DaskRunner", f"--dask_client_address={cluster.address}",
                         env=s3_env(s3))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + cluster.log_tail()
    assert "rows in 700, out 700, failed 0" in done.stdout
    out = tmp_path / "out"
    fs.get("jobs/out", str(out), recursive=True)
    assert_same_result(out, in_process, models, shards)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert all(f.startswith("s3://jobs/out/part-") for f in manifest["outputs"]), manifest["outputs"]


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """The slow job (``dask_jobs.slow_job``): ``(args, ids, expected)``."""
    return slow_job(tmp_path_factory.mktemp("slow"))


@pytest.mark.distributed
def test_progress_lines_summary_and_metrics_on_dask(slow, cluster, tmp_path):
    """Off a terminal, a Dask job prints a timestamped progress line every --progress-every
    seconds (its workers on this machine append each batch's rows to the launcher's file), and
    --json's summary carries the manifest's metrics: one model load per worker process (no
    other test runs the slow model on this cluster)."""
    args, ids, expected = slow
    out = tmp_path / "out"
    # an interval well under the job on any CPU
    flags = ["--runner=DaskRunner", f"--dask_client_address={cluster.address}", "--progress-every", "0.2"]
    run = subprocess.run(
        [sys.executable, "-m", "beamscore", "score", *args, "--output", str(out), *flags, "--json"],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:] + cluster.log_tail()
    assert_slow_result(out, ids, expected)
    progress = [line for line in run.stderr.splitlines() if re.match(r"^\S+Z progress: [\d,]+ / 700 rows", line)]
    assert len(progress) >= 2, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert (summary["status"], summary["exit_code"], summary["runner"]) == ("succeeded", 0, "DaskRunner")
    metrics = summary["metrics"]
    assert metrics["batches"] == 140 and 1 <= metrics["workers"] <= 2
    assert metrics["model_loads"] == metrics["workers"] and metrics["model_loads_per_worker"] == 1.0


# A user's own Beam pipeline on DaskRunner: ``RunSignature(...).with_exception_handling()``
# gives the scored rows on its main output and the bad ones on the dead-letter output. Beam
# 2.77's DaskRunner merges a multi-output ParDo's tagged outputs, which sent every scored
# element to the dead letters and left the main output empty; the transform now splits one
# output of tagged pairs. (The runner also computes only the pipeline's last step, so the two
# branches end in one Flatten.)


def _inputs(directory) -> tuple[list[str], np.ndarray]:
    """Two Parquet files of 6 rows; rows 2 and 9 (file 0 row 2, file 1 row 3) are short."""
    x = np.random.default_rng(4).normal(size=(12, 4)).astype(np.float32)
    files = []
    for i in range(2):
        lists = [row.tolist() for row in x[6 * i : 6 * i + 6]]
        lists[2 if i == 0 else 3] = lists[0][:3]
        path = os.path.join(directory, f"part-{i}.parquet")
        table = pa.table({"id": np.arange(6 * i, 6 * i + 6), "x": pa.array(lists, pa.list_(pa.float32()))})
        pq.write_table(table, path)
        files.append(path)
    return files, x


@pytest.mark.distributed
def test_with_exception_handling_on_dask_keeps_scored_and_dead_letters_apart(models, cluster, tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner

    files, x = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    score = beamscore.RunSignature(models["two_sig"], keep=["id"], outputs=["scores"]).with_exception_handling()
    options = PipelineOptions([f"--dask_client_address={cluster.address}"])
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
        scored, dead = (
            p
            | beam.Create(files)
            | "Read" >> beam.Map(lambda path: (os.path.basename(path), pq.read_table(path)))
            | score
        )
        written = scored | "Write" >> beam.MapTuple(
            lambda name, table, d=str(out): pq.write_table(table, f"{d}/{name}")
        )
        errors = dead | "WriteDead" >> beam.MapTuple(
            lambda name, table, d=str(out): pq.write_table(table, f"{d}/{name}.errors")
        )
        # DaskRunner computes only the pipeline's last step: one Flatten joins both branches
        _ = (written, errors) | beam.Flatten()
    assert glob.glob(str(out / "*.parquet")), (os.listdir(out), cluster.log_tail())
    written = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(str(out / "*.parquet")))]).sort_by("id")
    errors = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(str(out / "*.errors")))])
    good = [i for i in range(12) if i not in (2, 9)]
    assert written["id"].to_pylist() == good, cluster.log_tail()
    assert sorted(errors["row"].to_pylist()) == [2, 3] and set(errors["stage"].to_pylist()) == {"validate"}
    assert_scores_close(written["scores"], direct_call(models["two_sig"], "serving_default", x=x[good])["scores"])
