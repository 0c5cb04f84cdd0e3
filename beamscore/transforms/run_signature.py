"""``RunSignature``: column batches in, the same batches with predictions out, one model per worker process."""

from __future__ import annotations

import copy
import dataclasses
import operator
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils import shared

from beamscore import wording
from beamscore.doctor import worker_device
from beamscore.errors import BeamscoreError, in_stage
from beamscore.io import structs
from beamscore.io.arrow import column_spec, from_numpy, take_rows
from beamscore.io.keep import cast_kept, keep_type
from beamscore.keywords import strict_keywords
from beamscore.model.binding import InputBinding, bind_inputs, output_dtype
from beamscore.model.inspect import SignatureInfo
from beamscore.model.loader import ModelSpec, load_model, resolve_signature, tf_message
from beamscore.model.runner import BatchError, ModelFailed, SignatureRunner
from beamscore.transforms import dead_letters
from beamscore.transforms.batch import Batch
from beamscore.transforms.elements import MISSING, BadElement, Element, pack, unpack
from beamscore.transforms.validate import check_rows
from beamscore.wording import bare, speaking

if TYPE_CHECKING:
    from beamscore.io.tfrecord import TFRecordSource

__all__ = [
    "DEAD_LETTERS",
    "SCORED",
    "ElementScorer",
    "RunSignature",
    "RunSignatureFn",
    "Scored",
    "call_isolating",
    "check_arguments",
    "check_count",
    "check_names",
    "output_schema",
    "score_table",
]

#: seconds of each model load in this process not yet reported on a scored batch (for the
#: manifest's metrics: the DoFn instance that loaded the model may not be the one scoring)
_UNRECORDED_LOADS: list[float] = []
#: load times (ms) of this process's model loads not yet counted in Beam's metrics: counted by
#: the next bundle any instance starts (the instance that loaded may never get one, when the
#: runner gives the bundle to another instance sharing the model)
_UNCOUNTED_LOAD_MS: list[int] = []
_LOADS_LOCK = threading.Lock()


def record_load(seconds: float) -> None:
    """Note a model load of this process, for the manifest's metrics (:func:`take_loads`)."""
    with _LOADS_LOCK:
        _UNRECORDED_LOADS.append(seconds)


def take_loads() -> tuple[float, ...]:
    """The seconds of this process's model loads not yet reported on a scored batch (cleared):
    the next batch any scoring DoFn of the process emits carries them to its unit's receipt."""
    with _LOADS_LOCK:
        loads = tuple(_UNRECORDED_LOADS)
        _UNRECORDED_LOADS.clear()
    return loads


#: the tag of RunSignature's dead-letter output (see :meth:`RunSignature.with_exception_handling`)
DEAD_LETTERS = "dead_letters"
#: the tag of its scored output
SCORED = "scored"


def _tagged(item: tuple[str, Any], tag: str) -> list[Any]:
    """The value of a ``(tag, value)`` pair of :class:`RunSignatureFn`'s output, if ``tag``'s."""
    return [item[1]] if item[0] == tag else []


@dataclasses.dataclass
class Scored:
    """What scoring one table gave: the predictions of the ``good`` rows (indices into the
    table, in order) and the rejected rows as ``(indices, messages, stage)`` groups."""

    outputs: dict[str, np.ndarray]
    good: np.ndarray
    rejected: list[tuple[np.ndarray, list[str], str]]

    @property
    def rows_failed(self) -> int:
        return sum(len(index) for index, _, _ in self.rejected)


def score_table(
    runner: SignatureRunner,
    table: pa.Table,
    signature: SignatureInfo,
    reject_nan: bool,
    where: str,
    batch_size: int | None = None,
    stages: dict[str, float] | None = None,
) -> Scored:
    """Validate ``table``'s bound columns, call the signature on the rows that fit (at most
    ``batch_size`` rows a call), isolate rows that make the model raise (bisection) and check
    one output row per input row. The one scoring step of every element kind and of the
    CLI's work-unit batches. ``stages["decode"]`` (when given) gains the seconds spent
    turning the Arrow columns into the signature's inputs (validation included)."""
    began = time.perf_counter()
    checked = check_rows(table, runner.bindings, reject_nan, where)
    if stages is not None:
        stages["decode"] = stages.get("decode", 0.0) + time.perf_counter() - began
    rejected = []
    if len(checked.bad):
        rejected.append((checked.bad, checked.errors, "validate"))
    good = checked.good
    results = None
    if len(good):
        results, model_bad, messages = call_in_batches(runner, checked.columns, len(good), batch_size, where)
        if every_row_failed(runner, len(good), model_bad, messages):
            raise ModelFailed(
                f"{where}: the model failed on all {len(good)} rows of the first batch, so the model is at fault, "
                f"not the rows: {messages[0].removeprefix(ROW_FAILED)}"
            )
        if model_bad:
            rejected.append((good[model_bad], messages, "model"))
            good = np.delete(good, model_bad)
    if results is None:
        results = {key: _empty(signature.outputs[key]) for key in runner.outputs}
    for key, values in results.items():
        if values.shape[:1] != (len(good),):
            raise BeamscoreError(
                f"{where}: output {key!r} has shape {values.shape}, not one row per input row "
                f"({len(good)}); leave it out with {bare('outputs')}"
            )
    return Scored(results, good, rejected)


