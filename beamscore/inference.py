"""``SignatureModelHandler``: a SavedModel signature behind Beam's ``RunInference``.

For users who want ``RunInference``'s conventions rather than :class:`RunSignature`:
``with_exception_handling()``, ``KeyedModelHandler``, model refresh through
``model_metadata_pcoll`` (e.g. ``WatchFilePattern``), ``model_copies`` and its metrics
(``num_inferences``, ``inference_batch_latency_micro_secs``, ``load_model_latency_milli_secs``,
under the namespace ``beamscore``).

Elements are whole column batches, the kinds of :mod:`beamscore.transforms.elements`
(Arrow tables and record batches, numpy column dicts, lists of row dicts or of serialized
Examples). ``RunInference`` puts ``BatchElements`` in front of the handler, so the handler
gets a *list* of such batches; their sizes are counted in rows (``max_batch_rows``), not in
elements. Each ``PredictionResult`` holds the element as ``example`` and, as ``inference``,
the same kind with one column per prediction added.

Row-level dead letters are :class:`RunSignature`'s: ``RunInference`` fails (or, with
``with_exception_handling()``, dead-letters) a whole batch, so a batch with a bad row is
refused here with the first bad row's message and the count of bad rows (found by bisection,
so the message names the row even when the model raised).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beamscore.errors import BeamscoreError
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

__all__ = ["SignatureModelHandler"]

#: rows ``BatchElements`` gathers for one ``run_inference`` call at most (unless a single
#: element is larger: it is passed alone)
DEFAULT_MAX_BATCH_ROWS = 1 << 16


class _LoadedSignature:
    """What ``load_model`` returns: the loaded SavedModel (kept alive) and its scorer."""

    def __init__(self, loaded: LoadedModel, scorer: ElementScorer) -> None:
        self.loaded = loaded
        self.scorer = scorer


class SignatureModelHandler(ModelHandler[Any, PredictionResult, _LoadedSignature]):
    """A ``ModelHandler`` that runs whole column batches through a named signature.

    ``model`` is a SavedModel directory or versioned base dir (any fsspec URL), inspected
    here so that a wrong signature fails when the pipeline is built. ``outputs``,
    ``keep``, ``input_map``, ``cast`` and ``reject_nan`` mean what they mean for
    :class:`~beamscore.transforms.run_signature.RunSignature`, and ``imports`` (modules that
    register custom ops, imported on the launcher and before each load) is ``--import``.
    ``max_batch_rows`` bounds
    the rows of one ``run_inference`` call and ``batch_size`` those of one signature call
    (default: one call per element); other keyword arguments (``model_copies``,
    ``large_model``, ``min_batch_size``...) go to Beam's ``ModelHandler``.
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
        reject_nan: bool = False,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        batch_size: int | None = None,
        imports: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        with speaking(BEAM):
            check_count("max_batch_rows", max_batch_rows)
            check_count("batch_size", batch_size, optional=True)
            check_names("outputs", outputs)
            check_names("keep", keep)
            check_names("imports", imports)
            # A fixed row budget: BatchElements (2.77) emits an *empty* batch when an element is
            # larger than its current target, which KeyedModelHandler cannot unpack; with the
            # target fixed at max_batch_rows and sizes capped there, that cannot happen.
            super().__init__(
                min_batch_size=max_batch_rows,
                max_batch_size=max_batch_rows,
                element_size_fn=functools.partial(num_rows, cap=max_batch_rows),
                **kwargs,
            )
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
                model, signature, tag_set, version, outputs=self._outputs, imports=self._imports
            )
            check_arguments(self._signature, self._outputs, self._keep, input_map)

    def load_model(self) -> _LoadedSignature:
        """Load the SavedModel (``RunInference`` shares it per process) and bind its signature."""
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
        return _LoadedSignature(loaded, scorer)

    def run_inference(
        self,
        batch: Sequence[Any],
        model: _LoadedSignature,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[PredictionResult]:
        """One ``PredictionResult(element, element with predictions, model path)`` per element."""
        results = []
        with speaking(BEAM):
            for element in batch:
                el = unpack(element)  # None, an ndarray...: a BeamscoreError naming its type
                scored = model.scorer.score(el)
                if scored.rejected:
                    index, errors, stage = scored.rejected[0]
                    raise BeamscoreError(
                        f"{el.where}: row {int(index[0])}: {errors[0]} ({scored.rows_failed} of {el.num_rows} rows "
                        f"failed at {stage}; beamscore.RunSignature(...).with_exception_handling() dead-letters "
                        "single rows)"
                    )
                inference = pack(el, scored.good, scored.outputs, self._keep, model.scorer.variable_outputs)
                results.append(PredictionResult(element, inference, model.loaded.spec.path))
        return results

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


def num_rows(element: Any, cap: int | None = None) -> int:
    """Rows of one element, at most ``cap`` (``BatchElements``' ``element_size_fn``, so
    that batch sizes count rows); 1 for what is no batch (``None``...: refused when scored)."""
    if isinstance(element, tuple) and len(element) == 2:
        element = element[1]
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
    if isinstance(element, tuple) and len(element) == 2:
        element = element[1]
    if isinstance(element, pa.Table | pa.RecordBatch):
        return element.nbytes
    if isinstance(element, Mapping):
        return sum(v.nbytes for v in element.values() if isinstance(v, np.ndarray))
    if isinstance(element, list) and element and isinstance(element[0], bytes):
        return sum(len(r) for r in element if isinstance(r, bytes))
    return 64 * len(element) if isinstance(element, list) else 0
