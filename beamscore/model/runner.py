"""Call a signature on a column batch: the model side of scoring, with no Beam in it.

:class:`SignatureRunner` takes a batch as ``{column: numpy array}``, prepares every input
with its :class:`~beamscore.model.binding.InputBinding` (cast, reshape), calls the
signature once for the whole batch and returns ``{output key: numpy array}``, calling
``.numpy()`` once per output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from beamscore.errors import BeamscoreError
from beamscore.model.binding import InputBinding

__all__ = ["SignatureRunner"]


class SignatureRunner:
    """A signature function plus the bindings that feed it and the outputs to keep."""

    def __init__(
        self,
        fn: Any,
        bindings: Mapping[str, InputBinding],
        outputs: Sequence[str] | None = None,
    ) -> None:
        self.fn = fn
        self.bindings = dict(bindings)
        available = list(fn.structured_outputs.keys())
        self.outputs = list(outputs) if outputs else sorted(available)
        missing = [o for o in self.outputs if o not in available]
        if missing:
            raise BeamscoreError(
                f"--outputs {', '.join(missing)} not produced by the signature; "
                f"its outputs: {', '.join(sorted(available))}"
            )

    def __call__(self, columns: Mapping[str, np.ndarray], where: str = "batch") -> dict[str, np.ndarray]:
        """Run one batch; ``where`` (file and rows) goes into any error message."""
        import tensorflow as tf

        feeds = {}
        for key, binding in self.bindings.items():
            values = binding.prepare(columns[binding.column], where)
            feeds[key] = tf.convert_to_tensor(values, dtype=tf.as_dtype(binding.dtype))
        try:
            result = self.fn(**feeds)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BeamscoreError(f"{where}: the model failed on this batch: {first}") from exc
        return {key: _to_numpy(result[key]) for key in self.outputs}


def _to_numpy(tensor: Any) -> np.ndarray:
    array = tensor.numpy()
    return np.asarray(array)
