"""Arrow <-> numpy for column batches, without per-row Python.

Inputs: scalar, fixed-size list, list (equal lengths within a batch) and Arrow's
``fixed_shape_tensor`` columns become one numpy array of shape ``(rows, *row_shape)``.
Outputs: a 1-d array becomes a plain column, a 2-d array a fixed-size list, and anything of
higher rank a ``fixed_shape_tensor`` column, so the shape survives the round trip while
other Parquet readers still see plain (nested) lists; an output whose declared row shape has
an unknown dimension becomes (nested) variable-length lists, the same type in every batch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from beamscore.errors import BeamscoreError
from beamscore.model.binding import STRING, ColumnSpec

__all__ = ["arrow_type", "column_spec", "from_numpy", "pad_hint", "take_rows", "to_numpy", "without_views"]


_ARROW_NUMPY = {
    pa.float16().id: "float16",
    pa.float32().id: "float32",
    pa.float64().id: "float64",
    pa.int8().id: "int8",
    pa.int16().id: "int16",
    pa.int32().id: "int32",
    pa.int64().id: "int64",
    pa.uint8().id: "uint8",
    pa.uint16().id: "uint16",
    pa.uint32().id: "uint32",
    pa.uint64().id: "uint64",
    pa.bool_().id: "bool",
}


def column_spec(name: str, type_: pa.DataType) -> ColumnSpec:
    """Describe an Arrow column as the model binding needs it (dtype, per-row shape)."""
    shape: list[int] = []
    t = _decoded(type_)
    while True:
        if isinstance(t, pa.FixedShapeTensorType):
            shape.extend(t.shape)
            t = t.value_type
        elif pa.types.is_fixed_size_list(t):
            shape.append(t.list_size)
            t = t.value_type
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            return ColumnSpec(name, _dtype_name(_leaf(t)), None)
        else:
            break
    return ColumnSpec(name, _dtype_name(t), tuple(shape))


def arrow_type(spec: ColumnSpec) -> pa.DataType:
    """The Arrow type :func:`from_numpy` gives a column described by ``spec`` (the inverse
    of :func:`column_spec` for sources without an Arrow schema: TFRecord, npz, npy)."""
    leaf = pa.binary() if spec.dtype == STRING else pa.from_numpy_dtype(np.dtype(spec.dtype))
    shape = spec.row_shape
    if shape is None:
        return pa.large_list(leaf)
    if len(shape) > 1:
        return pa.fixed_shape_tensor(leaf, shape)
    return pa.list_(leaf, shape[0]) if shape else leaf


def _leaf(t: pa.DataType) -> pa.DataType:
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return t


def _decoded(t: pa.DataType) -> pa.DataType:
    """The values' type of a dictionary-encoded column (polars Categorical/Enum, pandas
    category, ``dictionary_encode``) and the storage type of an extension column other than
    ``fixed_shape_tensor`` (``arrow.json`` text, ``arrow.uuid`` bytes, what duckdb and
    pyarrow write): such a column feeds inputs as its values would."""
    if isinstance(t, pa.BaseExtensionType) and not isinstance(t, pa.FixedShapeTensorType):
        t = t.storage_type
    return t.value_type if pa.types.is_dictionary(t) else t


def _dtype_name(t: pa.DataType) -> str:
    t = _decoded(t)
    if _is_text(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return STRING
    if pa.types.is_fixed_size_binary(t):
        return STRING
    return _ARROW_NUMPY.get(t.id, str(t))


def _is_text(t: pa.DataType) -> bool:
    """Whether ``t`` is one of Arrow's UTF-8 types: ``string``, ``large_string`` and
    ``string_view`` (what pyarrow >= 16 and duckdb may write, and polars hands over)."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def to_numpy(column: pa.ChunkedArray | pa.Array, name: str, where: str) -> np.ndarray:
    """One column of a batch as a numpy array of shape ``(rows, *row_shape)``."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(arr, pa.ExtensionArray):
        arr = arr.storage if not isinstance(arr.type, pa.FixedShapeTensorType) else arr
        if isinstance(arr.type, pa.FixedShapeTensorType):
            _check_nulls(arr, name, where)
            t = arr.type
            if pa.types.is_boolean(t.value_type) and list(t.permutation or range(len(t.shape))) == list(
                range(len(t.shape))
            ):  # pyarrow's to_numpy_ndarray: "bool is not valid data type for a tensor"
                return arr.storage.flatten().to_numpy(zero_copy_only=False).reshape((len(arr), *t.shape))
            return arr.to_numpy_ndarray()
    return _nested(arr, name, where)


def _nested(arr: pa.Array, name: str, where: str) -> np.ndarray:
    _check_nulls(arr, name, where)
    if isinstance(arr, pa.ExtensionArray):  # values of a list of extension values (see _decoded)
        return to_numpy(arr, name, where)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    n = len(arr)
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        inner = _nested(arr.flatten(), name, where)
        return inner.reshape((n, t.list_size, *inner.shape[1:]))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = arr.offsets.to_numpy()
        lengths = np.diff(offsets)
        if n and (lengths != lengths[0]).any():
            bad = int(np.argmax(lengths != lengths[0]))
            raise BeamscoreError(
                f"{where}: column {name!r} row {bad} has {lengths[bad]} values, row 0 has "
                f"{lengths[0]}; list columns must have one length per batch ({pad_hint(name)})"
            )
        inner = _nested(arr.flatten(), name, where)
        width = int(lengths[0]) if n else 0
        return inner.reshape((n, width, *inner.shape[1:]))
    if pa.types.is_decimal(t):  # bound with --cast only (binding._check_dtype)
        if t.scale == 0:  # whole numbers (DECIMAL(38,0)): exact as int64 while they fit
            try:
                return arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid:  # past int64: as float64, which the cast's range check refuses
                pass
        return arr.cast(pa.float64()).to_numpy(zero_copy_only=False)  # rounded to float64
    if _dtype_name(t) == STRING:
        if _is_text(t):
            arr = arr.cast(pa.large_binary())
        return arr.to_numpy(zero_copy_only=False)
    return arr.to_numpy(zero_copy_only=False)


def without_views(table: pa.Table) -> pa.Table:
    """``table`` with its ``string_view``/``binary_view`` values (at any depth of lists and
    structs) as ``large_string``/``large_binary``: pyarrow (25) cannot ``take`` rows of a
    view column, which every batch with a dead letter does, and Parquet files written from
    view columns (pyarrow >= 16, duckdb) read back as views."""
    for i, field in enumerate(table.schema):
        plain = _unviewed(field.type)
        if plain != field.type:
            table = table.set_column(i, field.name, table.column(i).cast(plain))
    return table


def take_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """``table.take(rows)`` that also works on ``string_view``/``binary_view`` columns (which
    pyarrow cannot take rows of): those are taken as large strings and cast back, so the
    result has ``table``'s schema."""
    index = pa.array(rows, type=pa.int64())
    plain = without_views(table)
    taken = plain.take(index)
    return taken if plain.schema == table.schema else taken.cast(table.schema)


