"""``RunSignature``: batches in, batches of predictions out, one model per worker process."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils import shared

from beamscore.doctor import worker_device
from beamscore.errors import BeamscoreError
from beamscore.io.arrow import column_spec, from_numpy
from beamscore.model.binding import InputBinding, bind_inputs, numpy_dtype
from beamscore.model.inspect import SignatureInfo, inspect_model
from beamscore.model.loader import LoadedModel, ModelSpec, load_model
from beamscore.model.runner import SignatureRunner
from beamscore.transforms import dead_letters
from beamscore.transforms.batch import Batch
from beamscore.transforms.validate import check_rows

__all__ = ["RunSignature", "RunSignatureFn", "call_isolating"]


class RunSignatureFn(beam.DoFn):
    """Calls the signature once per batch; the model comes from a per-process ``Shared``.

    ``bindings`` are normally made on the launcher from the input schema; when they are
    ``None`` they are made from the first batch's schema (``input_map``, ``cast``).
    """

    def __init__(
        self,
        model: ModelSpec,
        signature: SignatureInfo,
        bindings: Mapping[str, InputBinding] | None,
        outputs: Sequence[str],
        keep: Sequence[str] = (),
        input_map: Mapping[str, str] | None = None,
        cast: bool = False,
        reject_nan: bool = False,
    ) -> None:
        self.model = model
        self.signature = signature
        self.bindings = dict(bindings) if bindings is not None else None
        self.outputs = list(outputs) or sorted(signature.outputs)
        self.keep = list(keep)
        self.input_map = dict(input_map or {})
        self.cast = cast
        self.reject_nan = reject_nan
        self._fn = None
        self._shared = shared.Shared()
        self._runner: SignatureRunner | None = None
        self._unreported_load_ms: int | None = None
        self._device: str | None = None
        self.batches = beam.metrics.Metrics.counter("beamscore", "batches")
        self.model_loads = beam.metrics.Metrics.counter("beamscore", "model_loads")
        self.load_ms = beam.metrics.Metrics.distribution("beamscore", "model_load_ms")
        self.batch_rows = beam.metrics.Metrics.distribution("beamscore", "batch_rows")
        self.batch_ms = beam.metrics.Metrics.distribution("beamscore", "batch_latency_ms")

    def setup(self) -> None:
        loaded_here: list[LoadedModel] = []

        def load() -> LoadedModel:
            loaded_here.append(load_model(self.model))
            return loaded_here[-1]

        model = self._shared.acquire(load, tag=self.model.key)
        # Metrics updated in setup() are lost (no bundle is active): report in start_bundle.
        self._unreported_load_ms = int(model.load_seconds * 1000) if loaded_here else None
        self._fn = model.signature(self.signature.key)
        self._device = worker_device(self._fn)  # logged once per process, with the doctor's verdict
        if self.bindings is not None:
            self._runner = SignatureRunner(self._fn, self.bindings, self.outputs)

    def start_bundle(self) -> None:
        if self._unreported_load_ms is not None:
            self.model_loads.inc()
            self.load_ms.update(self._unreported_load_ms)
            self._unreported_load_ms = None

    def _runner_for(self, batch: Batch) -> SignatureRunner:
        if self._runner is None:
            specs = {f.name: column_spec(f.name, f.type) for f in batch.table.schema}
            bindings = bind_inputs(self.signature, specs, self.input_map, self.cast, where=batch.unit.path)
            self._runner = SignatureRunner(self._fn, bindings, self.outputs)
        return self._runner

    def process(self, batch: Batch) -> Iterator[Batch]:
        start = time.perf_counter()
        table = batch.table
        positions = batch.row_positions()
        runner = self._runner_for(batch)
        checked = check_rows(table, runner.bindings, self.reject_nan, batch.where)
        failed = [batch.failed]
        if len(checked.bad):
            failed.append(
                dead_letters.from_table_rows(
                    batch.unit, table, checked.bad, positions[checked.bad], checked.errors, "validate"
                )
            )
        good = checked.good
        results = None
        if len(good):
            results, model_bad, messages = call_isolating(runner, checked.columns, len(good))
            if model_bad:
                bad = good[model_bad]
                failed.append(dead_letters.from_table_rows(batch.unit, table, bad, positions[bad], messages, "model"))
                good = np.delete(good, model_bad)
        if results is None:
            results = {key: _empty(self.signature.outputs[key]) for key in self.outputs}
        for key, values in results.items():
            if values.shape[:1] != (len(good),):
                raise BeamscoreError(
                    f"{batch.where}: output {key!r} has shape {values.shape}, not one row per input row "
                    f"({len(good)}); use --outputs to leave it out"
                )
        out = {key: from_numpy(values) for key, values in results.items()}
        kept = table if len(good) == table.num_rows else table.take(pa.array(good, type=pa.int64()))
        for name in self.keep:
            out[name] = kept[name] if name in kept.column_names else pa.nulls(len(good))
        self.batches.inc()
        self.batch_rows.update(table.num_rows)
        self.batch_ms.update(int((time.perf_counter() - start) * 1000))
        yield dataclasses.replace(
            batch,
            table=pa.table(out),
            rows_in=batch.source_rows,
            failed=dead_letters.concat(failed),
            positions=None if len(good) == table.num_rows else positions[good],
            device=self._device,
        )


def call_isolating(
    runner: SignatureRunner, columns: dict[str, np.ndarray], n: int
) -> tuple[dict[str, np.ndarray] | None, list[int], list[str]]:
    """Call the signature on ``n`` rows; if the model raises, bisect to find the rows that
    make it raise. Returns the outputs of the other rows (in order; ``None`` if none), the
    indices of the failing rows and the model's message for each. One bad row costs about
    ``2 * log2(n)`` extra calls, and nothing at all when the model does not raise."""
    try:
        return runner(columns), [], []
    except BeamscoreError as exc:
        if n == 1:
            return None, [0], [model_message(exc)]
    mid = n // 2
    left, bad_left, msg_left = call_isolating(runner, {k: v[:mid] for k, v in columns.items()}, mid)
    right, bad_right, msg_right = call_isolating(runner, {k: v[mid:] for k, v in columns.items()}, n - mid)
    parts = [r for r in (left, right) if r is not None]
    if not parts:
        merged = None
    elif len(parts) == 1:
        merged = parts[0]
    else:
        merged = {k: np.concatenate([left[k], right[k]]) for k in left}
    return merged, bad_left + [mid + i for i in bad_right], msg_left + msg_right


_NOISE = ("Graph execution error", "Detected at node", "<stack traces", "defined at", "File ")


def model_message(exc: BaseException) -> str:
    """The informative line of a model error (TensorFlow's first lines are boilerplate)."""
    cause = exc.__cause__ or exc
    text = getattr(cause, "message", None) or str(cause)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_NOISE) and not line.startswith("[[")]
    line = (useful or lines or [type(cause).__name__])[0]
    return f"the model failed on this row: {line[:500]}"


