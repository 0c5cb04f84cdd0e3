"""Kill a running ``beamscore score`` process mid-job (SIGKILL, as a lost machine), for the
``--resume`` tests on a local disk, on GCS and on S3.

``kill_midway`` starts ``python -m beamscore ARGS`` and kills it (or sends SIGTERM) once ``done()`` (how many
units have receipts, counted however the store allows) reaches ``at_least``; the test then
reruns the job with ``--resume`` and compares it with an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

__all__ = ["kill_midway"]


def kill_midway(
    args: list[str],
    env: Mapping[str, str],
    done: Callable[[], int],
    at_least: int,
    timeout: float = 120,
    sig: int = signal.SIGKILL,
    ignoring: tuple[int, ...] = (),
) -> subprocess.Popen:
    """Run ``python -m beamscore ARGS`` and send it ``sig`` (SIGKILL: a lost machine;
    SIGTERM: a scheduler's timeout) once ``done() >= at_least``.

    Fails the test when the job ends first (the job is too quick to catch: make it slower).
    ``ignoring``: signals the process starts with ignored (as a script's background job starts
    with SIGINT and SIGQUIT ignored). Returns the reaped process, its stderr as ``proc.stderr_text``.
    """

    def ignore() -> None:
        for signum in ignoring:
            signal.signal(signum, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, "-m", "beamscore", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        preexec_fn=ignore if ignoring else None,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if done() >= at_least:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, sig)
        _out, err = proc.communicate(timeout=60)  # SIGTERM: the process unwinds and exits itself
    finally:
        if proc.poll() is None:
            proc.kill()
            _out, err = proc.communicate()
    proc.stderr_text = err.decode()
    return proc
