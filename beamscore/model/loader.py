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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line
from beamscore.model.binding import check_feedable_inputs
from beamscore.model.checks import (
    check_jit_signature,
    check_model_files,
    check_outputs,
    fixed_batch_size,
    import_modules,
)
from beamscore.model.inspect import (
    SAVED_MODEL_PB,
    SAVED_MODEL_PBTXT,
    MetaGraphInfo,
    ModelInfo,
    SignatureInfo,
    inspect_model,
    parse_tags,
)
from beamscore.model.tfpath import tf_readable
from beamscore.paths import child

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "discard_preloaded",
    "is_preloaded",
    "is_transient",
    "load_count",
    "load_model",
    "local_copy",
    "offer_preloaded",
    "preload",
    "remember",
    "resolve_signature",
    "tf_message",
]

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
    #: ``--import``: modules (custom op libraries) imported before the model loads.
    imports: tuple[str, ...] = ()
    #: a digest of the model's files by content (:func:`beamscore.model.content.digest`): a
    #: process that loaded the model before its ``variables/`` were replaced in place (under
    #: the same ``fingerprint.pb``) loads it again instead of sharing the old copy
    content: str = ""

    @property
    def key(self) -> str:
        """The key under which a process shares one loaded copy."""
        key = f"{self.path}|{','.join(parse_tags(self.tags))}|{self.fingerprint}"
        if self.content:
            key += f"|{self.content}"
        if self.jit_compile:
            key += f"|jit{self.fixed_batch}"
        return key + (f"|copies{self.copies}" if self.copies else "")


def resolve_signature(
    model: str,
    signature: str,
    tag_set: str = "serve",
    version: int | None = None,
    outputs: Sequence[str] = (),
    imports: Sequence[str] = (),
    **spec: Any,
) -> tuple[ModelSpec, SignatureInfo]:
    """Inspect ``model`` (a SavedModel or versioned base dir, any URL) when a transform is
    built, so that a bad model fails there, on the launcher, as ``beamscore score`` checks it:
    a wrong signature or tag set, ops not registered (after importing ``imports``), a
    missing or unreadable variables index, a SparseTensor input, ``outputs`` the signature
    lacks or that are not one row per input row, string tensors with ``jit_compile``. Return
    what workers load (``spec``: the other :class:`ModelSpec` fields) and the signature's facts."""
    imports = tuple(imports)
    import_modules(imports)
    info = remember(inspect_model(model, version))
    sig = info.signature(signature, tag_set)
    check_model_files(info, info.meta_graph(tag_set), imports)
    check_feedable_inputs(sig)
    check_outputs(info.path, sig, list(outputs) or sorted(sig.outputs))
    if spec.get("jit_compile"):
        check_jit_signature(sig)
    from beamscore.model.content import digest, model_files

    fs, path = bfs.filesystem(info.path)
    content = digest(model_files(fs, path))  # weights replaced under the same fingerprint.pb load anew
    return (
        ModelSpec(path=info.path, tags=tag_set, fingerprint=info.fingerprint, imports=imports, content=content, **spec),
        sig,
    )


