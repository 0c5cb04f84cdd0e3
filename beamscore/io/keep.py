"""One output type per ``--keep`` column for the whole job, whatever each input file holds.

Part files of one job must share a schema, or readers of the output glob (polars,
pyarrow.dataset, Spark) refuse it. Input files often disagree on a passthrough column's
width (int32 in one export, int64 in the next) or encoding (a dictionary in one, plain
strings in another), and a unit whose rows all failed has no values to take a type from.
So the launcher fixes each kept column's output type from the first file with
:func:`keep_type`, a widening that does not depend on which file comes first:

* signed and unsigned integers up to 32 bits -> ``int64`` (``uint64`` stays ``uint64``);
* ``float16``/``float32`` -> ``float64``;
* strings (``large_string``, dictionary-encoded) -> ``string``; binaries -> ``binary``;
* list types -> ``list`` of the widened values; fixed-size lists keep their size;
* anything else (timestamps, dates, decimals, structs) as the first file has it.

A column the first Parquet file stores as Arrow's ``null`` type (all null, as polars writes
it; ``list<null>`` for only empty lists) takes its type from the next file that has another
(:meth:`~beamscore.io.parquet.ParquetSource.column_types`).

When the launcher has read every file's schema (it plans every file, as it does unless
``--plan-on-workers``) and a numeric column (or fixed-size list of numbers) has one dtype and
shape in all of them, nothing needs widening: the output keeps the files' own type (an
``int32`` id stays ``int32``, ``float32`` features are not doubled) (:func:`job_keep_types`).

Every batch's kept columns are cast to those types (:func:`cast_kept`); a missing column is
all null. A value the cast cannot hold fails its batch's rows as dead letters.
"""

from __future__ import annotations

import pyarrow as pa

from beamscore.errors import BeamscoreError

__all__ = ["cast_kept", "job_keep_types", "keep_type"]


def keep_type(t: pa.DataType) -> pa.DataType:
    """The output type of a kept column whose first file's type is ``t`` (see above)."""
    if pa.types.is_dictionary(t):
        return keep_type(t.value_type)
    if pa.types.is_integer(t):
        return t if t == pa.uint64() else pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_fixed_size_list(t):
        return pa.list_(keep_type(t.value_type), t.list_size)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(keep_type(t.value_type))
    return t


def job_keep_types(first: dict[str, pa.DataType], seen: dict[str, set] | None = None) -> dict[str, pa.DataType]:
    """Each kept column's output type: the first file's own type where it is numeric (or a
    fixed-size list of numbers) and ``seen`` (its dtype and row shape in every file, from
    :class:`~beamscore.io.schemas.SameSchema`) holds one, else :func:`keep_type`'s widening."""
    out = {}
    for name, t in first.items():
        agreed = seen is not None and len(seen.get(name, ())) == 1
        out[name] = t if agreed and _plain_numbers(t) else keep_type(t)
    return out


def _plain_numbers(t: pa.DataType) -> bool:
    if pa.types.is_fixed_size_list(t):
        return _plain_numbers(t.value_type)
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def cast_kept(column: pa.ChunkedArray | pa.Array | None, name: str, type_: pa.DataType, rows: int) -> pa.Array:
    """``column`` (``None``: missing, all null) as the job's output type of ``name``."""
    if column is None:
        return pa.nulls(rows, type=type_)
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.type == type_:
        return arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    try:
        return arr.cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BeamscoreError(
            f"--keep column {name!r} has type {arr.type} here and cannot be written as {type_}, "
            f"its type in this job's output ({str(exc).splitlines()[0]})"
        ) from None
