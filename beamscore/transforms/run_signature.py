"""``RunSignature``: column batches in, the same batches with predictions out, one model per worker process."""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils import shared

from beamscore.doctor import worker_device
from beamscore.errors import BeamscoreError
from beamscore.io import structs
from beamscore.io.arrow import column_spec, from_numpy, take_rows
from beamscore.io.keep import cast_kept, keep_type
from beamscore.io.tfrecord import TFRecordSource
from beamscore.model.binding import InputBinding, bind_inputs, output_dtype
from beamscore.model.inspect import SignatureInfo
from beamscore.model.loader import LoadedModel, ModelSpec, load_model, resolve_signature, tf_message
from beamscore.model.runner import BatchError, SignatureRunner
from beamscore.transforms import dead_letters
from beamscore.transforms.batch import Batch
from beamscore.transforms.elements import Element, pack, unpack
from beamscore.transforms.validate import check_rows

__all__ = [
    "DEAD_LETTERS",
    "ElementScorer",
    "RunSignature",
    "RunSignatureFn",
    "Scored",
    "call_isolating",
    "output_schema",
    "score_table",
]

#: seconds of each model load in this process not yet reported on a scored batch (for the
#: manifest's metrics: the DoFn instance that loaded the model may not be the one scoring)
_UNRECORDED_LOADS: list[float] = []
_LOADS_LOCK = threading.Lock()


#: the tag of RunSignature's dead-letter output (see :meth:`RunSignature.with_exception_handling`)
DEAD_LETTERS = "dead_letters"


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
) -> Scored:
    """Validate ``table``'s bound columns, call the signature on the rows that fit (at most
    ``batch_size`` rows a call), isolate rows that make the model raise (bisection) and check
    one output row per input row. The one scoring step of every element kind and of the
    CLI's work-unit batches."""
    checked = check_rows(table, runner.bindings, reject_nan, where)
    rejected = []
    if len(checked.bad):
        rejected.append((checked.bad, checked.errors, "validate"))
    good = checked.good
    results = None
    if len(good):
        results, model_bad, messages = call_in_batches(runner, checked.columns, len(good), batch_size)
        if model_bad:
            rejected.append((good[model_bad], messages, "model"))
            good = np.delete(good, model_bad)
    if results is None:
        results = {key: _empty(signature.outputs[key]) for key in runner.outputs}
    for key, values in results.items():
        if values.shape[:1] != (len(good),):
            raise BeamscoreError(
                f"{where}: output {key!r} has shape {values.shape}, not one row per input row "
                f"({len(good)}); use --outputs to leave it out"
            )
    return Scored(results, good, rejected)