class LoadedModel:
    """A loaded SavedModel (kept alive here), how long the load took and how it was loaded.

    ``kind`` is ``"tf2"`` (``tf.saved_model.load``) or ``"session"`` (a TF1 MetaGraph run in
    a ``tf.compat.v1`` Session, :mod:`beamscore.model.session`); callers need not care.
    A plain class so that ``shared.Shared`` can hold a weak reference to it.
    """

    def __init__(
        self,
        obj: Any,
        spec: ModelSpec,
        seconds: float,
        meta_graph: MetaGraphInfo | None = None,
        kind: str = "tf2",
    ) -> None:
        self.obj = obj
        self.spec = spec
        self.load_seconds = seconds
        self.meta_graph = meta_graph
        self.kind = kind

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
        fixed = None
        if self.meta_graph is not None and name in self.meta_graph.signatures:
            fixed = fixed_batch_size(self.meta_graph.signatures[name])
        if self.spec.jit_compile or fixed:
            from beamscore.model.runner import FixedBatchSignature

            # A graph traced for N rows takes exactly N: pad and slice like --jit-compile does.
            size = fixed or self.spec.fixed_batch or 1024
            return FixedBatchSignature(fn, size, jit_compile=self.spec.jit_compile, keep=self.obj)
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
    with _LOADS_LOCK:
        preloaded = _PRELOADED.pop(spec.key, None)
    if preloaded is not None:
        return preloaded
    configure_gpus()
    import_modules(spec.imports)
    local = local_copy(spec.path, spec.fingerprint)
    with _LOADS_LOCK:
        known = _INSPECTED.get((spec.path, spec.fingerprint)) if spec.fingerprint else None
    mg = (known or inspect_model(local)).meta_graph(spec.tags)
    try:
        obj, kind = _load(tf, local, mg)
    except BeamscoreError:
        raise
    except (tf.errors.OpError, ValueError, OSError, KeyError) as exc:
        raise BeamscoreError(f"cannot load model {spec.path} [{mg.tag_str}]: {tf_message(exc)}") from exc
    seconds = time.perf_counter() - start
    with _LOADS_LOCK:
        _LOADS += 1
    _LOG.info("beamscore: loaded model %s in %.2fs (pid %d) with the %s loader", spec.path, seconds, os.getpid(), kind)
    return LoadedModel(obj, spec, seconds, meta_graph=mg, kind=kind)


def _load(tf: Any, local: str, mg: MetaGraphInfo) -> tuple[Any, str]:
    """``tf.saved_model.load`` for TF2 exports; a v1 Session for graphs without an object graph
    and for those ``tf.saved_model.load`` cannot wrap: ref-typed outputs, and Keras 2 exports
    (tf.keras ``model.save(path)`` with a compiled optimizer: TensorFlow revives the optimizer
    as a plain object and fails with "'_UserObject' object has no attribute 'add_slot'" unless
    ``tf_keras`` is installed). The Session runs the SignatureDefs as ``saved_model_cli run`` does."""
    from beamscore.model.session import SessionModel

    if not mg.has_object_graph:
        return SessionModel(local, list(mg.tags)), "session"
    try:
        return tf.saved_model.load(local, tags=list(mg.tags)), "tf2"
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        if "_ref" not in str(exc):
            raise
        _LOG.info("beamscore: tf.saved_model.load failed (%s); running %s in a v1 Session", first_line(str(exc)), local)
        return SessionModel(local, list(mg.tags)), "session"
    except (AttributeError, KeyError, AssertionError) as exc:  # objects TF2 cannot revive (Keras 2)
        cause = f"{type(exc).__name__}: {first_line(str(exc))}"
        _LOG.info("beamscore: tf.saved_model.load failed (%s); running %s in a v1 Session", cause, local)
        try:
            return SessionModel(local, list(mg.tags)), "session"
        except Exception as session_exc:  # noqa: BLE001 - any failure here is the same refusal
            raise BeamscoreError(_unloadable(local, cause, session_exc)) from exc


def _unloadable(path: str, cause: str, session_exc: BaseException) -> str:
    """The one line for a model neither loader can load, with the way out."""
    # not an extra: tf-keras requires `tensorflow`, which pip would install over tensorflow-cpu
    keras2 = "install tf-keras (pip install --no-deps 'tf-keras~=2.21.0') and pass --import tf_keras"
    return (
        f"cannot load model {path}: tf.saved_model.load failed ({cause}) and so did a v1 Session "
        f"({tf_message(session_exc)}); if it is a Keras 2 export (tf.keras model.save), {keras2}, "
        "or re-export it with tf.saved_model.save"
    )


_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "defined at", "[[", "File ")


