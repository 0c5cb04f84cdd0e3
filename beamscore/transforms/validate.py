"""Find the rows of a batch that cannot be fed to the signature, without per-row Python.

:func:`check_rows` turns a batch's bound columns into the numpy arrays the signature takes
and picks out the rows that cannot be: a null (top-level or inside a list), a list of the
wrong length, NaN or infinity when ``reject_nan`` is set. Checks are vectorised (Arrow
compute and numpy masks); only the rows found bad get a Python message each. A problem of the
whole batch (a column of the wrong type in one shard) fails every row of it with one message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beamscore.errors import BeamscoreError
from beamscore.io.arrow import pad_hint, to_numpy, without_views
from beamscore.model.binding import STRING, InputBinding, lossless, numpy_dtype

__all__ = ["Checked", "check_rows"]


@dataclass
class Checked:
    """The outcome of :func:`check_rows` for a batch of ``n`` rows.

    ``columns`` hold the good rows only (``good`` are their indices in the batch, in order);
    ``bad`` are the indices of the rejected rows and ``errors`` one message per bad row.
    """

    columns: dict[str, np.ndarray]
    good: np.ndarray
    bad: np.ndarray
    errors: list[str]


def check_rows(
    table: pa.Table, bindings: Mapping[str, InputBinding], reject_nan: bool = False, where: str = "batch"
) -> Checked:
    """Split ``table`` into rows the signature can take (as numpy) and rows it cannot."""
    n = table.num_rows
    reasons: dict[int, str] = {}
    for b in bindings.values():
        if b.column not in table.column_names:
            return _all_bad(n, f"no column {b.column!r} for signature input {b.input!r}")
        _mark_structure(table[b.column], b, reasons)
    good = _good(n, reasons)
    if reasons:  # only the bound columns, without views (pyarrow cannot take rows of those)
        bound = without_views(table.select(list(dict.fromkeys(b.column for b in bindings.values()))))
        sub = bound.take(pa.array(good))
    else:
        sub = table
    unfit: dict[str, tuple[np.ndarray, list[str]]] = {}
    try:
        columns = {b.column: _numpy(sub[b.column], b, where, unfit) for b in bindings.values()}
    except BeamscoreError as exc:
        message = str(exc).removeprefix(f"{where}: ")
        for i in good.tolist():
            reasons[i] = message
        return _result(n, reasons, {})
    if unfit:  # rows --cast could not keep (see _numpy): dead letters, the rest is fed
        fits = np.ones(len(good), dtype=bool)
        for rows, messages in unfit.values():
            for i, message in zip(np.flatnonzero(rows).tolist(), messages, strict=True):
                reasons.setdefault(int(good[i]), message)
            fits &= ~rows
        columns = {k: v[fits] for k, v in columns.items()}
        good = good[fits]
    if reject_nan:
        finite = np.ones(len(good), dtype=bool)
        for b in bindings.values():
            values = columns[b.column]
            if b.composite is not None:  # per row: all of its values finite
                ok = _finite_rows(values)
            elif values.dtype.kind == "f" and values.size:
                ok = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
            else:
                continue
            for i in np.flatnonzero(~ok & finite).tolist():
                reasons[int(good[i])] = f"column {b.column!r} holds NaN or infinity (--reject-nan)"
            finite &= ok
        if not finite.all():
            columns = {k: v[finite] for k, v in columns.items()}
    return _result(n, reasons, columns)


def _finite_rows(batch) -> np.ndarray:
    """Per row of a ragged batch, whether every value is finite (non-float values always are)."""
    ok = np.ones(len(batch), dtype=bool)
    if batch.values.dtype.kind == "f":
        ok[batch.row_ids()[~np.isfinite(batch.values)]] = False
    return ok


def _good(n: int, reasons: dict[int, str]) -> np.ndarray:
    if not reasons:  # the usual case: no sort, no set difference
        return np.arange(n, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    keep[np.fromiter(reasons, np.int64, len(reasons))] = False
    return np.flatnonzero(keep)


def _result(n: int, reasons: dict[int, str], columns: dict[str, np.ndarray]) -> Checked:
    bad = np.array(sorted(reasons), dtype=np.int64)
    return Checked(columns=columns, good=_good(n, reasons), bad=bad, errors=[reasons[int(i)] for i in bad])


def _all_bad(n: int, message: str) -> Checked:
    return _result(n, dict.fromkeys(range(n), message), {})


def _mark_structure(column: pa.ChunkedArray, b: InputBinding, reasons: dict[int, str]) -> None:
    """Record rows with nulls or lists of the wrong length (vectorised; messages for bad rows only)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    if arr.null_count:
        for i in np.flatnonzero(~_valid(arr)).tolist():
            reasons.setdefault(i, f"column {b.column!r} is null; inputs must not be null")
    t = arr.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        return
    flat = pc.list_flatten(arr)
    if flat.null_count:
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
        for i in np.unique(parents[~_valid(flat)]).tolist():
            reasons.setdefault(int(i), f"column {b.column!r} has a null value inside its list; inputs must not be null")
    if b.composite is not None:  # ragged or sparse: any length, up to a sparse input's declared width
        _mark_too_long(arr, b, reasons)
        return
    if _is_nested(flat.type):
        _mark_nested(arr, b, reasons)
        return
    if pa.types.is_fixed_size_list(t):
        return
    lengths = pc.list_value_length(arr).fill_null(-1).to_numpy(zero_copy_only=False)
    dims = None if b.shape is None else b.shape[1:]
    if dims is not None and all(d is not None for d in dims):
        expected = math.prod(dims)
        why = f"input {b.input!r} takes {expected} per row"
    else:
        candidates = lengths[lengths >= 0]
        if not len(candidates):
            return
        expected = int(candidates[0])
        why = "its batch's first row has {expected}; list columns must have one length per batch"
        why = why.format(expected=expected)
    for i in np.flatnonzero((lengths != expected) & (lengths >= 0)).tolist():
        reasons.setdefault(i, f"column {b.column!r} has {lengths[i]} values, {why} ({pad_hint(b.column)})")


