"""``SignatureModelHandler``: a SavedModel signature behind Beam's ``RunInference``.

For users who want ``RunInference``'s conventions rather than :class:`RunSignature`:
``with_exception_handling()``, ``KeyedModelHandler``, model refresh through
``model_metadata_pcoll`` (e.g. ``WatchFilePattern``), ``model_copies`` / ``large_model`` and
its metrics (``num_inferences``, ``inference_batch_latency_micro_secs``,
``load_model_latency_milli_secs``, under the namespace ``beamscore``).

Elements are either **one row each**, Beam's usual way (a row dict, a ``beam.Row`` or
``NamedTuple``, or one serialized ``tf.train.Example``), batched by ``RunInference``'s own
``BatchElements``; or whole column batches, the kinds of :mod:`beamscore.transforms.elements`
(Arrow tables and record batches, numpy column dicts, lists of row dicts or of serialized
Examples). A dict whose values are all numpy arrays is one row when its arrays have the
rank of one row of the signature's inputs (``x`` of ``[None, 4]``: an array of shape
``(4,)``), else numpy columns. Batch sizes count rows (``max_batch_size``), not elements.
Each ``PredictionResult`` holds the element as ``example`` and, as ``inference``, the same
kind with one entry per prediction added (a row: a dict of its columns and predictions).

**Dead letters.** A bad row given one per element fails alone: its ``PredictionResult``
carries a :class:`RowFailed` and the handler's postprocessing step raises on it, so with
``RunInference(...).with_exception_handling()`` it lands, one per row, in
``failed_postprocessing[0]`` as ``(PredictionResult, error)``, and the other rows of its
batch are scored; without exception handling it stops the pipeline with its message. A
batch element with a bad row fails whole, as ``RunInference`` fails a batch, with the first
bad row's message and the count of bad rows (found by bisection);
:class:`~beamscore.transforms.run_signature.RunSignature` dead-letters single rows of batches.

``model_copies`` and ``large_model`` load the model in Beam's shared model process: the
handler's ``load_model`` result is then a proxy, so all scoring happens in
:meth:`_LoadedSignature.run`, one method call per batch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult

from beamscore.errors import BeamscoreError
from beamscore.keywords import strict_keywords
from beamscore.model.loader import LoadedModel, load_model, resolve_signature
from beamscore.transforms.elements import pack, unpack
from beamscore.transforms.run_signature import (
    ElementScorer,
    check_arguments,
    check_count,
    check_names,
    output_schema,
)
from beamscore.wording import BEAM, speaking

__all__ = ["RowFailed", "RowFailedError", "SignatureModelHandler"]

#: rows ``BatchElements`` gathers for one ``run_inference`` call at most (unless a single
#: element is larger: it is passed alone)
DEFAULT_MAX_BATCH_ROWS = 1 << 16


@dataclass(frozen=True)
class RowFailed:
    """The ``inference`` of a row that could not be scored: what it is (``row``,
    ``record``), why, and at which stage (``validate``, ``read``, ``model``)."""

    where: str
    error: str
    stage: str

    def __str__(self) -> str:
        return f"{self.where}: {self.error}"


class RowFailedError(BeamscoreError):
    """Raised by the handler's postprocessing step for a :class:`RowFailed` result, so that
    ``RunInference``'s exception handling dead-letters that row alone."""


def raise_failed_rows(result: Any) -> Any:
    """The handler's postprocessing function: a result whose ``inference`` is a
    :class:`RowFailed` (``(key, result)`` under ``KeyedModelHandler``) raises."""
    inner = result[1] if isinstance(result, tuple) and len(result) == 2 else result
    inference = getattr(inner, "inference", None)
    if isinstance(inference, RowFailed):
        raise RowFailedError(
            f"{inference} (stage {inference.stage}; RunInference(...).with_exception_handling() dead-letters "
            "this row alone, in failed_postprocessing[0])"
        )
    return result