class ElementScorer:
    """A loaded signature function and how to feed it: scores unpacked elements.

    Not a Beam object: :class:`RunSignatureFn` and
    :class:`~beamscore.inference.SignatureModelHandler` each hold one. Bindings made on the
    launcher are used as given; otherwise they are made from the first table's schema
    (``input_map``, ``cast``). Row dicts and numpy columns become the signature's columns
    here (:meth:`_score_columns`); serialized Examples are parsed against the signature
    (:meth:`_score_examples`). Every row of an element is scored or rejected alone: the
    indices of a :class:`Scored` are the element's rows."""

    def __init__(
        self,
        fn: Any,
        signature: SignatureInfo,
        bindings: Mapping[str, InputBinding] | None,
        outputs: Sequence[str],
        input_map: Mapping[str, str] | None = None,
        cast: bool = False,
        reject_nan: bool = False,
        batch_size: int | None = None,
        keep: Sequence[str] | None = None,
        multiple: int | None = None,
    ) -> None:
        self.fn = fn
        #: ``--batch-multiple``: calls padded to a multiple of this many rows
        self.multiple = multiple or 1
        self.batch_size = batch_size
        self.signature = signature
        self.outputs = list(outputs) or sorted(signature.outputs)
        #: outputs written as variable-length lists (:func:`variable_rows`), fixed once
        self.variable_outputs = {k for k in self.outputs if variable_rows(signature.outputs[k])}
        self.input_map = dict(input_map or {})
        self.cast = cast
        self.reject_nan = reject_nan
        self.keep = None if keep is None else list(keep)
        self.runner = SignatureRunner(fn, bindings, self.outputs, self.multiple) if bindings is not None else None
        self._examples: TFRecordSource | None = None
        #: the columns that feed the signature's inputs
        self.input_columns = list(dict.fromkeys(self.input_map.get(k, k) for k in signature.inputs))

    def runner_for(self, table: pa.Table, where: str) -> SignatureRunner:
        if self.runner is None:
            types = {**structs.field_types(table.schema), **{f.name: f.type for f in table.schema}}
            specs = {name: column_spec(name, t) for name, t in types.items()}
            bindings = bind_inputs(self.signature, specs, self.input_map, self.cast, where=where)
            self.runner = SignatureRunner(self.fn, bindings, self.outputs, self.multiple)
        return self.runner

    def score_table(self, table: pa.Table, where: str, stages: dict[str, float] | None = None) -> Scored:
        """Score ``table``'s rows (``stages``: see :func:`score_table`)."""
        runner = self.runner_for(table, where)
        fed = structs.with_fields(table, [b.column for b in runner.bindings.values()])  # input_map: features.x
        return score_table(runner, fed, self.signature, self.reject_nan, where, self.batch_size, stages)

    def score(self, el: Element) -> Scored:
        """Score one unpacked element, row by row accounted for: an empty element gives an
        empty result, a ``keep`` column or prediction name the element cannot take rejects
        its rows with the reason, and a bad row, record or value is rejected alone."""
        n = el.num_rows
        if n == 0:
            return self._all_rejected(0, "", "validate")
        refused = self._refuse(el)
        if refused:
            return self._all_rejected(n, refused, "validate")
        if el.kind == "examples":
            return self._score_examples(el)
        if el.kind in ("rows", "numpy"):
            return self._score_columns(el)
        return self._score_group(el.table, el.where, np.arange(n))

    def _refuse(self, el: Element) -> str | None:
        """Why no row of ``el`` can be packed back: a ``keep`` column it lacks (row dicts:
        checked per row), or a prediction named like a column it keeps."""
        if el.kind == "examples":
            return None
        columns = el.column_names()
        if self.keep is not None and el.kind != "rows":
            missing = [name for name in self.keep if name not in columns]
            if missing:
                return (
                    f"no column {missing[0]!r} to keep ({bare('keep')}={self.keep!r}); "
                    f"columns: {', '.join(columns) or 'none'}"
                )
        clash = sorted(set(columns if self.keep is None else self.keep) & set(self.outputs))
        if clash:
            return (
                f"prediction {clash[0]!r} has the name of an input column; choose {bare('outputs')}=[...] or "
                f"{bare('keep')}=[...] so that names do not collide"
            )
        return None

    def _score_group(self, table: pa.Table, where: str, index: np.ndarray) -> Scored:
        """Score ``table``, whose rows are the element's rows ``index``; indices come back as those."""
        try:
            self.runner_for(table, where)
        except BeamscoreError as exc:  # these columns cannot feed the signature
            message = str(exc).removeprefix(f"{where}: ")
            return Scored(self._empty(), index[:0], [(index, [message] * len(index), "validate")])
        scored = self.score_table(table, where)
        if len(index) == table.num_rows and index[-1] == len(index) - 1:
            return scored
        rejected = [(index[i], messages, stage) for i, messages, stage in scored.rejected]
        return Scored(scored.outputs, index[scored.good], rejected)

    def _score_columns(self, el: Element) -> Scored:
        """Row dicts and numpy columns: each input column typed from the rows themselves,
        stacked by numpy in one call when every row has one dtype and shape (the usual case);
        otherwise rows are checked one by one and each group of rows of one dtype and shape
        is scored alone, so a short, ``None``, float64 or missing value fails its row only."""
        n = el.num_rows
        stacked = {}
        for name in self.input_columns:
            values = _stacked(el.values(name))
            if values is None:
                return self._score_rows(el)
            stacked[name] = values
        bad = self._rows_lacking_keep(el)
        if bad:
            return self._score_rows(el)
        table = pa.table({name: from_numpy(values) for name, values in stacked.items()})
        return self._score_group(table, el.where, np.arange(n))

    def _rows_lacking_keep(self, el: Element) -> dict[int, str]:
        if el.kind != "rows" or not self.keep:
            return {}
        try:  # the usual case: every row has every key
            if all(k in r for k in self.keep for r in el.original):
                return {}
        except TypeError:  # a row that is not a dict: its own message below
            pass
        bad = {}
        for i, row in enumerate(el.original):
            if not isinstance(row, Mapping):
                continue
            missing = next((k for k in self.keep if k not in row), None)
            if missing is not None:
                bad[i] = f"row has no key {missing!r} to keep ({bare('keep')}={self.keep!r})"
        return bad

    def _score_rows(self, el: Element) -> Scored:
        """The per-row path of :meth:`_score_columns` (failure path, or rows of mixed types)."""
        n = el.num_rows
        bad = self._rows_lacking_keep(el)
        columns = {name: el.values(name) for name in self.input_columns}
        arrays: dict[str, list[Any]] = {name: [None] * n for name in self.input_columns}
        groups: dict[tuple, list[int]] = {}
        rows = el.original if el.kind == "rows" else None
        for i in range(n):
            if i in bad:
                continue
            if rows is not None and not isinstance(rows[i], Mapping):
                bad[i] = f"row is a {type(rows[i]).__name__}, not a dict of column values"
                continue
            key = []
            for name in self.input_columns:
                why, value = _row_value(columns[name][i], name)
                if why:
                    bad[i] = why
                    break
                arrays[name][i] = value
                key.append((value.dtype.str, value.shape))
            else:
                groups.setdefault(tuple(key), []).append(i)
        parts = [Scored(self._empty(), np.arange(0), [])]
        if bad:
            index = np.fromiter(bad, np.int64, len(bad))
            parts.append(Scored(self._empty(), np.arange(0), [(index, list(bad.values()), "validate")]))
        for members in sorted(groups.values(), key=len, reverse=True):  # the most rows bind first
            index = np.asarray(members, dtype=np.int64)
            table = pa.table({name: from_numpy(np.stack([arrays[name][i] for i in members])) for name in arrays})
            parts.append(self._score_group(table, el.where, index))
        return _merge(parts)

    def _score_examples(self, el: Element) -> Scored:
        """Serialized Examples: parsed in one call; when that fails, halves are parsed until
        each bad record is found alone (named by its index), and the others are scored."""
        records = el.original
        tables: list[pa.Table] = []
        index: list[np.ndarray] = []
        bad: dict[int, str] = {}
        start = 0
        for i, record in enumerate([*records, None]):  # runs of records between non-bytes entries
            if isinstance(record, bytes):
                continue
            if i > start:
                self._parse_isolating(records[start:i], start, el.where, tables, index, bad)
            if i < len(records):
                bad[i] = f"record {i} is a {type(record).__name__}, not bytes (a serialized tf.train.Example)"
            start = i + 1
        parts = [Scored(self._empty(), np.arange(0), [])]
        if bad:
            order = sorted(bad)
            parts.append(Scored(self._empty(), np.arange(0), [(np.asarray(order), [bad[i] for i in order], "read")]))
        if tables:
            try:
                table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            except pa.ArrowInvalid:  # halves parsed to different types: score them apart
                parts += [self._score_group(t, el.where, i) for t, i in zip(tables, index, strict=True)]
            else:
                parts.append(self._score_group(table, el.where, np.concatenate(index)))
        return _merge(parts)

    def _parse_isolating(
        self,
        records: list[bytes],
        first: int,
        where: str,
        tables: list[pa.Table],
        index: list[np.ndarray],
        bad: dict[int, str],
    ) -> None:
        """Parse ``records`` (the element's records from ``first``); on failure, bisect."""
        if self._examples is None:
            from beamscore.io.tfrecord import TFRecordSource  # only jobs fed serialized Examples

            self._examples = TFRecordSource().bind(self.signature, self.input_map)
        try:
            tables.append(self._examples.parse(records, where, first))
            index.append(np.arange(first, first + len(records)))
            return
        except BeamscoreError as exc:
            if len(records) == 1:
                bad[first] = str(exc).removeprefix(f"{where}: ")
                return
        mid = len(records) // 2
        self._parse_isolating(records[:mid], first, where, tables, index, bad)
        self._parse_isolating(records[mid:], first + mid, where, tables, index, bad)

    def _empty(self) -> dict[str, np.ndarray]:
        return {key: _empty(self.signature.outputs[key]) for key in self.outputs}

    def _all_rejected(self, n: int, message: str, stage: str) -> Scored:
        rejected = [(np.arange(n), [message] * n, stage)] if n else []
        return Scored(self._empty(), np.arange(0), rejected)