def tf_message(exc: BaseException) -> str:
    """The line of a TensorFlow error that says what went wrong, without the node trace.

    A graph error starts "Graph execution error:" and "Detected at node ..." (a model whose
    vocabulary asset is missing failed to load with just that); the cause is the first line
    that is none of those (nor an indented line of the node trace). Used for load errors,
    ``run``'s call errors and, through ``model_message``, rows that make the model raise."""
    text = getattr(exc, "message", None) or str(exc)
    for line in text.splitlines():
        if line.strip() and not line[:1].isspace() and not line.strip().startswith(_TF_NOISE):
            return line.strip()
    return type(exc).__name__


#: Models the launcher loaded (:func:`preload`), handed to the first in-process load.
_PRELOADED: dict[str, LoadedModel] = {}
#: Models this process inspected, by (path, fingerprint) (:func:`remember`).
_INSPECTED: dict[tuple[str, str], ModelInfo] = {}


def remember(info: ModelInfo) -> ModelInfo:
    """Keep the launcher's inspection of a model, so that a load of the same model (same
    path and fingerprint) in this process (a local runner's worker, :func:`preload`) takes
    its MetaGraph from it instead of reading and parsing ``saved_model.pb`` again."""
    if info.fingerprint:
        with _LOADS_LOCK:
            _INSPECTED[(info.path, info.fingerprint)] = info
    return info


def preload(spec: ModelSpec) -> LoadedModel:
    """Load ``spec`` on the launcher, so that a model that cannot load (corrupt weights) fails
    before the job starts; a local runner's in-process worker then takes this copy instead of
    loading its own."""
    loaded = load_model(spec)
    with _LOADS_LOCK:
        _PRELOADED[spec.key] = loaded
    return loaded


def offer_preloaded(loaded: LoadedModel) -> None:
    """Keep a model the launcher loaded anyway (the trial call) for the first in-process
    load of the same spec; :func:`discard_preloaded` drops it when workers run elsewhere."""
    with _LOADS_LOCK:
        _PRELOADED[loaded.spec.key] = loaded


def is_preloaded(spec: ModelSpec) -> bool:
    """Whether this process holds a launcher's copy of ``spec`` not yet taken by a worker."""
    with _LOADS_LOCK:
        return spec.key in _PRELOADED


def discard_preloaded(spec: ModelSpec) -> None:
    """Drop the launcher's copy of ``spec`` if no in-process load took it (a job refused after
    :func:`preload`, or run by worker processes): a notebook calling :func:`beamscore.score`
    again must not hold a model from an earlier job."""
    with _LOADS_LOCK:
        _PRELOADED.pop(spec.key, None)


def local_copy(url: str, fingerprint: str | None, cache_dir: str | None = None) -> str:
    """A local directory holding the model at ``url``: the URL itself when it is local (through
    a link when its path has glob characters TensorFlow would match, :mod:`.tfpath`).

    Remote models are copied into ``cache_dir`` (default ``$BEAMSCORE_CACHE`` or the temp
    dir) under a name derived from the fingerprint; the copy goes to a temporary directory
    that is renamed into place, so concurrent processes never load a half-copied model.
    """
    fs, path = bfs.filesystem(url)
    if bfs.is_local(fs):
        return tf_readable(path)
    cache_dir = (
        cache_dir or os.environ.get("BEAMSCORE_CACHE") or os.path.join(tempfile.gettempdir(), "beamscore-models")
    )
    target = child(cache_dir, (fingerprint or path).replace("/", "_").replace(":", "_"))
    if _holds_model(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    with _machine_lock(f"{target}.lock"):
        if _holds_model(target):  # another process copied it meanwhile
            return target
        staging = f"{target}.tmp-{uuid.uuid4().hex}"
        try:
            _copy_with_retry(fs, path, staging, url)
            os.rename(staging, target)
        except OSError:
            if not _holds_model(target):
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _LOG.info("beamscore: copied model %s to %s (pid %d)", url, target, os.getpid())
    return target


def _holds_model(directory: str) -> bool:
    return any(os.path.exists(os.path.join(directory, n)) for n in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT))


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
