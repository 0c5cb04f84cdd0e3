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
import functools
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

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
from beamscore.transforms.run_signature import ElementScorer, Scored, _empty, record_load, take_loads
from beamscore.transforms.shared_models import acquire, acquire_loaded
from beamscore.wording import speaking

__all__ = ["ModelRows", "NamedModel", "RunModelsFn", "RunSignatures", "RunSignaturesFn", "column_name", "combine"]

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
    ``loads`` of it in this process first told by these rows; routed models
    (:mod:`beamscore.transforms.route_models`) also count the rows routed to them
    (``rows_in``) and scored (``rows_out``)."""

    rows_failed: int = 0
    rows_held: int = 0
    loads: int = 0
    rows_in: int = 0
    rows_out: int = 0

    def plus(self, other: ModelRows) -> ModelRows:
        return ModelRows(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))

    def to_json(self) -> dict[str, int]:
        found = dataclasses.asdict(self)
        if not (self.rows_in or self.rows_out):  # every model sees every row: the job's counts
            del found["rows_in"], found["rows_out"]
        return found


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
        batch_multiple: int | None = None,
    ) -> None:
        """``batch_multiple`` (``--batch-multiple``): every model's calls are padded to a
        multiple of this many rows, as one model's are; a model that fails on a row alone but
        scores it in a bigger batch finds its own multiple
        (:meth:`~beamscore.model.runner.SignatureRunner.probe_multiple`)."""
        self.models = list(models)
        self.keep = list(keep)
        self.reject_nan = reject_nan
        self.keep_types = dict(keep_types or {})
        self.batch_multiple = batch_multiple
        self.front = wording.current()
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
        for model in self.models:
            loaded, scorer = open_scorer(model, self._loaded, self.reject_nan, self.batch_multiple)
            self._held.append(loaded)
            if self._device is None:
                self._device = worker_device(scorer.fn)
            self._scorers.append(scorer)
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
        stages: dict[str, float] = {}
        scored = [scorer.score_table(table, batch.where, stages) for scorer in self._scorers]
        encoding = time.perf_counter()
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
        written = pa.table(out)
        encode = time.perf_counter() - encoding
        seconds = time.perf_counter() - start
        self.batches.inc()
        self.batch_rows.update(table.num_rows)
        self.batch_ms.update(int(seconds * 1000))
        loads = take_loads()
        if loads:
            self.model_loads.inc(len(loads))
        return batch.scored(
            written,
            good,
            dead,
            seconds=seconds,
            decode_seconds=stages.get("decode", 0.0),
            encode_seconds=encode,
            worker=self._worker,
            model_loads=loads,
            device=self._device,
            models=tuple(counts),
        )


def named_models(plan: Any) -> list[NamedModel]:
    """The :class:`NamedModel` s of a planned job of several models."""
    return [NamedModel(m.name, m.spec, m.signature, m.bindings, m.outputs) for m in plan.models]


def open_scorer(
    model: NamedModel, loads: dict[str, int], reject_nan: bool, multiple: int | None
) -> tuple[LoadedModel, ElementScorer]:
    """``model``'s shared copy in this process (one, whichever steps use it) and a scorer of
    its signature; a fresh load is counted in ``loads`` under the model's name and recorded
    for the unit's receipt."""
    loaded, fresh = acquire_loaded(model.spec, load_model)
    if fresh:
        loads[model.name] = loads.get(model.name, 0) + 1
        record_load(loaded.load_seconds)
    fn = loaded.signature(model.signature.key)
    scorer = ElementScorer(
        fn, model.signature, model.bindings, model.outputs, reject_nan=reject_nan, keep=[], multiple=multiple
    )
    return loaded, scorer


