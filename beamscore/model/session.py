"""Run a TF1 MetaGraph in a ``tf.compat.v1`` Session, as ``saved_model_cli run`` and tfx-bsl do.

TF1 and Estimator exports have no object graph. ``tf.saved_model.load`` wraps them in
functions, which fails for some of them: a signature whose output is ref-typed
(``float_ref``, e.g. an ``AssignAdd``) or a graph whose declared shapes are wrong. A Session
runs such a graph as it was written: each call feeds the SignatureDef's input tensor names
and fetches its output tensor names.

:class:`SessionModel` looks like what ``tf.saved_model.load`` returns as far as beamscore
uses it (``signatures[name](**feeds) -> {key: array}`` with ``structured_outputs``), so the
runner, the fixed-batch wrapper and the per-process ``Shared`` rule work unchanged.
``Session.run`` is thread-safe, so one model serves every thread of a worker process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from beamscore.model.inspect import HIDDEN_SIGNATURES

__all__ = ["SessionModel", "SessionSignature"]


class SessionSignature:
    """One SignatureDef run in a Session: ``fn(**feeds)`` -> ``{output key: numpy array}``."""

    def __init__(self, session: Any, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> None:
        self.session = session
        self.inputs = dict(inputs)  # key -> tensor name
        self.fetches = dict(outputs)
        #: The output keys, as a TF2 signature function's ``structured_outputs`` has them.
        self.structured_outputs = {key: None for key in self.fetches}

    def __call__(self, **feeds: Any) -> dict[str, np.ndarray]:
        unknown = sorted(set(feeds) - set(self.inputs))
        if unknown:
            raise TypeError(f"unexpected inputs {', '.join(unknown)}; inputs: {', '.join(sorted(self.inputs))}")
        feed_dict = {self.inputs[key]: np.asarray(value) for key, value in feeds.items()}
        fetched = self.session.run(self.fetches, feed_dict)
        return {key: np.asarray(value) for key, value in fetched.items()}


class SessionModel:
    """A MetaGraph restored into its own graph and Session, with its signatures by key."""

    def __init__(self, path: str, tags: list[str]) -> None:
        import tensorflow as tf

        self.graph = tf.Graph()
        # Soft placement: a graph pinned to /gpu:0 (TF Serving's *_gpu exports) still runs on a
        # CPU worker; memory growth: a Session must not take all of a GPU, as TF2 loads don't.
        config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
        config.gpu_options.allow_growth = True
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        with self.graph.as_default():
            meta = tf.compat.v1.saved_model.load(self.session, tags, path)
        self.signatures = {
            key: SessionSignature(
                self.session,
                {k: v.name for k, v in sd.inputs.items()},
                {k: v.name for k, v in sd.outputs.items()},
            )
            for key, sd in meta.signature_def.items()
            if key not in HIDDEN_SIGNATURES
        }

    def close(self) -> None:
        self.session.close()
