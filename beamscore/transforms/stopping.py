"""Writers of a stopped job write nothing more into its output.

When a local job is stopped by a signal (SIGTERM, SIGHUP, Ctrl-C) the launcher raises out of
``p.run()`` and removes the job's temporary files, but the FnApiRunner's worker *threads* in
the same process are still in their bundles: a unit writer that opened its temporary file,
or committed a unit, just after that clean-up left ``OUTPUT/_temporary/`` behind (seen on a
2-core CI machine). Every write into an output therefore holds :func:`writing` for that
output; :func:`stop` marks the output stopped, so that writers which come after write
nothing, and waits for the writes in flight to end before the launcher cleans up.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["STOP_WAIT_S", "allow", "stop", "stopped", "writing"]

#: how long :func:`stop` waits for writes in flight (one batch, or one unit's commit)
STOP_WAIT_S = 10.0

_cond = threading.Condition()
_in_flight: dict[str, int] = {}
_stopped: set[str] = set()


def _key(output: str) -> str:
    return output.rstrip("/")


@contextlib.contextmanager
def writing(output: str) -> Iterator[bool]:
    """Hold while writing into ``output``; yields False, and holds nothing, once the job
    writing there in this process was stopped: the caller then writes nothing."""
    key = _key(output)
    with _cond:
        if key in _stopped:
            go = False
        else:
            go = True
            _in_flight[key] = _in_flight.get(key, 0) + 1
    try:
        yield go
    finally:
        if go:
            with _cond:
                _in_flight[key] -= 1
                if not _in_flight[key]:
                    del _in_flight[key]
                _cond.notify_all()


def stopped(output: str) -> bool:
    """Whether the job writing ``output`` in this process was stopped."""
    with _cond:
        return _key(output) in _stopped


def stop(output: str, timeout: float = STOP_WAIT_S) -> bool:
    """Mark ``output`` stopped and wait (at most ``timeout`` seconds) until no write into it
    is in flight in this process; False when some still was at the deadline."""
    key = _key(output)
    with _cond:
        _stopped.add(key)
        return _cond.wait_for(lambda: key not in _in_flight, timeout)


def allow(output: str) -> None:
    """A new job writes ``output``: its writers write again."""
    with _cond:
        _stopped.discard(_key(output))