class _LoadedSignature:
    """What ``load_model`` returns: the loaded SavedModel (kept alive) and its scorer. With
    ``model_copies`` or ``large_model`` Beam serves it from another process and the handler
    holds a proxy, which forwards method calls only: :meth:`run` is the one entry point."""

    def __init__(self, loaded: LoadedModel, scorer: ElementScorer, keep: list[str] | None) -> None:
        self.loaded = loaded
        self.scorer = scorer
        self.keep = keep

    def run(self, batch: Sequence[Any], rows: Sequence[bool]) -> list[Any]:
        """The ``inference`` of each element of ``batch``: rows (``rows[i]``) are scored
        together, each giving its output dict or a :class:`RowFailed`; a batch element gives
        its scored element, or raises when a row of it fails."""
        from beamscore.transforms.per_row import score_each

        with speaking(BEAM):
            results: list[Any] = [None] * len(batch)
            row_index = [i for i, is_row in enumerate(rows) if is_row]
            if row_index:
                each = score_each(self.scorer, self.keep, [batch[i] for i in row_index])
                for i, result in zip(row_index, each, strict=True):
                    results[i] = result
            for i, element in enumerate(batch):
                if rows[i]:
                    continue
                el = unpack(element)  # None, an ndarray...: a BeamscoreError naming its type
                scored = self.scorer.score(el)
                if scored.rejected:
                    index, errors, stage = scored.rejected[0]
                    raise BeamscoreError(
                        f"{el.where}: row {int(index[0])}: {errors[0]} ({scored.rows_failed} of {el.num_rows} rows "
                        f"failed at {stage}; beamscore.RunSignature(...).with_exception_handling() dead-letters "
                        "single rows of a batch)"
                    )
                results[i] = pack(el, scored.good, scored.outputs, self.keep, self.scorer.variable_outputs)
            return results


class RowSizes:
    """``BatchElements``' ``element_size_fn``: the rows of an element (1 for a row), at most
    ``cap``, so that batch sizes count rows."""

    def __init__(self, row_ranks: Mapping[str, int], cap: int) -> None:
        self.row_ranks = dict(row_ranks)
        self.cap = cap

    def __call__(self, element: Any) -> int:
        return 1 if is_row(element, self.row_ranks) else num_rows(element, self.cap)


def is_row(element: Any, row_ranks: Mapping[str, int]) -> bool:
    """Whether ``element`` is one row: ``bytes`` (a serialized Example), a ``beam.Row`` or
    ``NamedTuple``, a dict with a value that is no numpy array, or a dict of numpy arrays of
    one row's rank (``row_ranks``: input column -> rank of one row, where known)."""
    if isinstance(element, bytes):
        return True
    if not isinstance(element, Mapping):
        return hasattr(element, "_asdict")  # a NamedTuple or beam.Row; a (key, batch) pair is not
    if not element or not all(isinstance(v, np.ndarray) for v in element.values()):
        return True  # Python values, lists, scalars: a row (numpy columns are arrays)
    for column, rank in row_ranks.items():
        value = element.get(column)
        if isinstance(value, np.ndarray):
            return value.ndim == rank
    return any(v.ndim == 0 for v in element.values())


