"""``RoutedModelsFn``: each row scored by the one model its ``--route-by`` value names.

Per-segment models (a model per country, per tenant): every work-unit batch is read once,
its rows grouped by the value of the route column, each group scored by the model of that
name (a model named ``default`` takes the rows whose value names none; without one, such a
row is a dead letter saying so), and the predictions put back in input order. The models
write the same outputs (checked on the launcher), so the output has the columns of one
model. At most ``max_models`` models are held at once by a DoFn (the least recently used
is released first), as Beam's ``max_models_per_worker_hint``.

Counts are exact for each model: the rows routed to it (``rows_in``), scored (``rows_out``)
and failed (``rows_failed``), in the manifest's ``models``; the rows no model takes are the
job's dead letters and no model's.
"""

from __future__ import annotations

import collections
import gc
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beamscore import wording
from beamscore.doctor import worker_device
from beamscore.errors import BeamscoreError
from beamscore.io.arrow import from_numpy, take_rows
from beamscore.io.keep import cast_kept, keep_type
from beamscore.model.loader import LoadedModel
from beamscore.transforms import dead_letters
from beamscore.transforms.batch import Batch
from beamscore.transforms.run_models import ModelRows, NamedModel, open_scorer
from beamscore.transforms.run_signature import ElementScorer, _empty, take_loads
from beamscore.wording import speaking

__all__ = ["DEFAULT_MODEL", "RoutedModelsFn", "route_key"]

#: the model that takes the rows whose route value names no model
DEFAULT_MODEL = "default"


_FREEZE_LOCK = threading.Lock()
#: bounded routed DoFns set up and not torn down in this process (see :func:`freeze_collector`)
_FROZEN = 0


def freeze_collector() -> None:
    """Make the garbage collection on each release cheap: the first bounded routed DoFn of
    the process collects once, then moves every object alive (TensorFlow's and Beam's
    modules, about 450,000 of them) into the collector's permanent generation
    (``gc.freeze``), so that a later ``gc.collect()`` looks only at what came after: the
    models loaded since, the batches. Ten 37 MiB models reloaded 47 times: 0.3 s a release
    without it, a few milliseconds with it (docs/performance.md). Objects frozen
    here are freed by reference counting as ever; only cyclic garbage among them waits for
    :func:`thaw_collector`, which the last such DoFn's teardown calls."""
    global _FROZEN
    with _FREEZE_LOCK:
        if _FROZEN == 0:
            gc.collect()
            gc.freeze()
        _FROZEN += 1


def thaw_collector() -> None:
    """Undo :func:`freeze_collector` once the last bounded routed DoFn is torn down."""
    global _FROZEN
    with _FREEZE_LOCK:
        if _FROZEN == 0:
            return
        _FROZEN -= 1
        if _FROZEN == 0:
            gc.unfreeze()