class ElementScorer:
    """A loaded signature function and how to feed it: scores unpacked elements.

    Not a Beam object: :class:`RunSignatureFn` and
    :class:`~beamscore.inference.SignatureModelHandler` each hold one. Bindings made on the
    launcher are used as given; otherwise they are made from the first table's schema
    (``input_map``, ``cast``). Serialized Examples are parsed against the signature."""

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
    ) -> None:
        self.fn = fn
        self.batch_size = batch_size
        self.signature = signature
        self.outputs = list(outputs) or sorted(signature.outputs)
        #: outputs written as variable-length lists (:func:`variable_rows`), fixed once
        self.variable_outputs = {k for k in self.outputs if variable_rows(signature.outputs[k])}
        self.input_map = dict(input_map or {})
        self.cast = cast
        self.reject_nan = reject_nan
        self.runner = SignatureRunner(fn, bindings, self.outputs) if bindings is not None else None
        self._examples: TFRecordSource | None = None

    def runner_for(self, table: pa.Table, where: str) -> SignatureRunner:
        if self.runner is None:
            types = {**structs.field_types(table.schema), **{f.name: f.type for f in table.schema}}
            specs = {name: column_spec(name, t) for name, t in types.items()}
            bindings = bind_inputs(self.signature, specs, self.input_map, self.cast, where=where)
            self.runner = SignatureRunner(self.fn, bindings, self.outputs)
        return self.runner

    def score_table(self, table: pa.Table, where: str) -> Scored:
        runner = self.runner_for(table, where)
        fed = structs.with_fields(table, [b.column for b in runner.bindings.values()])  # input_map: features.x
        return score_table(runner, fed, self.signature, self.reject_nan, where, self.batch_size)

    def score(self, el: Element) -> Scored:
        """Score one unpacked element; records (``examples``) are parsed here first, and a
        batch of records that does not parse fails all its rows with the parser's message."""
        if el.table is None:
            if self._examples is None:
                self._examples = TFRecordSource().bind(self.signature, self.input_map)
            try:
                el.table = self._examples.parse(el.original, el.where)
            except BeamscoreError as exc:
                return self._all_rejected(len(el.original), str(exc), "read")
        try:
            self.runner_for(el.table, el.where)
        except BeamscoreError as exc:  # this element's columns cannot feed the signature
            return self._all_rejected(el.num_rows, str(exc).removeprefix(f"{el.where}: "), "validate")
        return self.score_table(el.table, el.where)

    def _all_rejected(self, n: int, message: str, stage: str) -> Scored:
        empty = {key: _empty(self.signature.outputs[key]) for key in self.outputs}
        return Scored(empty, np.arange(0), [(np.arange(n), [message] * n, stage)])


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
        self._shared = shared.Shared()
        self._scorer: ElementScorer | None = None
        self._unreported_load_ms: int | None = None
        self._worker: str | None = None
        self._device: str | None = None
        self.batches = beam.metrics.Metrics.counter("beamscore", "batches")
        self.model_loads = beam.metrics.Metrics.counter("beamscore", "model_loads")
        self.load_ms = beam.metrics.Metrics.distribution("beamscore", "model_load_ms")
        self.batch_rows = beam.metrics.Metrics.distribution("beamscore", "batch_rows")
        self.batch_ms = beam.metrics.Metrics.distribution("beamscore", "batch_latency_ms")
        self.element_failed = beam.metrics.Metrics.counter("beamscore", "element_rows_failed")

    def setup(self) -> None:
        loaded_here: list[LoadedModel] = []

        def load() -> LoadedModel:
            loaded_here.append(load_model(self.model))
            return loaded_here[-1]

        model = self._shared.acquire(load, tag=self.model.key)
        # Metrics updated in setup() are lost (no bundle is active): report in start_bundle.
        self._unreported_load_ms = int(model.load_seconds * 1000) if loaded_here else None
        if loaded_here:  # told by the next batch this process scores, whichever DoFn instance has it
            with _LOADS_LOCK:
                _UNRECORDED_LOADS.append(model.load_seconds)
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
        )

    def start_bundle(self) -> None:
        if self._unreported_load_ms is not None:
            self.model_loads.inc()
            self.load_ms.update(self._unreported_load_ms)
            self._unreported_load_ms = None

    def process(self, element: Any) -> Iterator[Any]:
        if isinstance(element, Batch):
            yield self._process_batch(element)
        else:
            yield from self._process_element(element)

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
        scored = self._scorer.score_table(table, batch.where)
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
        seconds = self._measure(table.num_rows, start)
        with _LOADS_LOCK:
            loads = tuple(_UNRECORDED_LOADS)
            _UNRECORDED_LOADS.clear()
        return dataclasses.replace(
            batch,
            seconds=seconds,
            worker=self._worker,
            model_loads=loads,
            table=pa.table(out),
            rows_in=batch.source_rows,
            failed=dead_letters.concat(failed),
            positions=None if len(good) == table.num_rows else positions[good],
            device=self._device,
        )

    def _process_element(self, element: Any) -> Iterator[Any]:
        start = time.perf_counter()
        el = unpack(element)
        scored = self._scorer.score(el)
        if scored.rejected:
            self.element_failed.inc(scored.rows_failed)
            rows = el.table if el.table is not None else el.original
            dead = dead_letters.concat(
                [dead_letters.from_element_rows(el.where, rows, i, e, stage) for i, e, stage in scored.rejected]
            )
            if not self.dead_letter_output:
                first = int(dead["row"][0].as_py())
                raise BeamscoreError(
                    f"{el.where}: row {first}: {dead['error'][0].as_py()} ({dead.num_rows} of {el.num_rows} rows "
                    "failed; RunSignature(...).with_exception_handling() sends bad rows to a dead-letter output)"
                )
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, (el.key, dead) if el.keyed else dead)
        self._measure(el.num_rows, start)
        yield pack(el, scored.good, scored.outputs, self.keep, self._scorer.variable_outputs)

    def _measure(self, rows: int, start: float) -> float:
        """Count one batch of ``rows`` begun at ``start``; return its seconds."""
        seconds = time.perf_counter() - start
        self.batches.inc()
        self.batch_rows.update(rows)
        self.batch_ms.update(int(seconds * 1000))
        return seconds


