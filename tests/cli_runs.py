"""``beamscore ARGS`` in the test process: :func:`run_cli` returns the exit code, stdout and
stderr, and leaves the process as it found it.

A child ``python -m beamscore`` costs 4-5 CPU seconds of TensorFlow and Beam imports before
it does anything; ``main(argv)`` returns the code that child would exit with. What ``main``
changes for a command and keeps afterwards is put back here, so that an in-process test does
not change the next one: the root logger's level, handlers and their filters (a command
without ``--debug`` adds a filter dropping Beam's and TensorFlow's records to every root
handler, and a host's handlers, pytest's included, outlive the test), the levels of the
library loggers it quiets, the SIGINT / SIGTERM / SIGXFSZ handlers, ``os.environ``
(``TF_CPP_MIN_LOG_LEVEL``) and the working directory.

Where the process is the point (exit status as the OS sees it, signals, the bare stderr of
a terminal, import-time behaviour, worker processes) a test starts a real one instead; see
``docs/development.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import re
import signal

__all__ = ["CliRun", "error_lines", "run_cli"]

#: the loggers whose level a command sets (beamscore.cli and beamscore.stores.STORE_LOGGERS)
QUIETED = ("apache_beam", "absl", "tensorflow", "gcsfs", "s3fs", "aiobotocore", "botocore", "fsspec")


#: the timestamped launch and progress lines a job writes to stderr off a terminal
_PROGRESS = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (?:launch|progress): ")
#: the time before an error or warning line written to a file or pipe (beamscore.console.stamps)
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (?=beamscore: (?:error|warning): )")


def error_lines(stderr: str) -> list[str]:
    """The lines of a job's stderr other than its launch and progress lines (which come at
    launch and every few seconds off a terminal), without the time an error or warning line
    starts with in a file or pipe: what a test of its errors compares."""
    return [_STAMP.sub("", line) for line in stderr.strip().splitlines() if not _PROGRESS.match(line)]


@dataclasses.dataclass(frozen=True)
class CliRun:
    """What a ``beamscore`` command gave: its exit code and what it wrote."""

    code: int
    stdout: str
    stderr: str


def run_cli(*argv: str) -> CliRun:
    """``beamscore ARGV`` through ``beamscore.cli.main`` in this process, its stdout and
    stderr captured (``sys.stdout`` / ``sys.stderr``; a C library's writes to fd 2 are not)."""
    from beamscore.cli import main

    root = logging.getLogger()
    handlers = {h: list(h.filters) for h in root.handlers}
    levels = {name: logging.getLogger(name).level for name in ("", *QUIETED)}
    signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ)}
    environ, cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler, filters in handlers.items():
            if handler not in root.handlers:
                root.addHandler(handler)
            handler.filters[:] = filters
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for signum, handler in signals.items():
            if handler is not None:
                signal.signal(signum, handler)
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
        os.chdir(cwd)
    return CliRun(code, out.getvalue(), err.getvalue())
