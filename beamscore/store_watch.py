"""Bounded waits on object stores: client timeouts, and a launcher that notices a stalled store.

An endpoint that accepts connections and never answers (a blackhole, a proxy that lost its
upstream, a server that never sends ``100 Continue``) would otherwise hold a job for ever:
s3fs retries each call five times over botocore's own retries, and aiohttp waits for a
``100 Continue`` without a read timeout. Two guards, one setting (:func:`store_timeout`,
``--store-timeout`` / ``BEAMSCORE_STORE_TIMEOUT``, default :data:`DEFAULT_TIMEOUT_S` s):

* **Client timeouts** (:func:`client_options`), given as storage options when beamscore opens
  a store: s3fs's botocore ``connect_timeout`` (at most :data:`CONNECT_TIMEOUT_S`) and
  ``read_timeout``; gcsfs's ``requests_timeout``, aiohttp's total time per request. A
  value set in the fsspec config (``FSSPEC_S3_CONFIG_KWARGS``...) wins.
* **A stall watch** (:func:`watch_stores`) on the launcher: every second it looks at what each
  thread of the process waits for; a call into an fsspec store (everything that goes through
  ``fsspec.asyn.sync``: listings, reads, writes, the claim) that has not returned after the
  timeout ends the job with one line naming the store endpoint and the operation. Before the
  job has written anything (before its claim) that is a refusal
  (:class:`~beamscore.errors.BeamscoreError`, exit 2), after it :class:`~beamscore.errors.JobFailed`
  (exit 3; ``--resume`` continues). If unwinding blocks on the store again, the line is
  printed and the process exits at once with the same code.

The watch sees the launcher's own threads, which on a local run include Beam's worker threads.
A local ``multi_processing`` worker runs the same watch (:func:`watch_worker_stores`) and
exits 3 on a stall; a remote worker is bounded by the client timeouts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from beamscore.errors import BeamscoreError, JobFailed

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "client_options",
    "mark_written",
    "store_timeout",
    "watch_stores",
    "watch_worker_stores",
]

#: seconds a store call may go without an answer, unless ``--store-timeout`` says otherwise
DEFAULT_TIMEOUT_S = 120.0
#: the environment variable ``--store-timeout`` sets (worker processes inherit it)
TIMEOUT_ENV = "BEAMSCORE_STORE_TIMEOUT"
#: a TCP connect never waits longer than this (or the store timeout, if shorter)
CONNECT_TIMEOUT_S = 10.0
#: how often the watch looks
POLL_S = 1.0
#: a client's own request timeout is this much longer than the store timeout, so that the
#: watch (which names the endpoint and the operation) speaks first, not a bare FSTimeoutError
CLIENT_MARGIN_S = 3 * POLL_S

_written = threading.Event()
#: the command-line tool sets this: after a stall, a process that cannot unwind exits (a
#: notebook calling :func:`beamscore.score` is never ended by beamscore)
exit_when_stuck = False


def store_timeout() -> float:
    """The store timeout in seconds (:data:`TIMEOUT_ENV`, else :data:`DEFAULT_TIMEOUT_S`)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < MAX_TIMEOUT_S:
        raise BeamscoreError(f"{TIMEOUT_ENV} {timeout_rule()}, got {text!r}")
    return value


#: the store timeout's upper bound (a day), exclusive
MAX_TIMEOUT_S = 86400


def timeout_rule() -> str:
    """The store timeout's rule, in words: 0 itself is out (it said "between 0 and 86400")."""
    return f"must be a number of seconds above 0 and below {MAX_TIMEOUT_S} (a day)"


def client_options(protocol: str) -> dict[str, Any]:
    """Storage options that bound each request of ``protocol``'s client, merged under what the
    fsspec config already sets for it (the user's settings win)."""
    import fsspec.config

    timeout = store_timeout()
    conf = fsspec.config.conf.get(protocol, {})
    if protocol in ("s3", "s3a"):
        ours = {"connect_timeout": min(timeout, CONNECT_TIMEOUT_S), "read_timeout": timeout + CLIENT_MARGIN_S}
        given = conf.get("config_kwargs") or {}
        if not isinstance(given, dict):  # set in a form we do not read: the client gets it as it is
            return {}
        return {"config_kwargs": {**ours, **given}}
    if protocol in ("gs", "gcs"):
        other = fsspec.config.conf.get("gcs" if protocol == "gs" else "gs", {})
        if "requests_timeout" in conf or "requests_timeout" in other:
            return {}
        return {"requests_timeout": timeout + CLIENT_MARGIN_S}
    return {}


def mark_written() -> None:
    """Called once the job has written to its output (its claim): a stall is then exit 3."""
    _written.set()


class _Stalled(BaseException):
    """Raised in the main thread by the watch (a ``BaseException``, so that no library's
    ``except Exception`` retries it); :func:`watch_stores` turns it into the user's error."""