class RunSignaturesFn(beam.DoFn):
    """Elements (tables, record batches, numpy column dicts, row lists; alone or keyed) ->
    the same kind with every model's outputs added as ``NAME__output``: each element is
    unpacked once and scored by each model in turn. A row some model cannot score is held
    back (its dead letter names each model that failed it), as in the CLI."""

    def __init__(
        self,
        models: Sequence[NamedModel],
        keep: Sequence[str] | None,
        options: Mapping[str, Mapping[str, Any]],
        reject_nan: bool = False,
        batch_size: int | None = None,
        batch_multiple: int | None = None,
    ) -> None:
        self.models = list(models)
        self.keep = None if keep is None else list(keep)
        self.options = {name: dict(o) for name, o in options.items()}
        self.reject_nan = reject_nan
        self.batch_size = batch_size
        self.batch_multiple = batch_multiple
        self.dead_letter_output = False
        self.front = wording.current()
        self._scorers: list[ElementScorer] = []
        self._held: list[LoadedModel] = []

    def setup(self) -> None:
        self._scorers, self._held = [], []
        for model in self.models:
            spec = model.spec
            loaded = acquire(spec, functools.partial(load_model, spec))
            self._held.append(loaded)
            own = self.options.get(model.name, {})
            self._scorers.append(
                ElementScorer(
                    loaded.signature(model.signature.key),
                    model.signature,
                    None,
                    model.outputs,
                    own.get("input_map"),
                    bool(own.get("cast", False)),
                    self.reject_nan,
                    self.batch_size,
                    [],  # names are checked against the NAME__output columns here (self._columns)
                    self.batch_multiple,
                )
            )
        # the keep columns and the prefixed predictions, checked as one scorer checks its own
        self._columns = ElementScorer.__new__(ElementScorer)
        self._columns.keep = self.keep
        self._columns.outputs = [
            column_name(m.name, k) for m, sc in zip(self.models, self._scorers, strict=True) for k in sc.outputs
        ]

    def process(self, element: Any) -> Iterator[Any]:
        from beamscore.transforms.elements import BadElement, pack, unpack
        from beamscore.transforms.run_signature import DEAD_LETTERS, SCORED

        with speaking(self.front):
            try:
                el = unpack(element)
            except BadElement as exc:
                if not self.dead_letter_output:
                    raise
                dead = dead_letters.for_element(exc.where, str(exc).removeprefix(f"{exc.where}: "))
                yield DEAD_LETTERS, ((exc.key, dead) if exc.keyed else dead)
                return
            names = [m.name for m in self.models]
            refused = self._columns._refuse(el)
            if refused:  # a keep column the element lacks, a prediction named like a column
                scored = [scorer._all_rejected(el.num_rows, refused, "validate") for scorer in self._scorers[:1]]
                scored += [Scored(s._empty(), np.arange(0), []) for s in self._scorers[1:]]
                names = ["", *names[1:]]
            else:
                scored = [scorer.score(el) for scorer in self._scorers]
                lacking = self._columns._rows_lacking_keep(el)
                if lacking:
                    index = np.fromiter(lacking, np.int64, len(lacking))
                    scored.append(Scored({}, np.arange(0), [(index, list(lacking.values()), "validate")]))
                    names = [*names, ""]
            good, outputs, failed = combine(names, scored, el.num_rows)
            outputs = outputs[: len(self.models)]
            if failed:
                index = np.asarray(sorted(failed), dtype=np.int64)
                messages = [
                    "; ".join(f"model {m!r}: {text}" if m else text for m, _, text in failed[i]) for i in index.tolist()
                ]
                rows = el.table if el.table is not None else el.original
                dead = dead_letters.from_element_rows(el.where, rows, index, messages, failed[int(index[0])][0][1])
                if not self.dead_letter_output:
                    raise BeamscoreError(
                        f"{el.where}: row {int(index[0])}: {messages[0]} ({len(index)} of {el.num_rows} rows failed; "
                        "RunSignatures(...).with_exception_handling() sends bad rows to a dead-letter output)"
                    )
                yield DEAD_LETTERS, ((el.key, dead) if el.keyed else dead)
            predictions: dict[str, np.ndarray] = {}
            variable: set[str] = set()
            for model, scorer, values in zip(self.models, self._scorers, outputs, strict=True):
                for key in scorer.outputs:
                    predictions[column_name(model.name, key)] = values[key]
                    if key in scorer.variable_outputs:
                        variable.add(column_name(model.name, key))
            packed = pack(el, good, predictions, self.keep, variable)
            yield (SCORED, packed) if self.dead_letter_output else packed


