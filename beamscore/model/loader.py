"""Load a SavedModel once per worker process and hand out its signature functions.

:func:`load_signature` is what a DoFn calls from ``setup``: through
``apache_beam.utils.shared.Shared`` every DoFn instance of a process gets the same loaded
model, so a process with many threads or many DoFn instances loads it once. A model on
remote storage (``gs://``, ``s3://``) is first copied to a local cache directory keyed by
its fingerprint, so it is downloaded once per machine, not streamed per process: the copy
holds a file lock that the machine's other worker processes wait on, and transient storage
errors are retried with jittered backoff, so hundreds of workers starting at once neither
each stream the model nor retry in lockstep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.model.inspect import parse_tags
from beamscore.paths import child

__all__ = ["LoadedModel", "ModelSpec", "is_transient", "load_count", "load_model", "local_copy"]

_LOG = logging.getLogger(__name__)
_LOADS = 0
_LOADS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """What identifies a model to load: the resolved directory, tag set and fingerprint."""

    path: str
    tags: str = "serve"
    fingerprint: str | None = None
    #: ``--model-copies``: 0 loads one copy per process; N > 0 serves N copies per machine.
    copies: int = 0
    #: ``--jit-compile``: call signatures XLA-compiled on batches of exactly ``fixed_batch`` rows.
    jit_compile: bool = False
    fixed_batch: int | None = None

    @property
    def key(self) -> str:
        """The key under which a process shares one loaded copy."""
        key = f"{self.path}|{','.join(parse_tags(self.tags))}|{self.fingerprint}"
        if self.jit_compile:
            key += f"|jit{self.fixed_batch}"
        return key + (f"|copies{self.copies}" if self.copies else "")


class LoadedModel:
    """A loaded SavedModel (kept alive here) and how long the load took.

    A plain class so that ``shared.Shared`` can hold a weak reference to it.
    """

    def __init__(self, obj: Any, spec: ModelSpec, seconds: float) -> None:
        self.obj = obj
        self.spec = spec
        self.load_seconds = seconds

    def signature(self, name: str) -> Any:
        """The function of signature ``name``: the concrete function, its fixed-batch XLA
        wrapper (``jit_compile``) or a proxy of the machine's copy (``copies``)."""
        if self.spec.copies:
            from beamscore.model.copies import RemoteSignature

            return RemoteSignature(self.obj, name)
        try:
            fn = self.obj.signatures[name]
        except KeyError:
            available = ", ".join(sorted(self.obj.signatures.keys()))
            raise BeamscoreError(f"signature {name!r} not found in {self.spec.path}; available: {available}") from None
        if self.spec.jit_compile:
            from beamscore.model.runner import FixedBatchSignature

            return FixedBatchSignature(fn, self.spec.fixed_batch or 1024, jit_compile=True, keep=self.obj)
        return fn


def load_count() -> int:
    """How many models this process has loaded (tests use it to prove load-once)."""
    return _LOADS


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load ``spec`` now (no sharing). DoFns go through :class:`SharedModel` instead."""
    global _LOADS
    import tensorflow as tf

    from beamscore.model.devices import configure_gpus

    start = time.perf_counter()
    if spec.copies:  # a proxy of the copy this machine serves (loaded by its first process)
        from beamscore.model.copies import acquire_copy

        return LoadedModel(acquire_copy(spec, spec.copies), spec, time.perf_counter() - start)
    configure_gpus()
    local = local_copy(spec.path, spec.fingerprint)
    obj = tf.saved_model.load(local, tags=list(parse_tags(spec.tags)))
    seconds = time.perf_counter() - start
    with _LOADS_LOCK:
        _LOADS += 1
    _LOG.info("beamscore: loaded model %s in %.2fs (pid %d)", spec.path, seconds, os.getpid())
    return LoadedModel(obj, spec, seconds)


def local_copy(url: str, fingerprint: str | None, cache_dir: str | None = None) -> str:
    """A local directory holding the model at ``url``: the URL itself when it is local.

    Remote models are copied into ``cache_dir`` (default ``$BEAMSCORE_CACHE`` or the temp
    dir) under a name derived from the fingerprint; the copy goes to a temporary directory
    that is renamed into place, so concurrent processes never load a half-copied model.
    """
    fs, path = bfs.filesystem(url)
    if bfs.is_local(fs):
        return path
    cache_dir = (
        cache_dir or os.environ.get("BEAMSCORE_CACHE") or os.path.join(tempfile.gettempdir(), "beamscore-models")
    )
    target = child(cache_dir, (fingerprint or path).replace("/", "_").replace(":", "_"))
    if os.path.exists(os.path.join(target, "saved_model.pb")):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    with _machine_lock(f"{target}.lock"):
        if os.path.exists(os.path.join(target, "saved_model.pb")):  # another process copied it meanwhile
            return target
        staging = f"{target}.tmp-{uuid.uuid4().hex}"
        try:
            _copy_with_retry(fs, path, staging, url)
            os.rename(staging, target)
        except OSError:
            if not os.path.exists(os.path.join(target, "saved_model.pb")):
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _LOG.info("beamscore: copied model %s to %s (pid %d)", url, target, os.getpid())
    return target


#: Attempts at copying a remote model, and the first backoff in seconds (doubled each time, jittered).
COPY_ATTEMPTS = 5
COPY_BACKOFF_S = 1.0
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})


def _copy_with_retry(fs: Any, path: str, staging: str, url: str) -> None:
    """``fs.get`` the model directory, retrying transient errors; others fail at once."""
    for attempt in range(1, COPY_ATTEMPTS + 1):
        try:
            fs.get(path.rstrip("/") + "/", staging, recursive=True)
            return
        except Exception as exc:  # storage clients raise many types; is_transient sorts them
            shutil.rmtree(staging, ignore_errors=True)
            if not is_transient(exc):
                raise BeamscoreError(f"cannot copy model {url}: {type(exc).__name__}: {exc}") from exc
            if attempt == COPY_ATTEMPTS:
                raise BeamscoreError(
                    f"cannot copy model {url} after {COPY_ATTEMPTS} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            delay = COPY_BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            _LOG.warning("beamscore: copying model %s failed (%s); retrying in %.1fs", url, exc, delay)
            time.sleep(delay)


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error is worth retrying: network errors, timeouts, HTTP 408/429/5xx."""
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, OSError | TimeoutError):  # ConnectionError is an OSError
        return True
    code = getattr(exc, "code", None) or getattr(exc, "status", None)
    if code in _TRANSIENT_HTTP:
        return True
    try:
        import aiohttp
    except ImportError:
        return False
    return isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)


@contextlib.contextmanager
def _machine_lock(path: str):
    """An exclusive lock shared by all processes of this machine (no-op where flock is missing)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