_SHAPE = operator.attrgetter("shape")
_DTYPE = operator.attrgetter("dtype")


def _stacked(values: Any) -> np.ndarray | None:
    """One column of an element as one array, when every row has one dtype and shape: numpy
    arrays stacked, Python values converted by numpy in one call; ``None`` when the rows
    differ (ragged, ``None``, missing, mixed dtypes: see :meth:`ElementScorer._score_rows`)."""
    if isinstance(values, np.ndarray):
        return None if values.dtype == object else values
    first = values[0]
    if type(first) is np.ndarray:
        # Set checks run at C speed; np.stack makes a view per row, concatenate of 1-D rows does not.
        if first.dtype.kind == "O" or set(map(type, values)) != {np.ndarray} or len(set(map(_DTYPE, values))) > 1:
            return None
        if first.ndim == 1:
            if set(map(_SHAPE, values)) != {first.shape}:  # rows of other lengths or dimensions
                return None
            return np.concatenate(values).reshape(len(values), len(first))
        try:
            return np.stack(values)
        except ValueError:  # rows of different shapes
            return None
    if any(v is MISSING or v is None or isinstance(v, np.ndarray) for v in values):
        return None
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        return None
    return None if array.dtype == object else array


def _row_value(value: Any, name: str) -> tuple[str, Any]:
    """One row's value of column ``name`` as an array, or why it cannot be one."""
    if value is MISSING:
        return f"row has no key {name!r}", None
    if value is None:
        return f"column {name!r} is null; inputs must not be null", None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return f"column {name!r} holds nested lists of different lengths", None
    if array.dtype == object:
        return f"column {name!r} holds {type(value).__name__} values that are not numbers or strings of one shape", None
    return "", array


