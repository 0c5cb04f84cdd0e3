"""Beam's portable path on loopback: a job service and an external SDK worker pool, each its
own process (used by ``tests/pipelines/test_runners.py`` and ``test_per_row_runners.py``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from runner_jobs import worker_env
from servers import free_port

STARTUP_S = 60


def wait_for_port(port: int, proc: subprocess.Popen, log: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {Path(log).read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {STARTUP_S}s: {Path(log).read_text()[-2000:]}")


def start(args: list[str], log: str) -> subprocess.Popen:
    """Start a Beam service in its own process group (so stopping it stops its workers)."""
    with open(log, "w") as f:
        return subprocess.Popen(
            [sys.executable, "-m", *args], env=worker_env(), stdout=f, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@contextlib.contextmanager
def portable(tmp_path: Path) -> Iterator[list[str]]:
    """Beam's job service and an external SDK worker pool, each its own process on loopback.

    Yields the ``beamscore score`` flags that submit to them; stops both (and the SDK workers
    the pool started) afterwards.
    """
    job_port, pool_port = free_port(), free_port()
    job_service = start(
        ["apache_beam.runners.portability.local_job_service_main", f"--port={job_port}"], str(tmp_path / "job.log")
    )
    pool = start(
        ["apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}"], str(tmp_path / "pool.log")
    )
    try:
        wait_for_port(job_port, job_service, str(tmp_path / "job.log"))
        wait_for_port(pool_port, pool, str(tmp_path / "pool.log"))
        yield [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ]
    finally:
        stop(pool)
        stop(job_service)
    assert job_service.returncode is not None and pool.returncode is not None
