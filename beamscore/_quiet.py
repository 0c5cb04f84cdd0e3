"""Import TensorFlow without its start-up banner on stderr.

TensorFlow's C++ logging prints several lines (oneDNN, CPU features) at import time that
``TF_CPP_MIN_LOG_LEVEL`` no longer silences. The CLI imports TensorFlow once through
:func:`import_tensorflow_quietly` with file descriptor 2 pointed at ``/dev/null``; an import
error is left to the first real use of TensorFlow (``beamscore doctor`` works without
it and says how to install it). ``--debug`` skips this.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["WithoutBeam", "import_tensorflow_quietly", "stderr_fd_to"]


def import_tensorflow_quietly() -> None:
    """Import ``tensorflow`` with stderr silenced at the file-descriptor level."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    except ImportError:  # no TensorFlow (beamscore without [cpu]/[gpu]): `beamscore doctor` says so
        pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class WithoutBeam:
    """``sys.stderr`` less what Apache Beam prints there itself.

    Beam's SDK worker ``print``s a failed bundle's whole traceback to ``sys.stderr`` (and
    logs it too), which buries the one line that names the cause. The CLI wraps
    ``sys.stderr`` in this unless ``--debug``: a write whose caller is a module of
    ``apache_beam`` is dropped, every other write passes through unchanged."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("apache_beam."):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def stderr_fd_to(path: str) -> Iterator[None]:
    """Point file descriptor 2 at the file ``path`` while the block runs.

    Processes started meanwhile inherit it: Beam's local SDK worker processes
    (``--direct_running_mode=multi_processing``) ``print`` a failed bundle's traceback and log
    at INFO straight to their stderr, hundreds of lines above the one that names the cause.
    Where ``sys.stderr`` wrote to descriptor 2, it is pointed at a copy of the terminal's
    descriptor meanwhile, so this process's own lines (progress, warnings) still show."""
    stream = sys.stderr
    holder, inner = None, stream  # wrappers (WithoutBeam, console.StderrLines) keep the real stream in _stream
    while "_stream" in getattr(inner, "__dict__", {}):
        holder, inner = inner, inner._stream
    try:
        on_fd2 = inner.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a capture buffer (pytest), not a descriptor
        on_fd2 = False
    stream.flush()
    saved = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    terminal = None
    try:
        os.dup2(log, 2)
        if on_fd2:
            terminal = open(os.dup(saved), "w", buffering=1, encoding=inner.encoding, errors="backslashreplace")  # noqa: SIM115
            if holder is None:
                sys.stderr = terminal
            else:
                holder._stream = terminal
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(log)
        sys.stderr = stream
        if holder is not None:
            holder._stream = inner
        if terminal is not None:
            terminal.close()
