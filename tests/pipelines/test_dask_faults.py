"""A Dask job whose worker or launcher is killed, on a cluster started for each test (a
``dask scheduler`` and two one-thread ``dask worker`` processes on 127.0.0.1,
``tests/dask_cluster.py``): the tests that share one cluster are in ``test_dask.py``.

* a worker killed part-way: Dask reruns its units on the other worker (or the job fails with
  one line and ``--resume`` finishes it); either way the result equals the reference;
* SIGTERM to the launcher: the job is asked to cancel and its claim stays until stale.
"""

from __future__ import annotations

import json
import signal

import pytest
from cli_runs import error_lines
from dask_cluster import dask_cluster
from dask_jobs import assert_slow_result, slow_job, start_slow_job
from runner_jobs import beamscore_cli


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """The slow job (``dask_jobs.slow_job``): ``(args, ids, expected)``."""
    return slow_job(tmp_path_factory.mktemp("slow"))


@pytest.mark.distributed
def test_a_killed_worker_loses_nothing(slow, tmp_path):
    args, ids, expected = slow
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
def test_sigterm_cancels_the_dask_job_and_keeps_its_claim_until_stale(slow, tmp_path):
    """SIGTERM to a launcher whose job runs on a cluster: the job is asked to cancel, and the
    claim stays (its workers may still commit the units they hold) without a heartbeat; a
    retry on this machine takes the claim over (its launcher is gone) and finishes the job
    (or finds it already complete)."""
    args, ids, expected = slow
    out = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster", workers=2) as cluster:
        flags = ["--runner=DaskRunner", f"--dask_client_address={cluster.address}"]
        job, _receipts = start_slow_job([*args, "--output", str(out), *flags], out, cluster)
        job.send_signal(signal.SIGTERM)
        _stdout, stderr = job.communicate(timeout=60)
        assert job.returncode == 143, stderr[-3000:]
        (line,) = error_lines(stderr)
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


def _cancel_job_futures(address: str) -> list:
    """From a second client, cancel (for every client) the keys a client waits for: what the
    scheduler does to a job whose client it lost, or after a restart."""
    from distributed import Client, Future

    with Client(address, timeout=30, set_as_default=False) as other:
        keys = other.run_on_scheduler(
            lambda dask_scheduler: [k for k, ts in dask_scheduler.tasks.items() if ts.who_wants]
        )
        other.cancel([Future(k, client=other) for k in keys], force=True)
        return keys


@pytest.mark.distributed
def test_a_job_whose_dask_result_is_cancelled_fails_and_keeps_its_claim(slow, tmp_path):
    """Beam's DaskRunner takes a cancelled result future for a finished job: the launcher
    then released its claim and said only that no manifest came, while the workers went on
    committing units. Now the job fails naming the cancellation, keeps its claim, and
    ``--resume`` finishes it."""
    args, ids, expected = slow
    out = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster", workers=1) as cluster:
        flags = ["--runner=DaskRunner", f"--dask_client_address={cluster.address}"]
        job, _receipts = start_slow_job([*args, "--output", str(out), *flags], out, cluster)
        assert _cancel_job_futures(cluster.address)
        _stdout, stderr = job.communicate(timeout=120)
        assert job.returncode == 3, stderr[-3000:]
        line = stderr.strip().splitlines()[-1]  # after any progress lines
        assert line.startswith("beamscore: error: the job failed: ") and "Traceback" not in stderr, stderr
        assert "the Dask job's result was cancelled before its units all ended" in line, line
        assert json.loads((out / "_claim.json").read_text())["pid"] == job.pid  # kept, for the workers
        resumed = beamscore_cli("score", *args, "--output", str(out), "--resume", *flags)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_slow_result(out, ids, expected)
