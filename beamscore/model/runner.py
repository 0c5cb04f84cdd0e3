"""Call a signature on a column batch: the model side of scoring, with no Beam in it.

:class:`SignatureRunner` takes a batch as ``{column: numpy array}``, prepares every input
with its :class:`~beamscore.model.binding.InputBinding` (cast, reshape), calls the
signature once for the whole batch and returns ``{output key: numpy array}``, calling
``.numpy()`` once per output.

:class:`FixedBatchSignature` wraps a signature for ``--jit-compile``: XLA compiles one program
per input shape, so every call is cut into batches of exactly ``batch_size`` rows, the last
one padded by repeating its first row, and the outputs are sliced back to the real rows. A
final partial batch then reuses the compiled program instead of compiling (and tracing) anew.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from beamscore import wording
from beamscore.errors import BeamscoreError, first_line
from beamscore.model.binding import InputBinding, widen_output
from beamscore.wording import bare

__all__ = [
    "PROBE_MULTIPLES",
    "PROBE_ROWS",
    "BatchError",
    "FixedBatchSignature",
    "ModelFailed",
    "OutputShapeError",
    "SignatureRunner",
    "XlaCompileError",
]

_LOG = logging.getLogger(__name__)

#: the row count a row that fails alone is tried at once more: when it scores there, the row is
#: not bad, the signature needs batches of a multiple (jax2tf's shape polymorphism ``(2*b, 8)``
#: takes only even batches); the smallest of :data:`PROBE_MULTIPLES` that works is then used.
#: One extra call per bad row (and per distinct message); odd multiples: ``--batch-multiple``.
PROBE_ROWS = 8
PROBE_MULTIPLES = (2, 4, 8)


class SignatureRunner:
    """A signature function plus the bindings that feed it and the outputs to keep."""

    def __init__(
        self,
        fn: Any,
        bindings: Mapping[str, InputBinding],
        outputs: Sequence[str] | None = None,
        multiple: int = 1,
    ) -> None:
        """``multiple``: every call is padded (its first row repeated) to a multiple of this
        many rows and the outputs sliced back (``--batch-multiple``); :meth:`probe_multiple`
        raises it when a row fails alone and scores padded."""
        self.fn = fn
        self.bindings = dict(bindings)
        self.multiple = multiple
        #: whether any call has returned: until then a failure may be the model's, not a row's
        self.succeeded = False
        #: model messages already found to fail a row whatever the batch's row count (no probe again)
        self._row_messages: set[str] = set()
        available = list(fn.structured_outputs.keys())
        self.outputs = list(outputs) if outputs else sorted(available)
        missing = [o for o in self.outputs if o not in available]
        if missing:
            raise BeamscoreError(
                f"{bare('outputs')} {', '.join(missing)} not produced by the signature; "
                f"its outputs: {', '.join(sorted(available))}"
            )

    def __call__(self, columns: Mapping[str, np.ndarray], where: str = "batch") -> dict[str, np.ndarray]:
        """Run one batch; ``where`` (file and rows) goes into any error message."""
        import tensorflow as tf

        feeds = {}
        n = None
        for key, binding in self.bindings.items():
            values = binding.prepare(columns[binding.column], where)
            if binding.composite is not None:  # a ragged or sparse input: its components, built per batch
                from beamscore.model.composite import component_feeds

                n = len(values)
                parts = component_feeds(binding.composite, values)
                for part, dtype in zip(binding.composite.components, binding.composite.component_dtypes, strict=True):
                    feeds[part] = tf.convert_to_tensor(parts[part], dtype=tf.as_dtype(dtype))
                continue
            feeds[key] = tf.convert_to_tensor(values, dtype=tf.as_dtype(binding.dtype))
        padded = self._padding(feeds)
        if padded:
            feeds = {key: tf.concat([v, tf.repeat(v[:1], padded, axis=0)], axis=0) for key, v in feeds.items()}
        try:
            result = self.fn(**feeds)
        except OutputShapeError as exc:
            raise OutputShapeError(f"{where}: {exc}") from exc
        except (tf.errors.OpError, TypeError, ValueError) as exc:  # any op: a CPU-less kernel, a py_function
            first = first_line(str(exc), type(exc).__name__)
            if _XLA_UNSUPPORTED in first:
                raise XlaCompileError(f"{where}: {_xla_reason(first)}") from exc
            raise BeamscoreError(f"{where}: the model failed on this batch: {first}") from exc
        out = {key: _to_numpy(result[key]) for key in self.outputs}
        n = _rows_fed(feeds) if n is None else n
        if padded and n is not None:
            out = {key: _rows(key, values, n - padded, n) for key, values in out.items()}
            n -= padded
        for key, values in out.items():
            if n is not None and values.shape[:1] != (n,):
                raise OutputShapeError(
                    f"{where}: output {key!r} has shape {values.shape} for {n} input rows, not one row per input row"
                )
        self.succeeded = True
        return out

    def _padding(self, feeds: Mapping[str, Any]) -> int:
        """Rows to add so that the call has a multiple of :attr:`multiple` rows (0: none)."""
        if self.multiple <= 1 or any(b.composite is not None for b in self.bindings.values()):
            return 0
        n = _rows_fed(feeds)
        return 0 if not n else -n % self.multiple

    def probe_multiple(self, columns: Mapping[str, np.ndarray], message: str, where: str) -> bool:
        """A one-row call failed with ``message``: is it the row or the batch's row count?

        The row is called again repeated to :data:`PROBE_ROWS` rows; when that scores, the
        signature needs batches of a multiple (a shape rule such as jax2tf's ``(2*b, 8)``): the
        smallest of :data:`PROBE_MULTIPLES` that works is used, every later call is padded to
        it (returns ``True``: call again). A row input (ragged, sparse) cannot be padded: the
        job stops with the multiple to use. Each distinct message is probed once (``False``:
        a bad row)."""
        if message in self._row_messages:
            return False
        if self.multiple > 1 or not self._scores(columns, PROBE_ROWS, where):
            self._row_messages.add(message)  # padded already and still failing alone, or failing in a batch too
            return False
        m = next(m for m in PROBE_MULTIPLES if m == PROBE_ROWS or self._scores(columns, m, where))
        if any(b.composite is not None for b in self.bindings.values()):
            raise ModelFailed(
                f"{where}: the model fails on a row alone but scores it in a batch of {m} rows: "
                f"the signature needs batches of a multiple of {m} rows, and its ragged or sparse "
                "inputs cannot be padded; give it a model that takes any batch size"
            )
        _LOG.warning(
            "%s: the model fails on a batch of 1 row but not of %d: it needs batches of a multiple of %d "
            "rows; padding every call to one (set %s to say so)",
            where,
            m,
            m,
            wording.option("batch_multiple", str(m)),
        )
        self.multiple = m
        return True

    def _scores(self, columns: Mapping[str, np.ndarray], rows: int, where: str) -> bool:
        """Whether the first row of ``columns`` repeated to ``rows`` rows scores."""
        try:
            self({key: np.repeat(value[:1], rows, axis=0) for key, value in columns.items()}, where)
        except BeamscoreError:
            return False
        return True


def _rows_fed(feeds: Mapping[str, Any]) -> int | None:
    """The rows of a call: the first dimension of its first input (``None`` for scalars)."""
    for value in feeds.values():
        shape = tuple(value.shape)
        return int(shape[0]) if shape else None
    return None


def _to_numpy(tensor: Any) -> np.ndarray:
    """One output as the numpy array the sinks write (bfloat16 widened to float32)."""
    # a signature served by another process (--model-copies) returns numpy already
    return widen_output(tensor if isinstance(tensor, np.ndarray) else np.asarray(tensor.numpy()))


class FixedBatchSignature:
    """A signature called only on batches of exactly ``batch_size`` rows (pad, call, slice).

    With ``jit_compile`` the call is an XLA-compiled ``tf.function`` around the signature,
    compiled once for that shape. ``traces`` counts how often it was traced (tests check
    that a partial last batch does not add one).
    """

    def __init__(self, fn: Any, batch_size: int, jit_compile: bool = True, keep: Any = None) -> None:
        """``keep`` is the loaded SavedModel: a traced call captures its variables weakly, so the
        object that owns them must live as long as this wrapper."""
        import tensorflow as tf

        if batch_size < 1:
            raise BeamscoreError(f"a fixed batch size must be at least 1, got {batch_size}")
        self.structured_outputs = fn.structured_outputs
        self.batch_size = batch_size
        self.traces = 0
        self._keep = keep

        def call(**feeds: Any) -> Any:
            self.traces += 1  # runs only while tracing
            return fn(**feeds)

        # Without XLA (a graph traced for a fixed batch, or a v1 Session) the signature is called as it is.
        self._call = tf.function(call, jit_compile=True, reduce_retracing=False) if jit_compile else fn

    def __call__(self, **feeds: Any) -> dict[str, Any]:
        import tensorflow as tf

        n = int(next(iter(feeds.values())).shape[0])
        b = self.batch_size
        pieces: list[dict[str, Any]] = []
        for start in range(0, n, b):
            chunk = {key: value[start : start + b] for key, value in feeds.items()}
            rows = min(b, n - start)
            if rows < b:
                chunk = {key: tf.concat([v, tf.repeat(v[:1], b - rows, axis=0)], axis=0) for key, v in chunk.items()}
            out = self._call(**chunk)
            pieces.append({key: _rows(key, value, rows, b) for key, value in out.items()})
        if len(pieces) == 1:
            return pieces[0]
        if not pieces:  # zero rows: nothing to pad from; the caller handles empty batches
            raise BeamscoreError("a fixed-batch signature was called with no rows")
        return {key: tf.concat([p[key] for p in pieces], axis=0) for key in pieces[0]}


def _rows(key: str, value: Any, rows: int, batch: int) -> Any:
    """The first ``rows`` rows of one output of a padded call; an output that is not one row per
    fed row cannot be sliced back to the real rows."""
    if tuple(value.shape[:1]) != (batch,):
        raise OutputShapeError(
            f"output {key!r} has shape {tuple(value.shape)} for a call of {batch} rows, not one row per input row"
        )
    return value[:rows]


class BatchError(BeamscoreError):
    """A failure of the whole call, not of a row: bisection must not isolate rows (it would
    only repeat the failure, or stitch together results of different shapes); every row of
    the call fails."""


class ModelFailed(BeamscoreError):
    """The model, not a row, failed: every row of the first batches failed, or a shape rule
    cannot be met. The job stops with this one line instead of dead-lettering every row."""


class OutputShapeError(BatchError):
    """An output whose first dimension is not the batch's row count: the whole batch failed
    (a one-row call would pass)."""


class XlaCompileError(BatchError):
    """``--jit-compile``: XLA cannot compile the signature (an op with no XLA kernel). Every
    call fails the same way; bisecting each batch down to single rows recompiled and failed
    about ``2 * rows`` times per batch."""


#: What TensorFlow says when an XLA-compiled function holds an op XLA cannot compile.
_XLA_UNSUPPORTED = "Detected unsupported operations when trying to compile"
_XLA_OP = re.compile(r"No registered '([^']+)' OpKernel for (\w+)")


def _xla_reason(message: str) -> str:
    """``--jit-compile: XLA cannot compile op 'AsString' (XLA_CPU_JIT) ...`` from TensorFlow's line."""
    found = _XLA_OP.search(message)
    what = f"op {found[1]!r} ({found[2]})" if found else "this signature"
    return f"--jit-compile: XLA cannot compile {what}; score without --jit-compile (TensorFlow: {message[:300]})"
