"""Scale-out on loopback: what differs on Dataflow or Flink from an in-process run, exercised here.

* ``--direct_running_mode=multi_processing --direct_num_workers=2``: DoFns are pickled to two
  separate worker processes; the outputs equal the in-process run's and each worker process
  loads the model exactly once (counted from the worker's own "loaded model ... (pid N)" log
  lines, which Beam forwards to the launcher).
* The portable path Flink and Dataflow use: Beam's job service and an external SDK worker
  pool run as separate processes on loopback ports, and ``beamscore score
  --runner=PortableRunner`` submits to them over the Job and Fn APIs; the model-load count
  is the job's ``beamscore/model_loads`` Beam counter, read back from the job service.

Each test uses the 700-row shards of ``conftest`` split into units of 128 rows (6 units).
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
from collections.abc import Iterator

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from cli_runs import run_cli
from portable import portable
from runner_jobs import assert_same_result, beamscore_cli, job_args, run_in_process

from beamscore.config import ScoreConfig
from beamscore.pipelines.plan import plan_job
from beamscore.pipelines.runners import make_runner

VENV_BIN = os.path.dirname(sys.executable)
# Count the lines the runner forwards from its workers over the Fn API logging channel: a worker
# may also print the same record to its own stderr (whether it does depends on which Beam extras
# are installed), which must not count as a second load.
LOAD_LINE = re.compile(r'message: "beamscore: loaded model (\S+) in [\d.]+s \(pid (\d+)\)')
DEVICE_LINE = re.compile(r'message: "beamscore: the model runs on CPU \(pid (\d+)\); doctor: CPU only')


@pytest.fixture(scope="module")
def in_process(models, shards, tmp_path_factory):
    """The reference: the same job on the in-process runner."""
    return run_in_process(models, shards, tmp_path_factory)


def test_local_runner_never_downloads_prism():
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    for flags in ([], ["--runner=DirectRunner"], ["--runner=DirectRunner", "--direct_running_mode=multi_processing"]):
        assert isinstance(make_runner(PipelineOptions(flags)), FnApiRunner)
    assert make_runner(PipelineOptions(["--runner=PortableRunner"])) == "PortableRunner"


def test_runner_names_are_read_as_beam_reads_them():
    """Beam takes a runner in any case and without ``Runner``; every check here must see the
    runner Beam will run (``direct`` went to Beam's own DirectRunner as if remote)."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    for spelled in ("direct", "DIRECT", "directrunner", "fnapi"):
        assert isinstance(make_runner(PipelineOptions([f"--runner={spelled}"])), FnApiRunner), spelled
    assert make_runner(PipelineOptions(["--runner=dataflow"])) == "DataflowRunner"
    assert make_runner(PipelineOptions(["--runner=portable"])) == "PortableRunner"


def test_a_misspelt_runner_is_refused_before_anything_is_written(models, shards, tmp_path):
    """Exit 2 and one line with the likely name, before the job claims its output (Beam
    refused it only at the start of the run: exit 3, the output claimed)."""
    out = tmp_path / "out"
    done = run_cli("score", *job_args(models, shards, out), "--runner", "DirectRuner", "--no-progress")
    assert done.code == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(
        "beamscore: error: --runner DirectRuner: not a runner Beam knows; did you mean DirectRunner?"
    )
    assert not out.exists()


def test_a_runner_spelled_as_beam_allows_runs_on_the_local_runner(models, shards, in_process, tmp_path):
    out = tmp_path / "out"
    done = run_cli("score", *job_args(models, shards, out), "--runner", "direct", "--no-progress")
    assert done.code == 0, done.stderr
    assert "on FnApiRunner" in done.stdout and "workers cannot" not in done.stderr
    assert_same_result(out, in_process, models, shards)


@pytest.mark.distributed
def test_multi_processing_equals_in_process_and_loads_once_per_worker(models, shards, in_process, tmp_path):
    """The launcher is a child too: its stderr is where Beam forwards the workers' log lines
    (in a test process, what an earlier in-process job left behind can keep them away)."""
    out = tmp_path / "out"
    done = beamscore_cli(
        "score",
        *job_args(models, shards, out),
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        "--debug",  # INFO logs, where the workers' forwarded "loaded model" lines appear
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_result(out, in_process, models, shards)
    loads = collections.Counter(int(pid) for _model, pid in LOAD_LINE.findall(done.stderr))
    assert len(loads) == 2, f"expected loads in 2 worker processes, got {dict(loads)}"
    assert set(loads.values()) == {1}, f"a worker loaded the model more than once: {dict(loads)}"
    devices = collections.Counter(int(pid) for pid in DEVICE_LINE.findall(done.stderr))
    assert devices == dict.fromkeys(loads, 1), f"each worker logs its device once: {dict(devices)}"
    assert json.loads((out / "_manifest.json").read_text())["device"] == "CPU"


@pytest.fixture
def portable_services(tmp_path) -> Iterator[list[str]]:
    """Beam's job service and an external SDK worker pool (``tests/portable.py``)."""
    with portable(tmp_path) as flags:
        yield flags


@pytest.mark.distributed
def test_portable_runner_with_external_worker_pool(models, shards, in_process, portable_services, tmp_path):
    """The launcher is ``main`` in this process (it submits over gRPC as a child would); the
    job service and the worker pool, where the job runs, are processes of their own."""
    out = tmp_path / "out"
    done = run_cli("score", *job_args(models, shards, out), *portable_services)
    assert done.code == 0, done.stderr[-3000:]
    assert "on PortableRunner" in done.stdout and "rows in 700, out 700, failed 0" in done.stdout
    assert_same_result(out, in_process, models, shards)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["model"]["path"] == models["two_sig"] and manifest["model"]["fingerprint"]

    # The job service kept the job's Beam counters: ask it over the Job API, as PortableRunner does.
    counters = job_counters(portable_services)
    assert counters["model_loads"] == 1, counters  # the pool started one SDK worker: one load
    plan = plan_job(ScoreConfig(model=models["two_sig"], inputs=shards[0], output=str(out), rows_per_unit=128))
    assert counters["batches"] == sum(-(-u.rows // 50) for u in plan.units)  # batches of 50 within each unit
    assert counters["rows_in"] == counters["rows_out"] == 700


def job_counters(flags: list[str]) -> dict[str, int]:
    """User counters of the only job the job service ran, summed over steps."""
    import grpc
    from apache_beam.metrics import monitoring_infos
    from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc

    endpoint = next(f.split("=", 1)[1] for f in flags if f.startswith("--job_endpoint="))
    with grpc.insecure_channel(endpoint) as channel:
        stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
        (job,) = stub.GetJobs(beam_job_api_pb2.GetJobsRequest()).job_info
        metrics = stub.GetJobMetrics(beam_job_api_pb2.GetJobMetricsRequest(job_id=job.job_id)).metrics
    counters: dict[str, int] = collections.Counter()
    for info in metrics.committed:
        if monitoring_infos.is_counter(info):
            _namespace, name = monitoring_infos.parse_namespace_and_name(info)
            counters[name] += monitoring_infos.extract_counter_value(info)
    return dict(counters)
