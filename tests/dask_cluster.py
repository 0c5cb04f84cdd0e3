"""A real ``dask.distributed`` cluster on loopback: one ``dask scheduler`` and N ``dask worker``
processes (one thread each, no nanny, so the process we start is the worker process), run
with this interpreter and the project on ``PYTHONPATH`` so workers import this tree's
beamscore. Used by ``tests/pipelines/test_dask*.py`` and ``benchmarks/scaling.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

try:
    from servers import free_port, stop
except ImportError:  # imported as ``tests.dask_cluster`` (benchmarks/scaling.py)
    from tests.servers import free_port, stop

__all__ = ["DaskCluster", "dask_cluster"]

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_S = 90
#: One worker process of one thread, started by us (no nanny that would restart it), on loopback.
WORKER_FLAGS = ["--nworkers", "1", "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"]


@dataclass
class DaskCluster:
    """A running cluster: the scheduler's address, its processes and their log files."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def run(self, fn, *args):
        """``Client.run(fn, *args)`` on every worker: ``{worker address: result}``."""
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            return client.run(fn, *args)

    def kill_worker(self, index: int) -> int:
        """SIGKILL worker ``index`` (no clean shutdown, as a lost machine); returns its pid."""
        proc = self.workers[index]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in self.logs if p.exists())


def _env(extra: Mapping[str, str] | None, python_path: list[str]) -> dict[str, str]:
    path = os.pathsep.join(python_path)
    bin_dir = os.path.dirname(sys.executable)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(extra or {}),
    }


def _start(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            env=env,
            cwd=cwd,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def dask_cluster(
    workdir: Path, workers: int = 2, env: Mapping[str, str] | None = None, python_path: list[str] | None = None
) -> Iterator[DaskCluster]:
    """Start a scheduler and ``workers`` single-thread workers on 127.0.0.1; wait until every
    worker has registered; stop them all afterwards. ``env`` is added to their environment;
    ``python_path`` is their ``PYTHONPATH`` (default: this project's root, then ours)."""
    from distributed import Client

    workdir.mkdir(parents=True, exist_ok=True)
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    full_env = _env(env, [PROJECT, *inherited] if python_path is None else python_path)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = workdir / "scheduler.log"
    cluster = DaskCluster(
        address,
        _start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], log, full_env, workdir),
        logs=[log],
    )
    try:
        for i in range(workers):
            log = workdir / f"worker-{i}.log"
            cluster.logs.append(log)
            cluster.workers.append(
                _start(["worker", address, *WORKER_FLAGS, "--name", f"worker-{i}"], log, full_env, workdir)
            )
        deadline = time.monotonic() + STARTUP_S
        with Client(address, timeout=STARTUP_S, set_as_default=False) as client:
            while len(client.scheduler_info()["workers"]) < workers:
                dead = [p for p in [cluster.scheduler, *cluster.workers] if p.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f"the Dask cluster did not start:\n{cluster.log_tail()}")
                time.sleep(0.2)
        yield cluster
    finally:
        # the workers hold nothing to save: killed at once (a graceful close waits seconds on
        # the scheduler), then the scheduler asked to stop
        for worker in cluster.workers:
            if worker.poll() is None:
                worker.kill()
        stop([*cluster.workers, cluster.scheduler], timeout=5)