def _mark_too_long(arr: pa.Array, b: InputBinding, reasons: dict[int, str]) -> None:
    """Record the rows of a list column longer than the declared width of the sparse input it feeds."""
    width = b.shape[1] if b.composite.kind == "sparse" and b.shape else None
    if width is None or pa.types.is_fixed_size_list(arr.type):
        return
    lengths = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(lengths > width).tolist():
        reasons.setdefault(
            i, f"column {b.column!r} has {lengths[i]} values; sparse input {b.input!r} takes at most {width}"
        )


def _mark_nested(arr: pa.Array, b: InputBinding, reasons: dict[int, str]) -> None:
    """Record the rows of a list-of-lists column (``[[1, 2, 3], [4, 5, 6]]`` per row) that
    hold a null at any depth, or a list whose length differs from the length most lists at
    its depth have in this batch: the batch becomes one array only when every list at a
    depth has one length, so one ragged row must not fail the others.

    A good batch costs one pass over each depth's lengths; which row a bad list or a null
    belongs to is only worked out when there is one (:func:`_rows_of`)."""
    chain: list[pa.Array] = []  # the list arrays from the top down to `level`'s parent
    level: pa.Array = arr
    depth = 0
    while _is_nested(level.type):
        depth += 1
        if not pa.types.is_fixed_size_list(level.type):
            lengths = pc.list_value_length(level).fill_null(-1).to_numpy(zero_copy_only=False)
            known = lengths[lengths >= 0]
            if len(known) and (known != known[0]).any():
                usual = int(np.argmax(np.bincount(known)))
                odd = np.flatnonzero((lengths >= 0) & (lengths != usual))
                for i, row in zip(odd.tolist(), _rows_of(chain, odd).tolist(), strict=True):
                    reasons.setdefault(
                        int(row),
                        f"column {b.column!r} has a list of {lengths[i]} values at depth {depth} where the batch's "
                        f"others have {usual}; nested lists must have one length per depth",
                    )
        chain.append(level)
        inner = pc.list_flatten(level)
        if inner.null_count:
            for row in np.unique(_rows_of(chain, np.flatnonzero(~_valid(inner)))).tolist():
                reasons.setdefault(
                    int(row), f"column {b.column!r} has a null value inside its list; inputs must not be null"
                )
        level = inner


