"""``RunSignature``: batches in, batches of predictions out, one model per worker process."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils import shared

from beamscore.errors import BeamscoreError
from beamscore.io.arrow import column_spec, from_numpy, to_numpy
from beamscore.model.binding import InputBinding, bind_inputs, numpy_dtype
from beamscore.model.inspect import SignatureInfo, inspect_model
from beamscore.model.loader import LoadedModel, ModelSpec, load_model
from beamscore.model.runner import SignatureRunner
from beamscore.transforms.batch import Batch

__all__ = ["RunSignature", "RunSignatureFn"]


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
    ) -> None:
        self.model = model
        self.signature = signature
        self.bindings = dict(bindings) if bindings is not None else None
        self.outputs = list(outputs) or sorted(signature.outputs)
        self.keep = list(keep)
        self.input_map = dict(input_map or {})
        self.cast = cast
        self._fn = None
        self._shared = shared.Shared()
        self._runner: SignatureRunner | None = None
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
        if loaded_here:
            self.model_loads.inc()
            self.load_ms.update(int(model.load_seconds * 1000))
        self._fn = model.signature(self.signature.key)
        if self.bindings is not None:
            self._runner = SignatureRunner(self._fn, self.bindings, self.outputs)

    def _runner_for(self, batch: Batch) -> SignatureRunner:
        if self._runner is None:
            specs = {f.name: column_spec(f.name, f.type) for f in batch.table.schema}
            bindings = bind_inputs(self.signature, specs, self.input_map, self.cast, where=batch.unit.path)
            self._runner = SignatureRunner(self._fn, bindings, self.outputs)
        return self._runner

    def process(self, batch: Batch) -> Iterator[Batch]:
        start = time.perf_counter()
        table = batch.table
        runner = self._runner_for(batch)
        if table.num_rows:
            columns = {b.column: to_numpy(table[b.column], b.column, batch.where) for b in runner.bindings.values()}
            results = runner(columns, batch.where)
            n = table.num_rows
            for key, values in results.items():
                if values.shape[:1] != (n,):
                    raise BeamscoreError(
                        f"{batch.where}: output {key!r} has shape {values.shape}, not one row per input row "
                        f"({n}); use --outputs to leave it out"
                    )
        else:
            results = {key: _empty(self.signature.outputs[key]) for key in self.outputs}
        out = {key: from_numpy(values) for key, values in results.items()}
        for name in self.keep:
            out[name] = table[name]
        self.batches.inc()
        self.batch_rows.update(table.num_rows)
        self.batch_ms.update(int((time.perf_counter() - start) * 1000))
        yield dataclasses.replace(batch, table=pa.table(out))


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
    the ``keep`` columns of the input unchanged.
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
    ) -> None:
        super().__init__()
        info = inspect_model(model, version)
        sig = info.signature(signature, tag_set)
        spec = ModelSpec(path=info.path, tags=tag_set, fingerprint=info.fingerprint)
        self.fn = RunSignatureFn(spec, sig, bindings, outputs, keep, input_map, cast)

    def expand(self, batches):
        return batches | "Score" >> beam.ParDo(self.fn)