class SignatureModelHandler(ModelHandler[Any, PredictionResult, _LoadedSignature]):
    """A ``ModelHandler`` that runs rows or whole column batches through a named signature.

    ``model`` is a SavedModel directory or versioned base dir (any fsspec URL or
    ``os.PathLike``), inspected here so that a wrong signature fails when the pipeline is
    built. ``outputs``, ``keep``, ``input_map``, ``cast`` and ``reject_nan`` mean what they
    mean for :class:`~beamscore.transforms.run_signature.RunSignature`, and ``imports``
    (modules that register custom ops, imported on the launcher and before each load) is
    ``--import``. ``batch_size`` bounds the rows of one signature call (default: one call
    per ``run_inference`` batch).

    Beam's batching and model-sharing parameters pass through to ``ModelHandler``, counted
    in rows: ``max_batch_size`` (alias ``max_batch_rows``, default 65,536) bounds the rows of
    one ``run_inference`` call, ``min_batch_size`` (default: ``max_batch_size``, a fixed
    target) and ``max_batch_duration_secs`` (streaming) as in Beam; ``model_copies`` and
    ``large_model`` load the model in a process shared by the machine's workers. A
    misspelt keyword is a ``TypeError`` naming the likely one.
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
        reject_nan: bool = False,
        batch_size: int | None = None,
        imports: Sequence[str] = (),
        max_batch_rows: int | None = None,
        max_batch_size: int | None = None,
        min_batch_size: int | None = None,
        max_batch_duration_secs: int | None = None,
        model_copies: int | None = None,
        large_model: bool = False,
    ) -> None:
        with speaking(BEAM):
            if max_batch_rows is not None and max_batch_size is not None and max_batch_rows != max_batch_size:
                raise BeamscoreError(
                    f"max_batch_rows={max_batch_rows} and max_batch_size={max_batch_size} are one setting "
                    "(rows of one run_inference call): give one"
                )
            most = max_batch_size or max_batch_rows or DEFAULT_MAX_BATCH_ROWS
            check_count("max_batch_size" if max_batch_size is not None else "max_batch_rows", most)
            check_count("min_batch_size", min_batch_size, optional=True)
            if min_batch_size is not None and min_batch_size > most:
                raise BeamscoreError(f"min_batch_size={min_batch_size} is above max_batch_size={most}")
            check_count("max_batch_duration_secs", max_batch_duration_secs, optional=True)
            check_count("model_copies", model_copies, optional=True)
            check_count("batch_size", batch_size, optional=True)
            if not isinstance(large_model, bool):
                raise BeamscoreError(f"large_model must be True or False, got {large_model!r}")
            check_names("outputs", outputs)
            check_names("keep", keep)
            check_names("imports", imports)
            self._signature_key = signature
            self._tag_set = tag_set
            self._outputs = list(outputs)
            self._keep = None if keep is None else list(keep)
            self._input_map = dict(input_map or {})
            self._cast = cast
            self._reject_nan = reject_nan
            self._batch_size = batch_size
            self._imports = tuple(imports)
            self._spec, self._signature = resolve_signature(
                os.fspath(model), signature, tag_set, version, outputs=self._outputs, imports=self._imports
            )
            check_arguments(self._signature, self._outputs, self._keep, input_map)
            #: input column -> the rank of one row of it, where the signature declares it
            self._row_ranks = {
                self._input_map.get(name, name): len(spec.shape) - 1
                for name, spec in self._signature.inputs.items()
                if spec.shape is not None and len(spec.shape) >= 1
            }
            # By default a fixed row budget: BatchElements (2.77) emits an *empty* batch when an
            # element is larger than its current target, which KeyedModelHandler cannot unpack;
            # with the target fixed at max_batch_size and sizes capped there, that cannot happen.
            super().__init__(
                min_batch_size=min_batch_size or most,
                max_batch_size=most,
                max_batch_duration_secs=max_batch_duration_secs,
                element_size_fn=RowSizes(self._row_ranks, most),
                large_model=large_model,
                model_copies=model_copies,
            )

    def load_model(self) -> _LoadedSignature:
        """Load the SavedModel (``RunInference`` shares it per process, or per machine with
        ``model_copies`` / ``large_model``) and bind its signature."""
        from beamscore.transforms.shared_models import acquire

        spec = self._spec
        loaded = acquire(spec, lambda: load_model(spec))  # one copy per process, whichever steps use it
        scorer = ElementScorer(
            loaded.signature(self._signature.key),
            self._signature,
            None,
            self._outputs,
            self._input_map,
            self._cast,
            self._reject_nan,
            self._batch_size,
            self._keep,
        )
        return _LoadedSignature(loaded, scorer, self._keep)

    def run_inference(
        self,
        batch: Sequence[Any],
        model: _LoadedSignature,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        """One ``PredictionResult(element, inference, model path)`` per element; a row that
        failed has a :class:`RowFailed` as its inference (raised by the postprocessing step)."""
        batch = list(batch)
        rows = [is_row(element, self._row_ranks) for element in batch]
        for element, row in zip(batch, rows, strict=True):
            if not row and isinstance(element, tuple) and len(element) == 2 and is_row(element[1], self._row_ranks):
                raise BeamscoreError(
                    f"element with key {element[0]!r} is a (key, row) pair; for keyed rows wrap the handler: "
                    "RunInference(KeyedModelHandler(SignatureModelHandler(...)))"
                )
        inferences = model.run(batch, rows)
        path = self._spec.path
        return [PredictionResult(e, i, path) for e, i in zip(batch, inferences, strict=True)]

    def get_postprocess_fns(self) -> Iterable[Any]:
        """Beam runs these on each result after inference: :func:`raise_failed_rows` first,
        so that a failed row is dead-lettered alone.

        Beam's ``KeyedModelHandler`` refuses, when it is made, an inner handler with
        postprocessing functions, then asks for them again through its own
        ``get_postprocess_fns`` when ``RunInference`` is applied: that first question is
        answered with none, so ``KeyedModelHandler(SignatureModelHandler(...))`` works and
        its results still pass :func:`raise_failed_rows` (which reads ``(key, result)``)."""
        caller = sys._getframe(1)
        if caller.f_code.co_name == "__init__" and isinstance(caller.f_locals.get("self"), KeyedModelHandler):
            return []
        return [raise_failed_rows]

    def validate_inference_args(self, inference_args: dict[str, Any] | None) -> None:
        if inference_args:
            raise BeamscoreError(f"SignatureModelHandler takes no inference_args; got {sorted(inference_args)}")

    def update_model_path(self, model_path: str | None = None) -> None:
        """Model refresh (``model_metadata_pcoll``): the next ``load_model`` loads
        ``model_path``, after checking it has the signature."""
        if model_path and model_path != self._spec.path:
            with speaking(BEAM):
                self._spec, self._signature = resolve_signature(
                    model_path, self._signature_key, self._tag_set, outputs=self._outputs, imports=self._imports
                )

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        """Bytes of the column data (Beam's default pickles the whole batch to count them)."""
        return sum(num_bytes(element) for element in batch)

    def get_metrics_namespace(self) -> str:
        return "beamscore"

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The schema of the ``inference`` tables for input tables of ``input_schema``
        (for ``beam.io.WriteToParquetBatched``)."""
        return output_schema(self._signature, self._outputs, self._keep, input_schema)


def _unkeyed(element: Any) -> Any:
    """The value of a ``(key, value)`` pair; anything else as it is."""
    return element[1] if isinstance(element, tuple) and len(element) == 2 else element


def num_rows(element: Any, cap: int | None = None) -> int:
    """Rows of one element, at most ``cap`` (``BatchElements``' ``element_size_fn``, so
    that batch sizes count rows); 1 for what is no batch (``None``...: refused when scored)."""
    element = _unkeyed(element)
    if isinstance(element, pa.Table | pa.RecordBatch):
        rows = element.num_rows
    elif isinstance(element, Mapping):
        first = next(iter(element.values()), ())
        rows = len(first) if isinstance(first, np.ndarray) and first.ndim else 1
    elif isinstance(element, list):
        rows = len(element)
    else:
        rows = 1
    rows = max(rows, 1)  # an empty element still takes a place in the batch
    return rows if cap is None else min(rows, cap)


def num_bytes(element: Any) -> int:
    """Approximate bytes of one element, without pickling it."""
    element = _unkeyed(element)
    if isinstance(element, pa.Table | pa.RecordBatch):
        return element.nbytes
    if isinstance(element, Mapping):
        return sum(v.nbytes for v in element.values() if isinstance(v, np.ndarray))
    if isinstance(element, bytes):
        return len(element)
    if isinstance(element, list) and element and isinstance(element[0], bytes):
        return sum(len(r) for r in element if isinstance(r, bytes))
    return 64 * len(element) if isinstance(element, list | tuple) else 0