def _rows_of(chain: list[pa.Array], index: np.ndarray) -> np.ndarray:
    """The batch rows of the values ``index`` of the innermost list array of ``chain``
    flattened (``chain[0]`` is the column)."""
    for level in reversed(chain):
        index = pc.list_parent_indices(level).to_numpy(zero_copy_only=False)[index]
    return index


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _valid(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _numpy(
    column: pa.ChunkedArray, b: InputBinding, where: str, unfit: dict[str, tuple[np.ndarray, list[str]]]
) -> np.ndarray:
    """The column as the signature input's numpy array; a dtype that cannot be cast safely
    (this shard's schema differs from the one planned) is an error for the whole batch.

    A ``--cast`` that cannot keep a value (out of the input dtype's range, NaN or infinity
    into an integer) would wrap around or saturate in silence: such rows go to ``unfit``
    (per row, with a message) instead."""
    if b.composite is not None:
        return _ragged(column, b, where, unfit)
    values = to_numpy(column, b.column, where)
    if b.dtype == STRING:
        if values.dtype != object and values.dtype.kind not in "SU":
            raise BeamscoreError(
                f"column {b.column!r} has dtype {values.dtype}, signature input {b.input!r} expects string"
            )
    else:
        want = numpy_dtype(b.dtype)
        if values.dtype != want:
            if values.dtype == object or not (b.cast or lossless(values.dtype, want)):
                actual = str(column.type) if values.dtype == object else str(values.dtype)
                raise BeamscoreError(
                    f"column {b.column!r} has dtype {actual}, signature input {b.input!r} expects {b.dtype}"
                )
            cast = _cast(values, want)
            lost = None if lossless(values.dtype, want) else _lost(values, cast)  # a widening loses nothing
            if lost is not None:
                unfit[b.column] = _unfit_rows(values, lost, b)
            values = cast
    return b.prepare(values, where)


def _ragged(column: pa.ChunkedArray, b: InputBinding, where: str, unfit: dict[str, tuple[np.ndarray, list[str]]]):
    """A list column as the :class:`~beamscore.model.composite.RaggedBatch` a ragged or sparse
    input is built from: flat values (cast as a dense column's are) and row splits from the
    offsets, no per-row Python. A cast that loses a value makes its row unfit."""
    from beamscore.model.composite import RaggedBatch, ragged_from_arrow

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    flat, splits = ragged_from_arrow(arr)
    batch = RaggedBatch(to_numpy(flat, b.column, where), splits)
    if b.dtype == STRING:
        if batch.values.dtype != object and batch.values.dtype.kind not in "SU":
            raise BeamscoreError(
                f"column {b.column!r} has dtype {batch.values.dtype}, signature input {b.input!r} expects string"
            )
        return batch
    want = numpy_dtype(b.dtype)
    have = batch.values.dtype
    if have == want:
        return batch
    if have.kind == "O" or not (b.cast or lossless(have, want)):
        raise BeamscoreError(
            f"column {b.column!r} has dtype {column.type}, signature input {b.input!r} expects {b.dtype}"
        )
    cast = _cast(batch.values, want)
    lost = None if lossless(have, want) else _lost(batch.values, cast)
    if lost is not None:
        at = np.flatnonzero(lost)
        row_of = batch.row_ids()[at]
        rows = np.zeros(len(batch), dtype=bool)
        rows[row_of] = True
        _, first = np.unique(row_of, return_index=True)  # the first lost value of each such row
        unfit[b.column] = (
            rows,
            [
                f"column {b.column!r} holds {batch.values[i]}, which {b.dtype} input {b.input!r} cannot hold "
                "(--cast converts values in its range; it does not wrap or saturate them)"
                for i in at[first].tolist()
            ],
        )
    return RaggedBatch(cast, batch.splits)


def _cast(values: np.ndarray, want: np.dtype) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(want)


def _lost(values: np.ndarray, cast: np.ndarray) -> np.ndarray | None:
    """Per value, whether ``cast`` lost it to more than rounding: out of an integer dtype's
    range, NaN or infinity into an integer, a finite float that became infinite. ``None``
    when every value was kept."""
    want, have = cast.dtype, values.dtype
    if want.kind in "iu" and have.kind == "f":
        info = np.iinfo(want)
        wide = values.astype(np.float64, copy=False)  # the bounds are powers of two: exact in float64
        lost = ~((wide >= float(info.min)) & (wide < float(info.max) + 1))
    elif want.kind in "iu" and have.kind in "iu":
        lost = cast.astype(have) != values  # a value out of range does not come back
        if have.kind != want.kind:  # -1 -> uint64 -> int64 does come back: the sign tells
            lost |= (values < 0) != (cast < 0)
    elif want.kind == "f" and have.kind in "iuf":
        lost = np.isinf(cast) & ~np.isinf(values)
    else:
        return None
    return lost if lost.any() else None


def _unfit_rows(values: np.ndarray, lost: np.ndarray, b: InputBinding) -> tuple[np.ndarray, list[str]]:
    """Which rows hold a value the cast lost, and for each such row its message, naming
    the first such value."""
    flat, lost_flat = values.reshape(len(values), -1), lost.reshape(len(lost), -1)
    rows = lost_flat.any(axis=1)
    messages = [
        f"column {b.column!r} holds {flat[i][lost_flat[i]][0]}, which {b.dtype} input {b.input!r} cannot hold "
        "(--cast converts values in its range; it does not wrap or saturate them)"
        for i in np.flatnonzero(rows).tolist()
    ]
    return rows, messages