def _merge(parts: list[Scored]) -> Scored:
    """Scored groups of one element's rows as one, in row order. Groups whose outputs differ in
    row shape (a variable-width output) cannot be one batch: the larger keeps its rows."""
    scored = [p for p in parts if len(p.good)]
    rejected = [r for p in parts for r in p.rejected]
    if not scored:
        return Scored(parts[0].outputs, np.arange(0), rejected)
    if len(scored) == 1:  # the usual case: one group, its rows already in order (no copy)
        return Scored(scored[0].outputs, scored[0].good, rejected)
    scored.sort(key=lambda p: len(p.good), reverse=True)
    keep = [scored[0]]
    for part in scored[1:]:
        if all(part.outputs[k].shape[1:] == keep[0].outputs[k].shape[1:] for k in part.outputs):
            keep.append(part)
        else:
            message = "outputs of different shapes within one element (rows of different shapes score apart)"
            rejected.append((part.good, [message] * len(part.good), "model"))
    good = np.concatenate([p.good for p in keep])
    order = np.argsort(good, kind="stable")
    outputs = {k: np.concatenate([p.outputs[k] for p in keep])[order] for k in keep[0].outputs}
    return Scored(outputs, good[order], rejected)


class RunSignatureFn(beam.DoFn):
    """Calls the signature once per batch; the model comes from a per-process ``Shared``.

    Takes the CLI's work-unit :class:`Batch` es (dead letters travel in ``Batch.failed``)
    and the elements of :mod:`beamscore.transforms.elements` (dead letters go to the
    ``dead_letters`` output when ``dead_letter_output`` is set, else the first bad row fails
    the bundle with its message).

    ``bindings`` are normally made on the launcher from the input schema; when they are
    ``None`` they are made from the first batch's schema (``input_map``, ``cast``).
    ``keep``: input columns copied to the output; ``None`` keeps every column of an element
    (and none of a work-unit batch).
    """

    def __init__(
        self,
        model: ModelSpec,
        signature: SignatureInfo,
        bindings: Mapping[str, InputBinding] | None,
        outputs: Sequence[str],
        keep: Sequence[str] | None = (),
        input_map: Mapping[str, str] | None = None,
        cast: bool = False,
        reject_nan: bool = False,
        keep_types: Mapping[str, pa.DataType] | None = None,
        dead_letter_output: bool = False,
        batch_size: int | None = None,
        batch_multiple: int | None = None,
    ) -> None:
        """``keep_types`` fix the output type of each ``keep`` column for the whole job
        (:mod:`beamscore.io.keep`); a column not listed takes the widened type of its first
        batch."""
        self.model = model
        self.signature = signature
        self.bindings = dict(bindings) if bindings is not None else None
        self.outputs = list(outputs) or sorted(signature.outputs)
        self.keep = None if keep is None else list(keep)
        self.keep_types = dict(keep_types or {})
        self.input_map = dict(input_map or {})
        self.cast = cast
        self.reject_nan = reject_nan
        self.dead_letter_output = dead_letter_output
        self.batch_size = batch_size
        self.batch_multiple = batch_multiple
        #: the front end whose words the worker's messages use (:mod:`beamscore.wording`)
        self.front = wording.current()
        self._shared = shared.Shared()
        self._scorer: ElementScorer = None  # type: ignore[assignment]  # made in setup()
        self._worker: str | None = None
        self._device: str | None = None
        self.batches = beam.metrics.Metrics.counter("beamscore", "batches")
        self.model_loads = beam.metrics.Metrics.counter("beamscore", "model_loads")
        self.load_ms = beam.metrics.Metrics.distribution("beamscore", "model_load_ms")
        self.batch_rows = beam.metrics.Metrics.distribution("beamscore", "batch_rows")
        self.batch_ms = beam.metrics.Metrics.distribution("beamscore", "batch_latency_ms")
        self.element_failed = beam.metrics.Metrics.counter("beamscore", "element_rows_failed")

    def setup(self) -> None:
        from beamscore.transforms.shared_models import acquire_loaded

        model, fresh = acquire_loaded(self.model, load_model)  # one copy per process, whichever steps use this model
        self._model = model  # Shared holds it weakly: kept while this DoFn lives
        # Metrics updated in setup() are lost (no bundle is active): report in start_bundle.
        if fresh:  # told by the next batch this process scores, whichever DoFn instance has it
            with _LOADS_LOCK:
                _UNRECORDED_LOADS.append(model.load_seconds)
                _UNCOUNTED_LOAD_MS.append(int(model.load_seconds * 1000))
        self._worker = f"{socket.gethostname()}:{os.getpid()}"
        fn = model.signature(self.signature.key)
        self._device = worker_device(fn)  # logged once per process, with the doctor's verdict
        self._scorer = ElementScorer(
            fn,
            self.signature,
            self.bindings,
            self.outputs,
            self.input_map,
            self.cast,
            self.reject_nan,
            self.batch_size,
            self.keep,
            self.batch_multiple,
        )

    def start_bundle(self) -> None:
        if _UNCOUNTED_LOAD_MS:
            with _LOADS_LOCK:
                counted = list(_UNCOUNTED_LOAD_MS)
                _UNCOUNTED_LOAD_MS.clear()
            for ms in counted:
                self.model_loads.inc()
                self.load_ms.update(ms)

    def process(self, element: Any) -> Iterator[Any]:
        with speaking(self.front):
            if isinstance(element, Batch):
                try:
                    yield self._process_batch(element)
                except BeamscoreError:
                    raise
                except Exception as exc:  # the launcher's one line names file, unit, stage
                    raise in_stage(element.unit.path, element.unit.name, "model", exc) from exc
            elif self.dead_letter_output:  # one output of (tag, value): see RunSignature.expand
                yield from self._process_element(element)
            else:
                for _, value in self._process_element(element):
                    yield value

    def _keep_type(self, name: str, table: pa.Table) -> pa.DataType:
        """The job's output type of a kept column; without a plan, the first batch's, widened."""
        if name not in self.keep_types and name in table.column_names:
            self.keep_types[name] = keep_type(table.schema.field(name).type)
        return self.keep_types.get(name, pa.null())

    def _process_batch(self, batch: Batch) -> Batch:
        start = time.perf_counter()
        table = batch.table
        positions = batch.row_positions()
        self._scorer.runner_for(table, batch.unit.path)
        stages: dict[str, float] = {}
        scored = self._scorer.score_table(table, batch.where, stages)
        encoding = time.perf_counter()
        failed = [batch.failed]
        for index, errors, stage in scored.rejected:
            failed.append(dead_letters.from_table_rows(batch.unit, table, index, positions[index], errors, stage))
        good = scored.good
        out = {key: from_numpy(values, key in self._scorer.variable_outputs) for key, values in scored.outputs.items()}
        kept = table if len(good) == table.num_rows else take_rows(table, good)
        try:
            for name in self.keep or ():
                out[name] = cast_kept(
                    kept[name] if name in kept.column_names else None, name, self._keep_type(name, table), len(good)
                )
        except BeamscoreError as exc:  # this file's column cannot take the job's type: its rows fail
            failed.append(
                dead_letters.from_table_rows(
                    batch.unit, table, good, positions[good], [str(exc)] * len(good), "validate"
                )
            )
            good = good[:0]
            specs = self.signature.outputs
            out = {key: from_numpy(_empty(specs[key]), key in self._scorer.variable_outputs) for key in self.outputs}
            out.update({name: pa.nulls(0, type=self._keep_type(name, table)) for name in self.keep or ()})
        written = pa.table(out)
        encode = time.perf_counter() - encoding
        seconds = self._measure(table.num_rows, start)
        loads = take_loads()
        return batch.scored(
            written,
            good,
            failed,
            seconds=seconds,
            decode_seconds=stages.get("decode", 0.0),
            encode_seconds=encode,
            worker=self._worker,
            model_loads=loads,
            device=self._device,
        )

    def _process_element(self, element: Any) -> Iterator[Any]:
        start = time.perf_counter()
        try:
            el = unpack(element)
        except BadElement as exc:  # None, an ndarray, a string...: one dead letter saying what was expected
            if not self.dead_letter_output:
                raise
            self.element_failed.inc()
            dead = dead_letters.for_element(exc.where, str(exc).removeprefix(f"{exc.where}: "))
            yield DEAD_LETTERS, ((exc.key, dead) if exc.keyed else dead)
            return
        scored = self._scorer.score(el)
        dead = None
        if scored.rejected:
            self.element_failed.inc(scored.rows_failed)
            rows = el.table if el.table is not None else el.original
            dead = dead_letters.concat(
                [dead_letters.from_element_rows(el.where, rows, i, e, stage) for i, e, stage in scored.rejected]
            )
            if dead is not None and len(scored.rejected) > 1:
                dead = dead.sort_by("row")  # rows in the element's order, whichever check found them
        if dead is not None:
            if not self.dead_letter_output:
                first = int(dead["row"][0].as_py())
                raise BeamscoreError(
                    f"{el.where}: row {first}: {dead['error'][0].as_py()} ({dead.num_rows} of {el.num_rows} rows "
                    "failed; RunSignature(...).with_exception_handling() sends bad rows to a dead-letter output)"
                )
            yield DEAD_LETTERS, ((el.key, dead) if el.keyed else dead)
        self._measure(el.num_rows, start)
        yield SCORED, pack(el, scored.good, scored.outputs, self.keep, self._scorer.variable_outputs)

    def _measure(self, rows: int, start: float) -> float:
        """Count one batch of ``rows`` begun at ``start``; return its seconds."""
        seconds = time.perf_counter() - start
        self.batches.inc()
        self.batch_rows.update(rows)
        self.batch_ms.update(int(seconds * 1000))
        return seconds


