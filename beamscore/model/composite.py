"""Feed ragged and sparse signature inputs from list columns, a batch at a time.

A TF2 signature over a ``tf.RaggedTensorSpec`` or ``tf.SparseTensorSpec`` argument takes its
components (:class:`~beamscore.model.inspect.CompositeInput`): for a ragged ``x``, the values
``x`` and the row splits ``x_1``; for a sparse ``sp``, the indices ``sp``, the values ``sp_1``
and the dense shape ``sp_2``. A list column (Parquet, or a TFRecord feature of varying length)
holds exactly that: its flat values and its offsets. :class:`RaggedBatch` keeps a batch of
such a column as those two arrays, taken from Arrow without per-row Python, and supports the
row slicing and masking the scoring step does (bisection, dropping bad rows);
:func:`component_feeds` builds the components from it (sparse indices from the offsets,
vectorised; the dense shape ``[rows, declared width or longest row]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beamscore.model.inspect import CompositeInput

__all__ = ["RaggedBatch", "component_feeds", "ragged_from_arrow"]


class RaggedBatch:
    """Rows of variable length as flat ``values`` and int64 row ``splits`` (``len(rows) + 1``)."""

    def __init__(self, values: np.ndarray, splits: np.ndarray) -> None:
        self.values = values
        self.splits = splits

    def __len__(self) -> int:
        return len(self.splits) - 1

    @property
    def shape(self) -> tuple[int, ...]:
        """``(rows,)``: what callers that count rows by ``shape[0]`` need."""
        return (len(self),)

    def lengths(self) -> np.ndarray:
        return np.diff(self.splits)

    def row_ids(self) -> np.ndarray:
        """The row of each value."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def __getitem__(self, index: Any) -> RaggedBatch:
        """Rows by a slice (step 1), a boolean mask or an index array, vectorised."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("a RaggedBatch slice takes step 1 only")
            stop = max(start, stop)
            lo, hi = int(self.splits[start]), int(self.splits[stop])
            return RaggedBatch(self.values[lo:hi], self.splits[start : stop + 1] - lo)
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        lengths = self.lengths()[index]
        splits = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=splits[1:])
        gather = np.repeat(self.splits[:-1][index] - splits[:-1], lengths) + np.arange(splits[-1], dtype=np.int64)
        return RaggedBatch(self.values[gather], splits)


def ragged_from_arrow(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The flat values (Arrow) and int64 row splits of a list, large list or fixed-size list
    array, respecting a slice's offset, without per-row Python."""
    if pa.types.is_fixed_size_list(arr.type):
        n, k = len(arr), arr.type.list_size
        return pc.list_flatten(arr), np.arange(n + 1, dtype=np.int64) * k
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    return pc.list_flatten(arr), offsets - offsets[0]


def component_feeds(composite: CompositeInput, batch: RaggedBatch) -> dict[str, np.ndarray]:
    """The SignatureDef inputs of ``composite`` for one batch, as numpy arrays."""
    keys = composite.components
    if composite.kind == "ragged":
        return {keys[0]: batch.values, keys[1]: batch.splits.astype(composite.component_dtypes[1], copy=False)}
    lengths = batch.lengths()
    n = len(batch)
    width = composite.shape[1] if composite.shape and composite.shape[1] is not None else None
    if width is None:
        width = int(lengths.max()) if n and len(batch.values) else 0
    positions = np.arange(len(batch.values), dtype=np.int64) - np.repeat(batch.splits[:-1], lengths)
    indices = np.stack([batch.row_ids(), positions], axis=1)
    return {
        keys[0]: indices,
        keys[1]: batch.values,
        keys[2]: np.array([n, width], dtype=np.int64),
    }
