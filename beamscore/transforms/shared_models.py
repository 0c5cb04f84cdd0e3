"""One loaded copy of each model per worker process, whichever steps use it.

``apache_beam.utils.shared.Shared`` shares an object between the DoFn instances of *one*
step (its key is made when the step is built); two steps that score with the same model
(two ``RunSignature`` s on one path, a ``RunSignature`` and a ``RunSignatures``) would each
load it. :func:`acquire` keeps one ``Shared`` per model (:attr:`ModelSpec.key`) in the
process instead, so the second step takes the first one's copy. ``Shared`` holds a weak
reference: the caller keeps the returned model while it uses it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from apache_beam.utils import shared

from beamscore.model.loader import LoadedModel, ModelSpec

__all__ = ["acquire"]

_HANDLES: dict[str, shared.Shared] = {}
_LOCK = threading.Lock()


def acquire(spec: ModelSpec, load: Callable[[], LoadedModel]) -> LoadedModel:
    """The process's copy of ``spec``, loaded by ``load`` when no step holds one."""
    with _LOCK:
        handle = _HANDLES.get(spec.key)
        if handle is None:
            handle = _HANDLES[spec.key] = shared.Shared()
    return handle.acquire(load, tag=spec.key)


def acquire_loaded(spec: ModelSpec, load: Callable[[ModelSpec], LoadedModel]) -> tuple[LoadedModel, bool]:
    """:func:`acquire` with ``load(spec)``, and whether this call loaded the model (the caller
    then counts the load: a model another step of the process holds is not loaded again)."""
    loaded_here: list[LoadedModel] = []

    def load_once() -> LoadedModel:
        loaded_here.append(load(spec))
        return loaded_here[-1]

    return acquire(spec, load_once), bool(loaded_here)