def call_in_batches(
    runner: SignatureRunner, columns: dict[str, np.ndarray], n: int, batch_size: int | None, where: str = "batch"
) -> tuple[dict[str, np.ndarray] | None, list[int], list[str]]:
    """:func:`call_isolating` on slices of at most ``batch_size`` rows (all ``n`` at once
    when ``None``), with the same result as one call over all rows."""
    if not batch_size or n <= batch_size:
        return call_isolating(runner, columns, n, where)
    parts, bad, messages = [], [], []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        part, part_bad, part_messages = call_isolating(
            runner, {k: v[start:stop] for k, v in columns.items()}, stop - start, where
        )
        if part is not None:
            parts.append(part)
        bad += [start + i for i in part_bad]
        messages += part_messages
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else None
    return merged, bad, messages


def call_isolating(
    runner: SignatureRunner, columns: dict[str, np.ndarray], n: int, where: str = "batch"
) -> tuple[dict[str, np.ndarray] | None, list[int], list[str]]:
    """Call the signature on ``n`` rows; if the model raises, bisect to find the rows that
    make it raise. Returns the outputs of the other rows (in order; ``None`` if none), the
    indices of the failing rows and the model's message for each. One bad row costs about
    ``2 * log2(n)`` extra calls, and nothing at all when the model does not raise."""
    try:
        return runner(columns), [], []
    except BatchError as exc:  # the batch's fault, not a row's (shape, XLA compile): never bisect it
        return None, list(range(n)), [str(exc)] * n
    except BeamscoreError as exc:
        if n == 1:
            message = model_message(exc)
            probe = getattr(runner, "probe_multiple", None)  # a plain callable (a test's fake) has none
            if probe is not None and probe(columns, message, where):  # the batch's row count, not the row
                return call_isolating(runner, columns, n, where)
            return None, [0], [message]
    mid = n // 2
    left, bad_left, msg_left = call_isolating(runner, {k: v[:mid] for k, v in columns.items()}, mid, where)
    right, bad_right, msg_right = call_isolating(runner, {k: v[mid:] for k, v in columns.items()}, n - mid, where)
    parts = [r for r in (left, right) if r is not None]
    if not parts:
        merged = None
    elif len(parts) == 1:
        merged = parts[0]
    elif left is None or right is None:  # (for type checkers: len(parts) == 2)
        raise AssertionError("unreachable")
    elif any(left[k].shape[1:] != right[k].shape[1:] for k in left):
        # Halves whose outputs differ in shape cannot be stitched into one batch: all rows fail.
        shapes = "; ".join(f"{k}: {left[k].shape} and {right[k].shape}" for k in left)
        return None, list(range(n)), [f"outputs of different shapes within one batch ({shapes})"] * n
    else:
        merged = {k: np.concatenate([left[k], right[k]]) for k in left}
    return merged, bad_left + [mid + i for i in bad_right], msg_left + msg_right


