"""The launcher ends its own local worker processes, and only those, when its job is stopped."""

from __future__ import annotations

import subprocess
import sys
import time

from beamscore.transforms.watchdog import WORKER_MODULE, end_worker_processes, worker_processes

SLEEP = "import time; time.sleep(60)"


def test_a_stopped_launcher_ends_its_worker_processes_and_no_other_process():
    worker = subprocess.Popen([sys.executable, "-c", SLEEP, WORKER_MODULE])  # argv names the worker module
    other = subprocess.Popen([sys.executable, "-c", SLEEP, "some.other_module"])
    try:
        deadline = time.monotonic() + 10
        while worker.pid not in worker_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker_processes() == [worker.pid]
        began = time.monotonic()
        assert end_worker_processes(wait_s=5) == [worker.pid]
        assert worker.poll() is not None and time.monotonic() - began < 5
        assert other.poll() is None  # not a worker of ours: left alone
        assert worker_processes() == []
    finally:
        for proc in (worker, other):
            proc.kill()
            proc.wait()
