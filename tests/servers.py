"""What the tests' server processes share (GCS emulator, moto S3, Dask, Beam's job service):
a free loopback port, the venv's console scripts, and stopping processes without leaks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable

__all__ = ["free_port", "stop", "venv_script"]


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_script(name: str) -> list[str]:
    """The command of a console script: this interpreter's venv first, then ``PATH``."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    return [script] if os.path.exists(script) else [shutil.which(name) or name]


def stop(processes: Iterable[subprocess.Popen], timeout: float = 10) -> None:
    """Terminate all at once, then wait (a graceful close can take seconds); kill stragglers."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