def every_row_failed(runner: Any, n: int, bad: list[int], messages: list[str]) -> bool:
    """Whether a model that has never scored a row failed on every one of ``n`` > 1 rows, each
    alone too: the model's fault, not the rows'. A whole batch failed at once (an output of
    the wrong length, :class:`~beamscore.model.runner.BatchError`) does not count: its rows
    are dead letters, as documented."""
    return (
        n > 1
        and len(bad) == n
        and not getattr(runner, "succeeded", True)
        and all(m.startswith(ROW_FAILED) for m in messages)
    )


#: how a dead letter of a row the model raised on starts
ROW_FAILED = "the model failed on this row: "


def model_message(exc: BaseException) -> str:
    """The informative line of a model error (TensorFlow's first lines are boilerplate)."""
    return f"{ROW_FAILED}{tf_message(exc.__cause__ or exc)[:500]}"


def check_names(name: str, values: Any) -> None:
    """``values`` (parameter ``name``) is ``None`` or a list of names, not one string (which
    would be read one letter at a time)."""
    if values is None:
        return
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | set | frozenset):
        raise BeamscoreError(f"{name} must be a list of names, got {values!r}; e.g. {name}=[{values!r}]")
    wrong = [v for v in values if not isinstance(v, str) or not v]
    if wrong:
        raise BeamscoreError(f"{name} must be a list of names (strings), got {wrong[0]!r} in {list(values)!r}")


