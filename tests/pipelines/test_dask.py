"""DaskRunner on a real ``dask.distributed`` cluster: a ``dask scheduler`` and two ``dask worker``
processes (one thread each) on 127.0.0.1, started by the tests (``tests/dask_cluster.py``).

* ``--runner=DaskRunner`` by its short name with ``--dask_*`` options parsed, not dropped;
* ``--dry-run`` asks the cluster: scheduler reachable, workers present, beamscore importable;
* a job's outputs equal the in-process run's, the manifest accounts for every row, the units
  spread over both workers and each worker process loads the model exactly once (read from
  the workers' own ``load_count`` with ``Client.run``);
* a worker killed part-way: Dask reruns its units on the other worker (or the job fails with
  one line and ``--resume`` finishes it); either way the result equals the reference.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import read_output
from dask_cluster import dask_cluster
from runner_jobs import assert_same_result, beamscore_cli, job_args, run_in_process, worker_env
from s3_server import s3_env, s3_server
from scores import assert_scores_close

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
def test_dask_job_equals_in_process_and_loads_once_per_worker(models, shards, in_process, cluster, tmp_path):
    before = cluster.run(load_count)
    out = tmp_path / "out"
    done = beamscore_cli("score", *job_args(models, shards, out), "--runner=DaskRunner",
                         f"--dask_client_address={cluster.address}")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + cluster.log_tail()
    assert "on DaskRunner" in done.stdout and "rows in 700, out 700, failed 0" in done.stdout
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
def slow_job(tmp_path_factory):
    """The slow model over 700 rows in 28 units of 25 rows, batches of 5: a few seconds of work."""
    import builders
    import job_models

    root = tmp_path_factory.mktemp("slow")
    model = job_models.build_all(str(root / "models"))["slow"]
    _paths, ids, x = builders.write_parquet_shards(str(root / "data"), rows=700, shards=2, row_group_size=25)
    args = ["--model", model, "--input", str(root / "data") + "/*.parquet", "--keep", "id"]
    args += ["--rows-per-unit", "25", "--batch-size", "5"]
    return args, ids, job_models.reference(model, x)


def assert_slow_result(out, ids, expected) -> None:
    table = read_output(str(out))
    assert table["id"].to_pylist() == ids.tolist()
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), expected["y"])
    assert_scores_close(table["s"].to_numpy(), expected["s"])
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"] == len(ids)
    assert manifest["rows_failed"] == 0 and manifest["units"] == 28 and len(manifest["outputs"]) == 28


def start_slow_job(args: list[str], out, cluster) -> tuple[subprocess.Popen, object]:
    """Start ``beamscore score ARGS`` on the cluster; return it once 2 units have receipts."""
    job = subprocess.Popen(
        [sys.executable, "-m", "beamscore", "score", *args],
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    receipts = out / "_units"
    deadline = time.monotonic() + 300  # generous: a loaded machine starts the workers slowly
    while not (receipts.exists() and len(list(receipts.glob("part-*.json"))) >= 2):
        assert job.poll() is None, job.communicate()[1][-3000:]
        assert time.monotonic() < deadline, cluster.log_tail()
        time.sleep(0.05)
    return job, receipts


@pytest.mark.distributed
def test_a_killed_worker_loses_nothing(slow_job, tmp_path):
    args, ids, expected = slow_job
    out = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster", workers=2) as cluster:
        flags = ["--runner=DaskRunner", f"--dask_client_address={cluster.address}"]
        job, receipts = start_slow_job([*args, "--output", str(out), *flags], out, cluster)
        cluster.kill_worker(0)
        done_at_kill = len(list(receipts.glob("part-*.json")))
        finished_at_kill = (out / "_manifest.json").exists()
        stdout, stderr = job.communicate(timeout=180)
        assert done_at_kill < 28 and not finished_at_kill, "the job had finished before the worker was killed"
        if job.returncode != 0:  # Dask gave up on the work: one clear line, then --resume finishes it
            assert stderr.startswith("beamscore: error:") and stderr.count("\n") == 1, stderr
            resumed = beamscore_cli("score", *args, "--output", str(out), "--resume", *flags)
            assert resumed.returncode == 0, resumed.stderr[-3000:]
        else:
            assert "rows in 700, out 700, failed 0" in stdout, stdout + stderr
    assert_slow_result(out, ids, expected)


@pytest.mark.distributed
def test_sigterm_cancels_the_dask_job_and_keeps_its_claim_until_stale(slow_job, tmp_path):
    """SIGTERM to a launcher whose job runs on a cluster: the job is asked to cancel, and the
    claim stays (its workers may still commit the units they hold) without a heartbeat; a
    retry on this machine takes the claim over (its launcher is gone) and finishes the job
    (or finds it already complete)."""
    args, ids, expected = slow_job
    out = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster", workers=2) as cluster:
        flags = ["--runner=DaskRunner", f"--dask_client_address={cluster.address}"]
        job, _receipts = start_slow_job([*args, "--output", str(out), *flags], out, cluster)
        job.send_signal(signal.SIGTERM)
        _stdout, stderr = job.communicate(timeout=60)
        assert job.returncode == 143, stderr[-3000:]
        (line,) = stderr.strip().splitlines()
        assert line.startswith("beamscore: error: terminated (SIGTERM): the job on DaskRunner was asked to cancel")
        assert "; rerun with --resume to continue the job" in line
        # tasks already on the workers run on (Beam's DaskRunner cancels only its result
        # futures): they may commit more units, even the manifest, so the claim stays
        assert json.loads((out / "_claim.json").read_text())["pid"] == job.pid  # kept, for the workers
        resumed = beamscore_cli("score", *args, "--output", str(out), "--resume", *flags)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "taking over the stale claim" in resumed.stderr
    assert not (out / "_claim.json").exists()
    assert_slow_result(out, ids, expected)


@pytest.mark.distributed
def test_progress_lines_summary_and_metrics_on_dask(slow_job, tmp_path):
    """Off a terminal, a Dask job prints a timestamped progress line every --progress-every
    seconds (its workers on this machine append each batch's rows to the launcher's file), and
    --json's summary carries the manifest's metrics: one model load per worker process."""
    args, ids, expected = slow_job
    out = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster", workers=2) as cluster:
        flags = ["--runner=DaskRunner", f"--dask_client_address={cluster.address}", "--progress-every", "0.5"]
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