def route_key(value: Any) -> str | None:
    """A route column's value as the model name it stands for (``None`` for a null)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def route_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str | None]]:
    """Each row's index into the route column's distinct values, and those values as route
    keys (:func:`route_key`), the last one ``None`` for the null rows' index ``-1``: one
    Python call per distinct value, not per row."""
    array = column.combine_chunks()
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, [*(route_key(v) for v in encoded.dictionary.to_pylist()), None]


class RoutedModelsFn(beam.DoFn):
    """Scores each batch's rows with the model their ``route_by`` value names."""

    def __init__(
        self,
        models: Sequence[NamedModel],
        route_by: str,
        keep: Sequence[str] = (),
        reject_nan: bool = False,
        keep_types: Mapping[str, pa.DataType] | None = None,
        max_models: int | None = None,
        batch_multiple: int | None = None,
    ) -> None:
        """``batch_multiple`` (``--batch-multiple``): each model's calls padded to a multiple
        of this many rows; a multiple a model finds for itself
        (:meth:`~beamscore.model.runner.SignatureRunner.probe_multiple`) is kept for it when
        it is released and loaded again."""
        self.models = {m.name: m for m in models}
        self.batch_multiple = batch_multiple
        #: name -> the multiple a released model's calls were padded to (found or given)
        self._multiples: dict[str, int] = {}
        self.outputs = list(models[0].outputs)
        self.route_by = route_by
        self.keep = list(keep)
        self.reject_nan = reject_nan
        self.keep_types = dict(keep_types or {})
        self.max_models = max_models
        self.front = wording.current()
        #: name -> (loaded model, scorer), the most recently used last
        self._open: collections.OrderedDict[str, tuple[LoadedModel, ElementScorer]] = collections.OrderedDict()
        self._loads: dict[str, int] = {}
        self._worker: str | None = None
        self._device: str | None = None
        self._frozen = False  # whether setup froze the collector's view (freeze_collector)
        self.batches = beam.metrics.Metrics.counter("beamscore", "batches")
        self.model_loads = beam.metrics.Metrics.counter("beamscore", "model_loads")
        self.released = beam.metrics.Metrics.counter("beamscore", "models_released")

    def setup(self) -> None:
        self._open = collections.OrderedDict()
        self._worker = f"{socket.gethostname()}:{os.getpid()}"
        self._frozen = bool(self.max_models)
        if self._frozen:  # models will be released: make the collection at each release cheap
            freeze_collector()

    def teardown(self) -> None:
        self._open = collections.OrderedDict()
        if self._frozen:
            self._frozen = False
            thaw_collector()

    def _scorer(self, name: str) -> ElementScorer:
        """The scorer of model ``name``, loaded when this DoFn holds none (the least recently
        used one released first when ``max_models`` are held)."""
        if name in self._open:
            self._open.move_to_end(name)
            return self._open[name][1]
        while self.max_models and len(self._open) >= self.max_models:
            released, held = self._open.popitem(last=False)  # Shared holds it weakly: gone once no step holds it
            runner = held[1].runner
            if runner is not None:  # the multiple its calls were padded to, given or found
                self._multiples[released] = runner.multiple
            del held, runner  # nothing here holds the model while the next one loads
            self.released.inc()
            # The model object goes at once, but its functions' graphs are reference cycles that
            # capture the variables' handles, so the weights stay until a full collection, which
            # allocation counts seldom start: ten 37 MiB models reloaded 47 times peaked at
            # 1,991 MiB with at most 3 held, against 1,276 MiB holding all ten (1,094 MiB with
            # this). Collect now, before the next model loads: cheap, as setup froze what was
            # there before (freeze_collector). Beam's Shared keeps the last model acquired
            # alive, so with K = 1 the released one goes at the next release instead.
            gc.collect()
        model = self.models[name]
        multiple = self._multiples.get(name, self.batch_multiple)
        loaded, scorer = open_scorer(model, self._loads, self.reject_nan, multiple)
        if self._device is None:
            self._device = worker_device(scorer.fn)
        self._open[name] = (loaded, scorer)
        return scorer

    def process(self, batch: Batch) -> Iterator[Batch]:
        with speaking(self.front):
            yield self._process_batch(batch)

    def _groups(self, codes: np.ndarray, keys: list[str | None]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``({model: its rows}, rows no model takes)``, the models in order of their first
        row; from each distinct value's model, with no Python per row."""
        default = DEFAULT_MODEL if DEFAULT_MODEL in self.models else None
        names = [key if key in self.models else default for key in keys]
        order = list(dict.fromkeys(n for n in names if n is not None))
        slot = np.asarray([order.index(n) if n is not None else -1 for n in names], dtype=np.int64)[codes]
        routed = slot >= 0
        present, first = np.unique(slot[routed], return_index=True)
        groups = {order[k]: np.flatnonzero(slot == k) for k in present[np.argsort(first)]}
        return groups, np.flatnonzero(~routed)

    def _keep_type(self, name: str, table: pa.Table) -> pa.DataType:
        if name not in self.keep_types and name in table.column_names:
            self.keep_types[name] = keep_type(table.schema.field(name).type)
        return self.keep_types.get(name, pa.null())

    def _process_batch(self, batch: Batch) -> Batch:
        start = time.perf_counter()
        table = batch.table
        positions = batch.row_positions()
        codes, keys = route_codes(table.column(self.route_by))
        groups, unrouted = self._groups(codes, keys)
        dead = [batch.failed]
        if len(unrouted):
            known = ", ".join(sorted(self.models))
            messages = [
                f"column {self.route_by!r} is {keys[c]!r}, which names no model (models: {known}; a model named "
                f"{DEFAULT_MODEL!r} takes the others)"
                for c in codes[unrouted]
            ]
            dead.append(
                dead_letters.from_table_rows(batch.unit, table, unrouted, positions[unrouted], messages, "validate")
            )
        good_parts: list[np.ndarray] = []
        output_parts: list[dict[str, np.ndarray]] = []
        variable: set[str] = set()
        counts: dict[str, ModelRows] = {}
        stages: dict[str, float] = {}
        for name, index in groups.items():  # each model once per batch, in order of first row
            scorer = self._scorer(name)
            variable |= scorer.variable_outputs
            part = take_rows(table, index)
            scored = scorer.score_table(part, batch.where, stages)
            for rows, errors, stage in scored.rejected:
                at = index[rows]
                messages = [f"model {name!r}: {e}" for e in errors]
                dead.append(dead_letters.from_table_rows(batch.unit, table, at, positions[at], messages, stage))
            good_parts.append(index[scored.good])
            output_parts.append(scored.outputs)
            counts[name] = ModelRows(scored.rows_failed, 0, 0, len(index), len(scored.good))
        encoding = time.perf_counter()
        if good_parts:
            good = np.concatenate(good_parts)
            order = np.argsort(good, kind="stable")
            good = good[order]
            merged = {k: np.concatenate([p[k] for p in output_parts])[order] for k in self.outputs}
        else:
            good = np.arange(0, dtype=np.int64)
            merged = {k: _empty(next(iter(self.models.values())).signature.outputs[k]) for k in self.outputs}
        out: dict[str, pa.Array] = {k: from_numpy(merged[k], k in variable) for k in self.outputs}
        kept = table if len(good) == table.num_rows else take_rows(table, good)
        try:
            for name in self.keep:
                out[name] = cast_kept(
                    kept[name] if name in kept.column_names else None, name, self._keep_type(name, table), len(good)
                )
        except BeamscoreError as exc:
            dead.append(
                dead_letters.from_table_rows(
                    batch.unit, table, good, positions[good], [str(exc)] * len(good), "validate"
                )
            )
            good = good[:0]
            counts = {n: ModelRows(c.rows_failed + c.rows_out, 0, c.loads, c.rows_in, 0) for n, c in counts.items()}
            first = next(iter(self.models.values()))
            out = {k: from_numpy(_empty(first.signature.outputs[k]), k in variable) for k in self.outputs}
            out.update({name: pa.nulls(0, type=self._keep_type(name, table)) for name in self.keep})
        written = pa.table(out)
        encode = time.perf_counter() - encoding
        for name, loads in self._loads.items():
            counts[name] = counts.get(name, ModelRows()).plus(ModelRows(0, 0, loads))
        self._loads = {}
        seconds = time.perf_counter() - start
        self.batches.inc()
        loads_seconds = take_loads()
        if loads_seconds:
            self.model_loads.inc(len(loads_seconds))
        return batch.scored(
            written,
            good,
            dead,
            seconds=seconds,
            decode_seconds=stages.get("decode", 0.0),
            encode_seconds=encode,
            worker=self._worker,
            model_loads=loads_seconds,
            device=self._device,
            models=tuple(counts.items()),
        )
