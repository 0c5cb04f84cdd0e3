"""``RunModelsFn``: several models over one read (champion and challenger side by side).

Each work-unit :class:`~beamscore.transforms.batch.Batch` is read and decoded once and
scored by every model of the job in turn, in one DoFn (fused: no second read, no join);
each model's outputs land under its name in the same output row, as flat columns
``NAME__output`` (:func:`~beamscore.pipelines.plan.column_name`), which pandas, polars,
duckdb, pyarrow, Spark and the ``.npy`` sink (one file per column) all address by name.

A row that one model cannot score (a value its inputs refuse, or one that makes it raise)
is **held back for every model**: it is written to ``_errors/`` once, its ``error`` naming
each model that failed it (``model 'challenger': ...``), and no output row is written for
it, so every written row holds every model's outputs and the job's count stays
``rows_in == rows_out + rows_failed``. Each model's own count is exact too:
``rows_in == rows_out + rows_failed[model] + rows_held[model]``, where ``rows_failed``
are the rows that model could not score (rows no model could read included) and
``rows_held`` the rows it scored that another model failed (see :class:`ModelRows`).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils import shared

from beamscore import wording
from beamscore.doctor import worker_device
from beamscore.errors import BeamscoreError
from beamscore.io.arrow import from_numpy, take_rows
from beamscore.io.keep import cast_kept, keep_type
from beamscore.model.binding import InputBinding
from beamscore.model.inspect import SignatureInfo
from beamscore.model.loader import LoadedModel, ModelSpec, load_model
from beamscore.transforms import dead_letters
from beamscore.transforms.batch import Batch
from beamscore.transforms.run_signature import _LOADS_LOCK, _UNRECORDED_LOADS, ElementScorer, Scored, _empty
from beamscore.wording import speaking

__all__ = ["ModelRows", "NamedModel", "RunModelsFn", "column_name", "combine"]

#: between a model's name and its output's name in the output column
SEP = "__"


def column_name(model: str, output: str) -> str:
    """``model__output`` (``output`` itself for the unnamed model of a one-model job)."""
    return f"{model}{SEP}{output}" if model else output


@dataclasses.dataclass(frozen=True)
class NamedModel:
    """One model of a several-model step: its name, how to load it, its signature, the
    bindings of its inputs to columns and the signature outputs it writes."""

    name: str
    spec: ModelSpec
    signature: SignatureInfo
    bindings: Mapping[str, InputBinding]
    outputs: Sequence[str]


@dataclasses.dataclass(frozen=True)
class ModelRows:
    """One model's count over some rows: ``rows_failed`` it could not score (rows no model
    could read included), ``rows_held`` it scored but another model failed (not written),
    ``loads`` of it in this process first told by these rows."""

    rows_failed: int = 0
    rows_held: int = 0
    loads: int = 0

    def plus(self, other: ModelRows) -> ModelRows:
        return ModelRows(
            self.rows_failed + other.rows_failed, self.rows_held + other.rows_held, self.loads + other.loads
        )

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def combine(
    names: Sequence[str], scored: Sequence[Scored], n: int
) -> tuple[np.ndarray, list[dict[str, np.ndarray]], dict[int, list[tuple[str, str, str]]]]:
    """Join the models' results over one table of ``n`` rows: the rows every model scored
    (``good``, in order), each model's outputs for exactly those rows, and for every other
    row the ``(model, stage, message)`` of each model that failed it."""
    failed: dict[int, list[tuple[str, str, str]]] = {}
    for name, result in zip(names, scored, strict=True):
        for index, messages, stage in result.rejected:
            for i, message in zip(np.asarray(index).tolist(), messages, strict=True):
                failed.setdefault(int(i), []).append((name, stage, message))
    keep = np.ones(n, dtype=bool)
    if failed:
        keep[np.fromiter(failed, np.int64, len(failed))] = False
    good = np.flatnonzero(keep)
    outputs = []
    for result in scored:
        if len(result.good) == len(good):
            outputs.append(result.outputs)
            continue
        mine = keep[result.good]  # of the rows this model scored, those no model failed
        outputs.append({k: v[mine] for k, v in result.outputs.items()})
    return good, outputs, failed


class RunModelsFn(beam.DoFn):
    """Scores each work-unit batch with every model (a ``Shared`` copy of each per process)
    and writes their outputs side by side (``NAME__output``), then the ``keep`` columns."""

    def __init__(
        self,
        models: Sequence[NamedModel],
        keep: Sequence[str] = (),
        reject_nan: bool = False,
        keep_types: Mapping[str, pa.DataType] | None = None,
    ) -> None:
        self.models = list(models)
        self.keep = list(keep)
        self.reject_nan = reject_nan
        self.keep_types = dict(keep_types or {})
        self.front = wording.current()
        self._shared = [shared.Shared() for _ in self.models]
        self._scorers: list[ElementScorer] = []
        self._held: list[LoadedModel] = []
        self._loaded: dict[str, int] = {}
        self._worker: str | None = None
        self._device: str | None = None
        self.batches = beam.metrics.Metrics.counter("beamscore", "batches")
        self.model_loads = beam.metrics.Metrics.counter("beamscore", "model_loads")
        self.batch_rows = beam.metrics.Metrics.distribution("beamscore", "batch_rows")
        self.batch_ms = beam.metrics.Metrics.distribution("beamscore", "batch_latency_ms")

    def setup(self) -> None:
        self._scorers = []
        self._held = []  # Shared keeps a weak reference: the DoFn holds each model while it lives
        for model, handle in zip(self.models, self._shared, strict=True):
            loaded_here: list[LoadedModel] = []

            def load(spec: ModelSpec = model.spec, into: list[LoadedModel] = loaded_here) -> LoadedModel:
                into.append(load_model(spec))
                return into[-1]

            loaded = handle.acquire(load, tag=model.spec.key)
            self._held.append(loaded)
            if loaded_here:
                self._loaded[model.name] = self._loaded.get(model.name, 0) + 1
                with _LOADS_LOCK:
                    _UNRECORDED_LOADS.append(loaded.load_seconds)
            fn = loaded.signature(model.signature.key)
            if self._device is None:
                self._device = worker_device(fn)
            self._scorers.append(
                ElementScorer(fn, model.signature, model.bindings, model.outputs, reject_nan=self.reject_nan, keep=[])
            )
        self._worker = f"{socket.gethostname()}:{os.getpid()}"

    def process(self, batch: Batch) -> Iterator[Batch]:
        with speaking(self.front):
            yield self._process_batch(batch)

    def _keep_type(self, name: str, table: pa.Table) -> pa.DataType:
        if name not in self.keep_types and name in table.column_names:
            self.keep_types[name] = keep_type(table.schema.field(name).type)
        return self.keep_types.get(name, pa.null())

    def _process_batch(self, batch: Batch) -> Batch:
        start = time.perf_counter()
        table = batch.table
        positions = batch.row_positions()
        unread = batch.failed_rows  # rows lost before scoring: no model scored them
        names = [m.name for m in self.models]
        scored = [scorer.score_table(table, batch.where) for scorer in self._scorers]
        good, outputs, failed = combine(names, scored, table.num_rows)
        dead = [batch.failed]
        if failed:
            index = np.asarray(sorted(failed), dtype=np.int64)
            messages = ["; ".join(f"model {m!r}: {text}" for m, _, text in failed[i]) for i in index.tolist()]
            stage = [failed[i][0][1] for i in index.tolist()]
            for s in dict.fromkeys(stage):  # one table per stage (the first failing model's)
                part = index[[x == s for x in stage]]
                dead.append(
                    dead_letters.from_table_rows(
                        batch.unit,
                        table,
                        part,
                        positions[part],
                        [messages[int(np.searchsorted(index, i))] for i in part],
                        s,
                    )
                )
        counts = []
        for name, result in zip(names, scored, strict=True):
            own = result.rows_failed
            counts.append((name, ModelRows(unread + own, len(failed) - own, self._loaded.pop(name, 0))))
        out: dict[str, pa.Array] = {}
        for model, scorer, values in zip(self.models, self._scorers, outputs, strict=True):
            for key in model.outputs:
                out[column_name(model.name, key)] = from_numpy(values[key], key in scorer.variable_outputs)
        kept = table if len(good) == table.num_rows else take_rows(table, good)
        try:
            for name in self.keep:
                out[name] = cast_kept(
                    kept[name] if name in kept.column_names else None, name, self._keep_type(name, table), len(good)
                )
        except BeamscoreError as exc:  # this file's column cannot take the job's type: its rows fail
            dead.append(
                dead_letters.from_table_rows(
                    batch.unit, table, good, positions[good], [str(exc)] * len(good), "validate"
                )
            )
            counts = [(n, c.plus(ModelRows(len(good), 0, 0))) for n, c in counts]
            good = good[:0]
            out = {}
            for model, scorer in zip(self.models, self._scorers, strict=True):
                for key in model.outputs:
                    empty = _empty(model.signature.outputs[key])
                    out[column_name(model.name, key)] = from_numpy(empty, key in scorer.variable_outputs)
            out.update({name: pa.nulls(0, type=self._keep_type(name, table)) for name in self.keep})
        seconds = time.perf_counter() - start
        self.batches.inc()
        self.batch_rows.update(table.num_rows)
        self.batch_ms.update(int(seconds * 1000))
        with _LOADS_LOCK:
            loads = tuple(_UNRECORDED_LOADS)
            _UNRECORDED_LOADS.clear()
        if loads:
            self.model_loads.inc(len(loads))
        return dataclasses.replace(
            batch,
            seconds=seconds,
            worker=self._worker,
            model_loads=loads,
            table=pa.table(out),
            rows_in=batch.source_rows,
            failed=dead_letters.concat(dead),
            positions=None if len(good) == table.num_rows else positions[good],
            device=self._device,
            models=tuple(counts),
        )


def named_models(plan: Any) -> list[NamedModel]:
    """The :class:`NamedModel` s of a planned job of several models."""
    return [NamedModel(m.name, m.spec, m.signature, m.bindings, m.outputs) for m in plan.models]