def check_count(name: str, value: Any, least: int = 1, optional: bool = False) -> None:
    """``value`` (parameter ``name``) is a whole number of at least ``least`` (or ``None``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise BeamscoreError(f"{name} must be a whole number of at least {least}, got {value!r}")


def check_arguments(
    signature: SignatureInfo,
    outputs: Sequence[str],
    keep: Sequence[str] | None,
    input_map: Mapping[str, str] | None,
) -> None:
    """What the signature alone settles, when a transform or handler is made: ``input_map``
    names inputs the signature has, and columns that feed them; ``keep`` names no
    prediction (the output would hold two columns of one name). ``keep`` columns the
    elements lack are found per element (a dead letter saying which)."""
    if input_map is not None:
        if not isinstance(input_map, Mapping):
            raise BeamscoreError(f"input_map must be a dict {{input: column}}, got {input_map!r}")
        for key, column in input_map.items():
            if not isinstance(column, str) or not column:
                raise BeamscoreError(f"input_map[{key!r}] must be a column name, got {column!r}")
        unknown = sorted(set(input_map) - set(signature.inputs))
        if unknown:
            raise BeamscoreError(
                f"input_map names {', '.join(repr(u) for u in unknown)}, not inputs of signature "
                f"{signature.key!r}; its inputs: {', '.join(signature.inputs)}"
            )
    predictions = list(outputs) or sorted(signature.outputs)
    clash = sorted(set(keep or ()) & set(predictions))
    if clash:
        raise BeamscoreError(
            f"keep={list(keep or ())!r} names {clash[0]!r}, which is also a prediction; choose other outputs=[...] "
            "or keep=[...] so that names do not collide"
        )


def output_schema(
    signature: SignatureInfo, outputs: Sequence[str], keep: Sequence[str] | None, input_schema: pa.Schema
) -> pa.Schema:
    """The schema of scored tables: the kept input columns (all when ``keep`` is ``None``),
    then one column per output (variable-length lists where the declared row shape has an
    unknown dimension). An output of unknown rank has no type before it runs."""
    fields = [input_schema.field(n) for n in (input_schema.names if keep is None else keep)]
    for key in list(outputs) or sorted(signature.outputs):
        spec = signature.outputs[key]
        if spec.shape is None:
            raise BeamscoreError(
                f"output {key!r} has shape {spec.shape_str()}; its column type is known only at run time"
            )
        fields.append(pa.field(key, from_numpy(_empty(spec), variable_rows(spec)).type))
    return pa.schema(fields)


def variable_rows(spec: Any) -> bool:
    """Whether an output's declared row shape has an unknown dimension (``(-1, -1)``): its
    width may change from batch to batch, so it is written as variable-length lists."""
    return spec.shape is not None and any(d is None for d in spec.shape[1:])


def _empty(spec) -> np.ndarray:
    """A zero-row output array of the output's dtype and shape (unknown dims as 0)."""
    dims = tuple(d or 0 for d in (spec.shape or (None,))[1:])
    return np.empty((0, *dims), dtype=output_dtype(spec.dtype))