class RunSignatures(beam.PTransform):
    """Several models over the same elements, in one step: ``models`` maps each model's name
    to a SavedModel path, or to a dict with ``path`` and any of ``signature``, ``tag_set``,
    ``version``, ``outputs``, ``input_map``, ``cast``. Each element is unpacked once and
    scored by every model in turn; each model's outputs come back as columns ``NAME__output``
    (the CLI's layout), after the kept columns (all, or ``keep``). A row that some model cannot
    score fails the pipeline with its message, or with :meth:`with_exception_handling` goes
    to the dead-letter output, its ``error`` naming each model that failed it
    (``model 'challenger': ...``), and is left out of the scored output (so every scored
    row holds every model's outputs). Each model is loaded once per worker process, also
    when another step of the pipeline uses it (:mod:`beamscore.transforms.shared_models`).
    Elements are those of :class:`~beamscore.transforms.run_signature.RunSignature` without
    ``per_row`` (serialized Examples are parsed by each model against its own signature).
    ``batch_multiple`` pads every model's calls to a multiple of it, as ``--batch-multiple``."""

    def __init__(
        self,
        models: Mapping[str, str | Mapping[str, Any]],
        *,
        keep: Sequence[str] | None = None,
        reject_nan: bool = False,
        batch_size: int | None = None,
        batch_multiple: int | None = None,
    ) -> None:
        super().__init__()
        from beamscore.config import MODEL_NAME
        from beamscore.model.loader import resolve_signature
        from beamscore.transforms.run_signature import check_arguments, check_count, check_names

        with speaking(wording.BEAM):
            if not isinstance(models, Mapping) or not models:
                raise BeamscoreError(f"models must be a dict of NAME to a model path or options, got {models!r}")
            check_names("keep", keep)
            check_count("batch_size", batch_size, optional=True)
            check_count("batch_multiple", batch_multiple, optional=True)
            found, options = [], {}
            allowed = {"path", "signature", "tag_set", "version", "outputs", "input_map", "cast"}
            for name, given in models.items():
                if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or SEP in name:
                    raise BeamscoreError(
                        f"model name {name!r}: a letter then letters, digits or single underscores (it prefixes "
                        "the model's columns as NAME__output)"
                    )
                own: dict[str, Any] = {"path": given} if isinstance(given, str) else dict(given)
                unknown = sorted(set(own) - allowed)
                if unknown or not isinstance(own.get("path"), str):
                    raise BeamscoreError(
                        f"models[{name!r}]: give a path, or a dict with 'path' and any of "
                        f"{', '.join(sorted(allowed - {'path'}))}" + (f" (unknown: {unknown[0]!r})" if unknown else "")
                    )
                outputs = list(own.get("outputs") or ())
                check_names("outputs", outputs)
                spec, sig = resolve_signature(
                    own["path"],
                    own.get("signature", "serving_default"),
                    own.get("tag_set", "serve"),
                    own.get("version"),
                    outputs=outputs,
                )
                check_arguments(sig, outputs, None, own.get("input_map"))
                found.append(NamedModel(name, spec, sig, {}, outputs or sorted(sig.outputs)))
                options[name] = {"input_map": own.get("input_map"), "cast": own.get("cast", False)}
            columns = [column_name(m.name, k) for m in found for k in m.outputs]
            clash = sorted(set(keep or ()) & set(columns))
            if clash:
                raise BeamscoreError(f"keep={list(keep or ())!r} names {clash[0]!r}, which is also a model's column")
            self.fn = RunSignaturesFn(found, keep, options, reject_nan, batch_size, batch_multiple)

    def with_exception_handling(self) -> Any:
        """A copy whose output is ``(scored, dead_letters)``, as ``RunSignature``'s (typed
        ``Any`` for the same reason: two-name unpacking checks clean in mypy and pyright)."""
        import copy

        clone = copy.copy(self)
        clone.fn = copy.copy(self.fn)
        clone.fn.dead_letter_output = True
        return clone

    def expand(self, pcoll: beam.PCollection) -> Any:
        from beamscore.transforms.run_signature import DEAD_LETTERS, SCORED, _tagged

        results = pcoll | "Score" >> beam.ParDo(self.fn)
        if not self.fn.dead_letter_output:
            return results
        return (
            results | "Scored" >> beam.FlatMap(_tagged, SCORED),
            results | "DeadLetters" >> beam.FlatMap(_tagged, DEAD_LETTERS),
        )
