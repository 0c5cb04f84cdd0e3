"""``--pad NAME=LENGTH[:VALUE]``: give every row of a list column one length.

Signature inputs of shape ``[None, None]`` take a batch of equal-length rows, while real
data is often ragged (token ids, event lists). A padded column is cut to ``LENGTH`` values
or filled up to it with ``VALUE`` (``0``, ``0.0`` or the empty string by default), so every
row fits. TFRecord features are padded while parsing (:mod:`beamscore.io.tfrecord`);
Parquet and ``.npz`` columns with :func:`pad_table` on each Arrow batch, vectorised. A null
row stays null (it becomes a dead letter, as any null input does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beamscore.errors import BeamscoreError
from beamscore.io.arrow import column_spec
from beamscore.model.binding import STRING, ColumnSpec

__all__ = ["Pad", "pad_spec", "pad_table", "pad_value", "parse_pad"]


@dataclass(frozen=True)
class Pad:
    """``--pad NAME=LENGTH[:VALUE]``: pad with ``value`` or truncate to ``length`` values."""

    length: int
    value: str = ""


def parse_pad(pad: Mapping[str, Any] | None) -> dict[str, Pad]:
    """``{"tokens": "16:0"}`` (or ``16``) -> ``{"tokens": Pad(16, "0")}``, checked."""
    out = {}
    for name, spec in (pad or {}).items():
        length, _, value = str(spec).partition(":")
        try:
            n = int(length)
        except ValueError:
            n = -1
        if n < 1:
            raise BeamscoreError(f"--pad {name}={spec}: expected NAME=LENGTH[:VALUE] with LENGTH at least 1")
        out[name] = Pad(n, value)
    return out


def pad_value(pad: Pad, dtype: str, name: str) -> Any:
    """The fill value of ``pad`` as a value of ``dtype`` (a numpy dtype name or ``string``)."""
    try:
        if dtype == STRING:
            return pad.value.encode()
        if np.dtype(dtype).kind == "f":
            return float(pad.value or 0)
        if np.dtype(dtype).kind == "b":
            return pad.value.lower() in ("1", "true")
        value = int(pad.value or 0)
    except (ValueError, TypeError):
        raise BeamscoreError(f"--pad {name}={pad.length}:{pad.value}: {pad.value!r} is not a {dtype} value") from None
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:  # refused here, not as every padded row failing to convert
        raise BeamscoreError(
            f"--pad {name}={pad.length}:{pad.value}: {value} does not fit {dtype} ({info.min}..{info.max})"
        )
    return value


def pad_spec(spec: ColumnSpec, pad: Pad, where: str) -> ColumnSpec:
    """The column as the binding sees it once padded: ``LENGTH`` values per row. Only a
    column of one list of values per row (or a fixed 1-d row) can be padded."""
    if spec.row_shape is not None and len(spec.row_shape) != 1:
        shape = "a scalar" if spec.row_shape == () else f"rows of shape {spec.row_shape}"
        raise BeamscoreError(
            f"{where}: --pad {spec.name}: column {spec.name!r} holds {shape}; --pad applies to a list of values per row"
        )
    pad_value(pad, spec.dtype, spec.name)  # refuse a fill value of the wrong type up front
    return ColumnSpec(spec.name, spec.dtype, (pad.length,))


def pad_table(table: pa.Table, pads: Mapping[str, Pad]) -> pa.Table:
    """``table`` with each padded column cut or filled to its ``LENGTH`` (a fixed-size list)."""
    for name, pad in pads.items():
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, _pad_array(table[name].combine_chunks(), pad, name))
    return table


def _pad_array(arr: pa.Array, pad: Pad, name: str) -> pa.Array:
    t = arr.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise BeamscoreError(f"--pad {name}: column {name!r} has type {t}, not a list of values")
    n, width = len(arr), pad.length
    if pa.types.is_fixed_size_list(t):
        starts = np.arange(n, dtype=np.int64) * t.list_size
        lengths = np.full(n, t.list_size, dtype=np.int64)
        flat = arr.values.slice(arr.offset * t.list_size, n * t.list_size)
    else:
        offsets = arr.offsets.to_numpy().astype(np.int64)
        starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
        flat = arr.values.slice(offsets[0], offsets[-1] - offsets[0])
    if pa.types.is_dictionary(flat.type):
        flat = flat.dictionary_decode()
    nested = flat.type
    if pa.types.is_list(nested) or pa.types.is_large_list(nested) or pa.types.is_fixed_size_list(nested):
        # a row of lists: cutting or filling it to LENGTH values has no meaning (it failed
        # inside Arrow: "Could not convert 0.0 with type float: was not a sequence")
        raise BeamscoreError(
            f"--pad {name}: column {name!r} has type {t}, lists of lists; --pad takes a list of values"
        )
    fill = pad_value(pad, column_spec(name, flat.type).dtype, name)
    # where each kept value goes: row * width + its position in the row, for positions < width
    parents = np.repeat(np.arange(n, dtype=np.int64), lengths)
    within = np.arange(len(flat), dtype=np.int64) - np.repeat(starts, lengths)
    kept = within < width
    # each slot takes its value, or the fill value appended after the values (a null inside a
    # row stays null there, and the row becomes a dead letter as any null input does)
    target = np.full(n * width, len(flat), dtype=np.int64)
    target[parents[kept] * width + within[kept]] = np.flatnonzero(kept)
    values = pa.concat_arrays([flat, pa.array([fill], type=flat.type)]).take(pa.array(target))
    return pa.FixedSizeListArray.from_arrays(values, width, mask=pc.is_null(arr))