def _unviewed(t: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_unviewed(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_unviewed(t.value_type)))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(_unviewed(t.value_type)), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_unviewed(f.type)) for f in t])
    return t


def pad_hint(name: str) -> str:
    """What a ragged-row error suggests: ``--pad``, which gives every row one length (the
    transforms have no ``pad``: there, a step before them that pads)."""
    from beamscore.wording import BEAM, current, pair

    if current() == BEAM:
        return "pad or truncate every row to one length before RunSignature (e.g. in a beam.Map)"
    return f"pass {pair('pad', name, 'LENGTH[:VALUE]')} to pad or truncate every row to LENGTH values"


def _check_nulls(arr: pa.Array, name: str, where: str) -> None:
    if arr.null_count:
        row = int(np.argmax(~np.asarray(arr.is_valid())))
        raise BeamscoreError(f"{where}: column {name!r} has a null at row {row}; inputs must not be null")


def from_numpy(values: np.ndarray, variable: bool = False) -> pa.Array:
    """A numpy batch of one output as an Arrow column (see the module docstring).

    ``variable``: the output declares a row width unknown until it runs (shape ``(-1, -1)``,
    e.g. tokens padded per batch), so it is written as (nested) variable-length lists, one
    type for every batch whatever its width, where fixed-size lists would give each batch
    its own type and the part files no common schema.

    Complex values, which no Arrow type holds, are refused in one line (the launcher refuses
    such outputs first; bfloat16 ones arrive widened to float32, see
    :func:`beamscore.model.binding.widen_output`)."""
    values = np.ascontiguousarray(values)
    if values.dtype.kind == "c":
        raise BeamscoreError(
            f"an output has dtype {values.dtype}, which Arrow and Parquet cannot hold; "
            "leave it out with --outputs, or return its real and imaginary parts"
        )
    if values.dtype == object or values.dtype.kind in "SU":
        flat = pa.array(values.reshape(-1).tolist(), type=pa.binary())
    else:
        if values.ndim > 2 and not variable:
            return pa.FixedShapeTensorArray.from_numpy_ndarray(values)
        flat = pa.array(values.reshape(-1))
    if values.ndim <= 1:
        return flat
    if variable:
        for level in reversed(range(1, values.ndim)):
            lists = int(np.prod(values.shape[:level]))
            offsets = pa.array(np.arange(lists + 1, dtype=np.int64) * values.shape[level], type=pa.int32())
            flat = pa.ListArray.from_arrays(offsets, flat)
        return flat
    for size in reversed(values.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    return flat