class RunSignature(beam.PTransform):
    """Tables, record batches, numpy column dicts, row lists or Example lists (each alone
    or as ``(key, element)``) -> the same kind with one column per signature output added.

    ``model`` is a SavedModel directory or versioned base dir (any fsspec URL); it is
    inspected here, on the launcher, so a wrong signature or tag set fails before the
    pipeline runs. On workers the model is loaded in ``DoFn.setup`` through
    ``apache_beam.utils.shared.Shared``: once per process however many threads run this
    step. Signature inputs are fed from the columns of the same name, or as ``input_map``
    (``{input: column}``) says; ``cast`` allows lossy dtype casts. An element is one
    signature call unless ``batch_size`` bounds the rows of a call (a Parquet row group
    can hold a million rows). ``model_copies`` and ``jit_compile`` (with ``fixed_batch``)
    are ``beamscore score``'s ``--model-copies`` and ``--jit-compile``, ``imports`` its
    ``--import`` (modules that register custom ops, imported here and before each load). The
    model is checked as ``beamscore score`` checks it: unregistered ops, a missing or
    unreadable variables index, outputs that are not one row per input row.

    Each output element holds the input's rows that were scored, their columns (all, or
    ``keep``) and the predictions (all outputs, or ``outputs``); see
    :mod:`beamscore.transforms.elements` for each kind. A row that does not fit the
    signature (a null, a list of the wrong length, NaN under ``reject_nan``) or that makes
    the model raise (found by bisection) fails the pipeline with its message, unless
    :meth:`with_exception_handling` routes it to a dead-letter output.

    ``per_row=True`` takes one row per element instead, as Beam's ``RunInference`` does: a
    row dict or one serialized Example (``bytes``), alone or as ``(key, row)``; rows are
    batched inside the step (``batch_size`` rows a call, default 1,024, and the rest at the
    end of each bundle; a buffer per window; on DaskRunner, which drops what a bundle's end
    emits, through a ``GroupByKey`` instead) and each comes back as its own output element
    (see :mod:`beamscore.transforms.per_row`).

    ``batch_multiple`` is ``--batch-multiple``: every call is padded to a multiple of it, for
    a signature that takes only such batches (a jax2tf export with a ``2*b`` batch). Without
    it the multiple is found when a row fails alone and scores in a batch of its copies.

    The CLI runs this same transform on its work-unit batches (:meth:`for_plan`).
    """

    @strict_keywords
    def __init__(
        self,
        model: str | os.PathLike[str],
        signature: str = "serving_default",
        *,
        tag_set: str = "serve",
        outputs: Sequence[str] = (),
        keep: Sequence[str] | None = None,
        input_map: Mapping[str, str] | None = None,
        cast: bool = False,
        version: int | None = None,
        bindings: Mapping[str, InputBinding] | None = None,
        reject_nan: bool = False,
        batch_size: int | None = None,
        model_copies: int = 0,
        jit_compile: bool = False,
        fixed_batch: int | None = None,
        imports: Sequence[str] = (),
        per_row: bool = False,
        batch_multiple: int | None = None,
    ) -> None:
        super().__init__()
        with speaking(wording.BEAM):
            if not isinstance(per_row, bool):
                raise BeamscoreError(f"per_row must be True or False, got {per_row!r}")
            check_names("outputs", outputs)
            check_names("keep", keep)
            check_names("imports", imports)
            check_count("batch_size", batch_size, optional=True)
            check_count("model_copies", model_copies, least=0)
            check_count("fixed_batch", fixed_batch, optional=True)
            check_count("batch_multiple", batch_multiple, optional=True)
            spec, sig = resolve_signature(
                os.fspath(model),
                signature,
                tag_set,
                version,
                outputs=outputs,
                imports=imports,
                copies=model_copies,
                jit_compile=jit_compile,
                fixed_batch=fixed_batch,
            )
            check_arguments(sig, outputs, keep, input_map)
            args = (spec, sig, bindings, outputs, keep, input_map, cast, reject_nan)
            if per_row:  # one row per element, batched in the DoFn (beamscore.transforms.per_row)
                from beamscore.transforms.per_row import DEFAULT_ROWS, PerRowFn

                rows = batch_size or DEFAULT_ROWS
                self.fn = PerRowFn(*args, batch_size=batch_size, batch_multiple=batch_multiple, rows=rows)
            else:
                self.fn = RunSignatureFn(*args, batch_size=batch_size, batch_multiple=batch_multiple)

    @classmethod
    def for_plan(cls, plan: Any) -> RunSignature:
        """The transform of a planned ``beamscore score`` job (model already inspected,
        inputs bound on the launcher): the CLI's path is this public transform."""
        transform = cls.__new__(cls)
        beam.PTransform.__init__(transform)
        transform.fn = RunSignatureFn(
            plan.spec,
            plan.signature,
            plan.bindings,
            plan.outputs,
            plan.config.keep,
            reject_nan=plan.config.reject_nan,
            keep_types=plan.keep_types,
            batch_multiple=plan.config.batch_multiple,
        )
        return transform

    def with_exception_handling(self) -> Any:
        """Return a copy whose output is ``(scored, dead_letters)``, Beam's convention.

        Typed ``Any``, as Beam's own ``Map(...).with_exception_handling()`` is in effect:
        type checkers type ``pcoll | transform`` from Beam's untyped ``PValue.__or__`` as a
        ``PValue``, which pyright refuses to unpack into two names; with ``Any`` the
        documented ``scored, dead = pcoll | RunSignature(...).with_exception_handling()``
        checks clean in mypy and pyright.

        A dead letter is a ``pyarrow.Table`` per element with bad rows (``(key, table)`` for
        keyed input) of :data:`beamscore.transforms.dead_letters.SCHEMA`: ``source`` names
        the element, ``row`` the row's index in it, ``stage`` is ``read``, ``validate`` or
        ``model``, ``error`` one line and ``raw`` the row as JSON (or the record)."""
        clone = copy.copy(self)
        clone.fn = copy.copy(self.fn)
        clone.fn.dead_letter_output = True
        return clone

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The schema of the output tables for input tables of ``input_schema``: what
        ``beam.io.WriteToParquetBatched`` needs (it takes only tables of exactly its schema)."""
        return output_schema(self.fn.signature, self.fn.outputs, self.fn.keep, input_schema)

    def expand(self, pcoll: beam.PCollection) -> Any:
        from beamscore.transforms.per_row import BatchedRows, PerRowFn, drops_finish_bundle

        fn = self.fn
        if isinstance(fn, PerRowFn) and drops_finish_bundle(pcoll.pipeline):
            # a bundle's last rows would be emitted from finish_bundle, which this runner drops
            results = pcoll | "Score" >> BatchedRows(fn)
        else:
            if isinstance(fn, PerRowFn) and not pcoll.windowing.is_default():
                fn = fn.windowed()  # a buffer per window (the global window's DoFn takes no window)
            results = pcoll | "Score" >> beam.ParDo(fn)
        if not self.fn.dead_letter_output:
            return results
        # One output of (tag, value) split by two plain steps, not a multi-output ParDo: Beam
        # 2.77's DaskRunner merges a ParDo's tagged outputs (every element on every tag).
        scored = results | "Scored" >> beam.FlatMap(_tagged, SCORED)
        dead = results | "DeadLetters" >> beam.FlatMap(_tagged, DEAD_LETTERS)
        return scored, dead

    def display_data(self) -> dict[str, Any]:
        return {
            "model": self.fn.model.path,
            "signature": self.fn.signature.key,
            "outputs": ", ".join(self.fn.outputs),
        }