class _Watch:
    def __init__(self, timeout: float, worker: bool = False) -> None:
        self.timeout = timeout
        self.worker = worker
        self.stop = threading.Event()
        self.message: str | None = None
        self.main = threading.main_thread().ident
        from fsspec.asyn import sync

        self.code = sync.__code__

    def run(self) -> None:
        first_seen: dict[int, float] = {}
        while not self.stop.wait(POLL_S):
            now = time.monotonic()
            waiting = self._waiting()
            first_seen = {key: first_seen.get(key, now) for key in waiting}
            stalled = [key for key, since in first_seen.items() if now - since >= self.timeout]
            if not stalled:
                continue
            what = waiting[stalled[0]]
            if self.worker:  # a worker process: say it in the worker log and end, the launcher fails the job
                print(f"beamscore: error: {_message(what, self.timeout)}", file=sys.stderr, flush=True)
                os._exit(3)
            if self.message is None:
                self.message = _message(what, self.timeout)
                signal.pthread_kill(self.main, signal.SIGUSR2)
                first_seen.clear()  # unwinding gets its own full timeout
            elif exit_when_stuck:  # unwinding stalled too: say it and go
                print(f"beamscore: error: {self.message}", file=sys.stderr, flush=True)
                os._exit(_code())

    def _waiting(self) -> dict[int, Any]:
        """``id(frame)`` -> frame of every store call (``fsspec.asyn.sync``) now in progress."""
        found = {}
        for frame in sys._current_frames().values():
            current = frame
            while current is not None:
                if current.f_code is self.code:
                    found[id(current)] = current
                    break
                current = current.f_back
        return found


def _code() -> int:
    from beamscore.exitcodes import EXIT_CRASHED, EXIT_USAGE

    return EXIT_CRASHED if _written.is_set() else EXIT_USAGE


def _message(frame: Any, timeout: float) -> str:
    """``the S3 endpoint http://h:p (from X) did not answer put_object s3://b/k within 5 s``."""
    from fsspec import AbstractFileSystem

    from beamscore.stores import endpoint_of

    func = frame.f_locals.get("func")
    args = list(frame.f_locals.get("args") or ())
    fs = getattr(func, "__self__", None)
    if not isinstance(fs, AbstractFileSystem):
        fs = next((a for a in args if isinstance(a, AbstractFileSystem)), None)
    operation = getattr(func, "__name__", "a request").lstrip("_")
    paths = [a for a in args if isinstance(a, str)][:2]
    kwargs = frame.f_locals.get("kwargs") or {}
    if operation == "call_s3" and paths:  # s3fs's files call the client method by name
        operation, paths = paths[0], [str(kwargs.get(k, "")) for k in ("Bucket", "Key") if kwargs.get(k)]
    target = ""
    if fs is not None and paths:
        target = " " + fs.unstrip_protocol("/".join(p.strip("/") for p in paths))
    found = endpoint_of(fs) if fs is not None else None
    if found is not None:
        store, endpoint, where = found
        who = f"the {store} endpoint {endpoint} (from {where})"
    elif fs is not None:
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        who = f"the {protocol}:// store's default endpoint"
    else:
        who = "the store"
    return f"{who} did not answer {operation}{target} within {timeout:g} s (--store-timeout); the job stopped" + (
        ": rerun with --resume when the store answers" if _written.is_set() else ""
    )


@contextlib.contextmanager
def watch_stores() -> Iterator[None]:
    """Watch this process's store calls while the block runs (see the module docstring).

    Only from the main thread (where the signal that interrupts it is handled); elsewhere,
    e.g. :func:`beamscore.score` called from a worker thread, the client timeouts alone bound
    each call."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    watch = _Watch(store_timeout())
    _written.clear()

    def stalled(signum: int, frame: object) -> None:
        raise _Stalled()

    previous = signal.signal(signal.SIGUSR2, stalled)
    thread = threading.Thread(target=watch.run, name="beamscore-store-watch", daemon=True)
    thread.start()
    try:
        yield
    except _Stalled:
        _exit_if_stuck(watch)
        raise (JobFailed if _written.is_set() else BeamscoreError)(watch.message or "a store stalled") from None
    except BaseException:
        if watch.message is not None:  # the stall surfaced as another error while unwinding
            _exit_if_stuck(watch)
            raise (JobFailed if _written.is_set() else BeamscoreError)(watch.message) from None
        raise
    finally:
        watch.stop.set()
        signal.signal(signal.SIGUSR2, previous)


def watch_worker_stores() -> None:
    """In a local worker process (:mod:`beamscore.worker_main`): a store call that gets no
    answer within the store timeout ends the process (exit 3), with the line in the worker's
    log; its launcher then fails the job."""
    try:
        watch = _Watch(store_timeout(), worker=True)
    except BeamscoreError:
        return
    threading.Thread(target=watch.run, name="beamscore-store-watch", daemon=True).start()


def _exit_if_stuck(watch: _Watch) -> None:
    """After a stall, threads may still wait on the store and keep the interpreter from
    exiting: end the process, with the job's exit code, if it is still here a timeout later."""
    if not exit_when_stuck:
        return
    code = _code()

    def finish() -> None:
        time.sleep(max(watch.timeout, 5.0))
        os._exit(code)

    threading.Thread(target=finish, name="beamscore-store-exit", daemon=True).start()
