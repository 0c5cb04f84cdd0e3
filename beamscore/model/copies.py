"""``--model-copies N``: N copies of a model per machine, shared by all its worker processes.

A big model on a GPU should not be loaded once per worker process (Beam starts one per
core): ``N`` copies fit in GPU memory where 16 would not. Through Beam's
``apache_beam.utils.multi_process_shared.MultiProcessShared`` the first process that asks
for copy ``i`` serves it from a thread of its own; every process of the machine picks copy
``pid % N`` and calls it through a local proxy. Batches cross between processes as numpy
arrays (the proxy pickles them over a loopback socket between this job's own processes;
no data file is ever unpickled).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["RemoteSignature", "ServedModel", "acquire_copy", "copy_tag"]


class ServedModel:
    """The server side: one loaded model, called by name with numpy feeds."""

    def __init__(self, spec: Any) -> None:
        from beamscore.model.loader import load_model

        self.loaded = load_model(spec)
        self._fns: dict[str, Any] = {}

    def _fn(self, name: str) -> Any:
        if name not in self._fns:
            self._fns[name] = self.loaded.signature(name)
        return self._fns[name]

    def outputs(self, name: str) -> list[str]:
        """The output keys of signature ``name``."""
        return list(self._fn(name).structured_outputs.keys())

    def run(self, name: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call signature ``name`` on one batch; outputs as numpy arrays."""
        import tensorflow as tf

        out = self._fn(name)(**{key: tf.constant(value) for key, value in feeds.items()})
        return {key: np.asarray(value.numpy()) for key, value in out.items()}

    def pid(self) -> int:
        """The serving process (tests use it to show one copy serves many processes)."""
        return os.getpid()


class RemoteSignature:
    """The client side: looks like a signature function, runs in the process serving the copy."""

    def __init__(self, proxy: Any, name: str) -> None:
        self.proxy = proxy
        self.name = name
        self.structured_outputs = dict.fromkeys(proxy.outputs(name))

    def __call__(self, **feeds: Any) -> dict[str, np.ndarray]:
        arrays = {key: value.numpy() if hasattr(value, "numpy") else np.asarray(value) for key, value in feeds.items()}
        return self.proxy.run(self.name, arrays)


def copy_tag(key: str, index: int) -> str:
    """A file-name-safe tag for copy ``index`` of the model identified by ``key``."""
    return f"beamscore-{hashlib.sha256(key.encode()).hexdigest()[:20]}-{index}"


def acquire_copy(spec: Any, copies: int) -> Any:
    """A proxy of this process's copy (``pid % copies``) of ``spec``, served on this machine.

    ``spec`` is the :class:`~beamscore.model.loader.ModelSpec`; its server loads it with
    ``copies=0`` (a plain local load, with the same jit setting).
    """
    import dataclasses

    from apache_beam.utils.multi_process_shared import MultiProcessShared

    local = dataclasses.replace(spec, copies=0)
    tag = copy_tag(spec.key, os.getpid() % copies)
    shared = MultiProcessShared(lambda: ServedModel(local), tag=tag, path=tempfile.gettempdir(), always_proxy=True)
    return shared.acquire()