def call_in_batches(
    runner: SignatureRunner, columns: dict[str, np.ndarray], n: int, batch_size: int | None
) -> tuple[dict[str, np.ndarray] | None, list[int], list[str]]:
    """:func:`call_isolating` on slices of at most ``batch_size`` rows (all ``n`` at once
    when ``None``), with the same result as one call over all rows."""
    if not batch_size or n <= batch_size:
        return call_isolating(runner, columns, n)
    parts, bad, messages = [], [], []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        part, part_bad, part_messages = call_isolating(
            runner, {k: v[start:stop] for k, v in columns.items()}, stop - start
        )
        if part is not None:
            parts.append(part)
        bad += [start + i for i in part_bad]
        messages += part_messages
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else None
    return merged, bad, messages


def call_isolating(
    runner: SignatureRunner, columns: dict[str, np.ndarray], n: int
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
            return None, [0], [model_message(exc)]
    mid = n // 2
    left, bad_left, msg_left = call_isolating(runner, {k: v[:mid] for k, v in columns.items()}, mid)
    right, bad_right, msg_right = call_isolating(runner, {k: v[mid:] for k, v in columns.items()}, n - mid)
    parts = [r for r in (left, right) if r is not None]
    if not parts:
        merged = None
    elif len(parts) == 1:
        merged = parts[0]
    elif any(left[k].shape[1:] != right[k].shape[1:] for k in left):
        # Halves whose outputs differ in shape cannot be stitched into one batch: all rows fail.
        shapes = "; ".join(f"{k}: {left[k].shape} and {right[k].shape}" for k in left)
        return None, list(range(n)), [f"outputs of different shapes within one batch ({shapes})"] * n
    else:
        merged = {k: np.concatenate([left[k], right[k]]) for k in left}
    return merged, bad_left + [mid + i for i in bad_right], msg_left + msg_right


def model_message(exc: BaseException) -> str:
    """The informative line of a model error (TensorFlow's first lines are boilerplate)."""
    return f"the model failed on this row: {tf_message(exc.__cause__ or exc)[:500]}"


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

    The CLI runs this same transform on its work-unit batches (:meth:`for_plan`).
    """

    def __init__(
        self,
        model: str,
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
    ) -> None:
        super().__init__()
        spec, sig = resolve_signature(
            model,
            signature,
            tag_set,
            version,
            outputs=outputs,
            imports=imports,
            copies=model_copies,
            jit_compile=jit_compile,
            fixed_batch=fixed_batch,
        )
        self.fn = RunSignatureFn(spec, sig, bindings, outputs, keep, input_map, cast, reject_nan, batch_size=batch_size)

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
        )
        return transform

    def with_exception_handling(self) -> RunSignature:
        """Return a copy whose output is ``(scored, dead_letters)``, Beam's convention.

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
        results = pcoll | "Score" >> beam.ParDo(self.fn).with_outputs(DEAD_LETTERS, main="scored")
        if self.fn.dead_letter_output:
            return results.scored, results[DEAD_LETTERS]
        return results.scored

    def display_data(self) -> dict[str, Any]:
        return {
            "model": self.fn.model.path,
            "signature": self.fn.signature.key,
            "outputs": ", ".join(self.fn.outputs),
        }