def _empty(spec) -> np.ndarray:
    """A zero-row output array of the output's dtype and shape (unknown dims as 0)."""
    dims = tuple(d or 0 for d in (spec.shape or (None,))[1:])
    dtype = numpy_dtype(spec.dtype) or np.dtype(object)
    return np.empty((0, *dims), dtype=dtype)


class RunSignature(beam.PTransform):
    """Run batches through a named signature of a SavedModel.

    ``model`` is a SavedModel directory or versioned base dir (any fsspec URL); it is
    inspected here, on the launcher, so a wrong signature or tag set fails before the
    pipeline runs. On workers the model is loaded in ``DoFn.setup`` through
    ``apache_beam.utils.shared.Shared``: once per process however many threads run this
    step. Output batches hold one column per signature output (all, or ``outputs``), then
    the ``keep`` columns of the input unchanged. Rows that do not fit the signature (or hold
    NaN under ``reject_nan``) and rows that make the model raise leave the batch as dead
    letters (``Batch.failed``) instead of failing the job.
    """

    def __init__(
        self,
        model: str,
        signature: str = "serving_default",
        tag_set: str = "serve",
        outputs: Sequence[str] = (),
        keep: Sequence[str] = (),
        input_map: Mapping[str, str] | None = None,
        cast: bool = False,
        version: int | None = None,
        bindings: Mapping[str, InputBinding] | None = None,
        reject_nan: bool = False,
    ) -> None:
        super().__init__()
        info = inspect_model(model, version)
        sig = info.signature(signature, tag_set)
        spec = ModelSpec(path=info.path, tags=tag_set, fingerprint=info.fingerprint)
        self.fn = RunSignatureFn(spec, sig, bindings, outputs, keep, input_map, cast, reject_nan)

    def expand(self, batches):
        return batches | "Score" >> beam.ParDo(self.fn)
