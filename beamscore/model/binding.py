"""Match a signature's inputs to data columns, on the launcher, before any worker starts.

A source describes each column it can read as a :class:`ColumnSpec` (dtype and per-row
shape, from the file's schema); :func:`bind_inputs` pairs every signature input with a
column (same name, or ``--map INPUT=COLUMN``), decides the cast and the reshape, and turns
anything that cannot work into one :class:`BeamscoreError` naming the column, the expected
and the actual value. At run time :meth:`InputBinding.prepare` applies that decision to
each batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from beamscore.errors import BeamscoreError, summarise
from beamscore.model.inspect import CompositeInput, SignatureInfo, TensorSpec
from beamscore.wording import bare, option, pair

__all__ = [
    "STRING",
    "ColumnSpec",
    "InputBinding",
    "bind_inputs",
    "check_feedable_inputs",
    "lossless",
    "numpy_dtype",
    "output_dtype",
    "widen_output",
]

STRING = "string"
#: The column name a TFRecord source gives the serialized records (``--map INPUT=*``).
RAW_COLUMN = "*"

_NUMPY_DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
}


def numpy_dtype(tf_dtype: str) -> np.dtype | None:
    """The numpy dtype for a TensorFlow dtype name; ``None`` for strings (bytes objects).

    A ref type (``float32_ref``, a TF1 variable or assign op) is fetched as its value's type."""
    tf_dtype = tf_dtype.removesuffix("_ref")
    if tf_dtype == STRING:
        return None
    if tf_dtype not in _NUMPY_DTYPES:
        raise BeamscoreError(f"signature dtype {tf_dtype} is not supported by beamscore")
    return np.dtype(_NUMPY_DTYPES[tf_dtype])


#: Output dtypes with no Arrow or plain numpy type, written widened to one that holds every value
#: exactly (a mixed-precision Keras model's bfloat16 head; numpy sees bfloat16 as a 2-byte void).
WIDENED_OUTPUTS = {"bfloat16": np.dtype(np.float32)}


def output_dtype(tf_dtype: str) -> np.dtype:
    """The numpy dtype an output of TensorFlow dtype ``tf_dtype`` is written as: object for
    strings, float32 for bfloat16 (see :data:`WIDENED_OUTPUTS`), else :func:`numpy_dtype`."""
    base = tf_dtype.removesuffix("_ref")
    if base in WIDENED_OUTPUTS:
        return WIDENED_OUTPUTS[base]
    return numpy_dtype(base) or np.dtype(object)


def widen_output(values: np.ndarray) -> np.ndarray:
    """``values`` as written: a bfloat16 array (numpy's 2-byte void to Arrow and ``np.save``)
    becomes float32, which holds each value exactly; other arrays are returned as they are."""
    widened = WIDENED_OUTPUTS.get(values.dtype.name)
    return values.astype(widened) if widened is not None else values


@dataclass(frozen=True)
class ColumnSpec:
    """What a source knows of a column from the schema alone.

    ``dtype`` is a numpy dtype name or ``"string"``; ``row_shape`` is ``()`` for scalars,
    ``(k,)`` for fixed-size lists, the tensor shape for tensor columns and ``None`` for
    variable-length lists (checked per batch).
    """

    name: str
    dtype: str
    row_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class InputBinding:
    """How one signature input is fed: from which column, cast to what, shaped how."""

    input: str
    column: str
    dtype: str
    shape: tuple[int | None, ...] | None
    cast: bool
    #: a ragged or sparse input, fed from a list column whole (``input`` is its argument name)
    composite: CompositeInput | None = None

    def prepare(self, values: np.ndarray, where: str) -> np.ndarray:
        """Cast and reshape one batch of a column to the signature input's dtype and shape
        (a composite input's batch, a :class:`~beamscore.model.composite.RaggedBatch`, is cast
        when it is made)."""
        if self.composite is not None:
            return values
        if self.dtype != STRING and self.cast:
            values = values.astype(numpy_dtype(self.dtype), copy=False)
        if self.shape is None:
            return values
        n = values.shape[0]
        inner = self.shape[1:]
        row_size = int(np.prod(values.shape[1:], dtype=np.int64))
        target = _fill_unknown(inner, row_size)
        if target is None:
            raise BeamscoreError(
                f"{where}: column {self.column!r} has {row_size} values per row, "
                f"which does not fit input {self.input!r} of shape {_shape_str(self.shape)}"
            )
        if values.shape[1:] != target:
            values = values.reshape((n, *target))
        return values


#: TensorInfo encodings of inputs that are not one dense tensor: a TF1 ``sparse_placeholder``
#: (indices, values and shape fed together) and a composite tensor (ragged, sparse).
COMPOSITE_ENCODINGS = {"coo_sparse": "a SparseTensor", "composite_tensor": "a composite tensor"}


def check_feedable_inputs(signature: SignatureInfo, components: bool = False) -> None:
    """Refuse a signature input no column or ``run`` array can feed, naming it: a TF1
    SparseTensor input (a ``coo_sparse`` TensorInfo: fed as one dense tensor, every row failed
    with TensorFlow's "Cannot interpret feed_dict key as Tensor: The name ''"), a composite
    input beamscore cannot build from one list column, and a dtype with no numpy type.

    A TF2 signature over a ``tf.RaggedTensorSpec`` [batch, None] or a ``tf.SparseTensorSpec``
    [batch, width] takes its components (values ``x``, row splits ``x_1``...), which a list
    column feeds whole (:mod:`beamscore.model.composite`); ``components`` (``run``, fed each
    component's array as TensorFlow is) accepts any composite. Lists of inputs are summarised
    (:func:`~beamscore.errors.summarise`), so a refusal stays one readable line."""
    if not components:
        unfed = [c for c in signature.composites.values() if not c.feedable]
        if unfed:
            listed = summarise([f"{c.key} ({c.kind} {c.shape_str()})" for c in unfed], "composite inputs", more=_SHOW)
            raise BeamscoreError(
                f"signature {signature.key!r} takes {listed}, which one list column cannot feed "
                f"({unfed[0].why}); re-export the signature with [batch, None] ragged or [batch, width] sparse "
                "inputs, or dense ones"
            )
        if len(signature.composites) < len(signature.composite_inputs):  # components not found by name
            listed = summarise(list(signature.composite_inputs), "composite arguments")
            raise BeamscoreError(
                f"signature {signature.key!r} takes {listed}, flattened to inputs beamscore cannot match to "
                f"them ({summarise(list(signature.inputs), 'inputs', more=_SHOW)}); re-export the signature "
                "with dense inputs (padded, with a length input)"
            )
    sparse = [(key, spec) for key, spec in signature.inputs.items() if spec.name in COMPOSITE_ENCODINGS]
    if sparse:
        key, spec = sparse[0]
        what = COMPOSITE_ENCODINGS[spec.name]
        if len(sparse) == 1:
            subject = f"input {key!r} is {what} ({spec.name} in the SignatureDef, {spec.dtype} {spec.shape_str()})"
        else:
            subject = f"takes {summarise([k for k, _ in sparse], 'TF1 sparse inputs', more=_SHOW)}"
        raise BeamscoreError(
            f"signature {signature.key!r} {subject}; beamscore cannot feed TF1 sparse placeholders: re-export "
            "it with tf.SparseTensorSpec inputs (fed from list columns) or dense ones"
        )
    for key, spec in signature.inputs.items():
        try:
            numpy_dtype(spec.dtype)
        except BeamscoreError:
            raise BeamscoreError(
                f"signature {signature.key!r} input {key!r} has dtype {spec.dtype}, which beamscore cannot feed "
                "(no column type holds it); re-export the signature with a float32 input and cast inside"
            ) from None


def _listed(columns: dict, limit: int = 12) -> str:
    """``a, b, c`` or, past ``limit`` names, ``a, b, ..., l, ... (40 in all)``: a file may have
    thousands of columns, a refusal line stays short."""
    names = sorted(columns)
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


#: what a summarised list of inputs points to
_SHOW = " (see beamscore show)"


def bind_inputs(
    signature: SignatureInfo,
    columns: dict[str, ColumnSpec],
    mapping: dict[str, str] | None = None,
    allow_cast: bool = False,
    where: str = "input",
) -> dict[str, InputBinding]:
    """Pair every signature input with a column and check dtype and shape compatibility."""
    check_feedable_inputs(signature)
    mapping = dict(mapping or {})
    parts = signature.component_keys()
    fed = [k for k in signature.inputs if k not in parts] + list(signature.composites)
    unknown = sorted(set(mapping) - set(fed))
    if unknown:
        raise BeamscoreError(
            f"{bare('map')} names {', '.join(repr(u) for u in unknown[:5])}, not inputs of signature "
            f"{signature.key!r}; its inputs: {_listed(dict.fromkeys(fed))}"
        )
    bindings = {}
    for key, composite in signature.composites.items():
        bindings[key] = _bind_composite(composite, columns, mapping.get(key, key), allow_cast, where)
    for key, spec in signature.inputs.items():
        if key in parts:
            continue
        column = mapping.get(key, key)
        if spec.shape == ():  # before the column: no column can feed it, so --map is no help
            raise BeamscoreError(_scalar_input(spec, signature.tf1))
        if column not in columns:
            # A TFRecord source offers the serialized record as column "*" (string inputs take it).
            raw = spec.dtype == STRING and RAW_COLUMN in columns
            taken = {mapping.get(k, k) for k in fed}
            fits = _fitting_columns(spec, {n: c for n, c in columns.items() if n not in taken})
            if raw:
                hint = f"{pair('map', key, RAW_COLUMN)} feeds the serialized records"
            elif len(fits) == 1:
                hint = f"column {fits[0]!r} fits it: use {pair('map', key, fits[0])}"
            else:
                hint = f"use {pair('map', key, 'COLUMN')}"
            raise BeamscoreError(
                f"{where}: no column {column!r} for signature input {key!r}; columns: {_listed(columns)} ({hint})"
            )
        col = columns[column]
        cast = _check_dtype(spec, col, allow_cast, where)
        _check_shape(spec, col, where)
        bindings[key] = InputBinding(input=key, column=column, dtype=spec.dtype, shape=spec.shape, cast=cast)
    return bindings


def _bind_composite(
    composite: CompositeInput, columns: dict[str, ColumnSpec], column: str, allow_cast: bool, where: str
) -> InputBinding:
    """Bind a ragged or sparse input to a list column (any row length; a sparse input of declared
    width takes rows up to that width) or a fixed-size list column."""
    kind = f"{composite.kind} input {composite.key!r} ({composite.dtype} {composite.shape_str()})"
    if column not in columns:
        raise BeamscoreError(
            f"{where}: no column {column!r} for the {kind}; it is fed from a list column "
            f"(columns: {_listed(columns)}; "
            f"use --map {composite.key}=COLUMN)"
        )
    col = columns[column]
    spec = TensorSpec(composite.key, composite.dtype, composite.shape, "")
    cast = _check_dtype(spec, col, allow_cast, where)
    if col.row_shape is not None and len(col.row_shape) != 1:
        shape = "one value per row" if not col.row_shape else f"rows of shape {col.row_shape}"
        raise BeamscoreError(
            f"{where}: column {column!r} has {shape}; the {kind} is fed from a list column (one list per row)"
        )
    width = composite.shape[1] if composite.kind == "sparse" and composite.shape else None
    if width is not None and col.row_shape is not None and col.row_shape[0] > width:
        raise BeamscoreError(
            f"{where}: column {column!r} has {col.row_shape[0]} values per row; the {kind} takes at most {width}"
        )
    return InputBinding(composite.key, column, composite.dtype, composite.shape, cast, composite)


def _fitting_columns(spec: TensorSpec, columns: dict[str, ColumnSpec]) -> list[str]:
    """The columns whose dtype and row shape ``spec`` takes without ``--cast``: what an
    error suggests for ``--map`` when an input's name is no column's (Keras names the input
    of a ``Sequential`` model ``keras_tensor``)."""
    fits = []
    for name, col in sorted(columns.items()):
        try:
            _check_dtype(spec, col, False, name)  # lossless casts are made without --cast
            _check_shape(spec, col, name)
            fits.append(name)
        except BeamscoreError:
            continue
    return fits


def _check_dtype(spec: TensorSpec, col: ColumnSpec, allow_cast: bool, where: str) -> bool:
    """Return whether a cast is needed; refuse a lossy one unless ``allow_cast``."""
    if spec.dtype == STRING or col.dtype == STRING:
        if spec.dtype == col.dtype:
            return False
        raise BeamscoreError(
            f"{where}: column {col.name!r} has dtype {col.dtype}, signature input {spec.key!r} expects {spec.dtype}"
        )
    want = numpy_dtype(spec.dtype)
    if col.dtype.startswith("decimal"):  # BigQuery NUMERIC, Spark DecimalType: to a number with --cast
        if want.kind in "iuf" and allow_cast:
            return True
        hint = f"; pass {option('cast')} to convert decimals to {spec.dtype}" if want.kind in "iuf" else ""
        raise BeamscoreError(
            f"{where}: column {col.name!r} has type {col.dtype}, "
            f"signature input {spec.key!r} expects {spec.dtype}{hint}"
        )
    try:
        have = np.dtype(col.dtype)
    except (TypeError, ValueError):  # a struct, map or timestamp column: no numpy dtype
        raise BeamscoreError(
            f"{where}: column {col.name!r} has type {col.dtype}, signature input {spec.key!r} expects {spec.dtype}"
        ) from None
    if want == have:
        return False
    if lossless(have, want) or allow_cast:
        return True
    raise BeamscoreError(
        f"{where}: column {col.name!r} has dtype {col.dtype}, signature input {spec.key!r} "
        f"expects {spec.dtype}; casting would lose information (pass {option('cast')} to cast anyway)"
    )


def lossless(have: np.dtype, want: np.dtype) -> bool:
    """numpy's "safe" casts, less integer -> float casts the mantissa cannot hold exactly
    (numpy calls int64 -> float64 safe; 2**53 + 1 says otherwise)."""
    if not np.can_cast(have, want, casting="safe"):
        return False
    if have.kind in "iu" and want.kind == "f":
        return have.itemsize * 8 <= np.finfo(want).nmant + 1
    return True


def _check_shape(spec: TensorSpec, col: ColumnSpec, where: str) -> None:
    """Whether ``col``'s rows fit ``spec`` (a scalar input is refused before, by :func:`bind_inputs`)."""
    if spec.shape is None or col.row_shape is None:
        return  # unknown rank, or a variable-length list: checked per batch
    row_size = math.prod(col.row_shape)
    if _fill_unknown(spec.shape[1:], row_size) is None:
        raise BeamscoreError(
            f"{where}: column {col.name!r} has {row_size} values per row (shape "
            f"{_shape_str((None, *col.row_shape))}), which does not fit signature input "
            f"{spec.key!r} of shape {_shape_str(spec.shape)}"
        )


def _scalar_input(spec: TensorSpec, tf1: bool = False) -> str:
    """Why a scalar input cannot be fed: a ``tf.function`` argument with a default (``scale=2.0``)
    traced into a signature becomes such a required input; in a TF1 graph it is a ``placeholder``
    with no default (one made with ``placeholder_with_default`` is left to its default)."""
    if tf1:
        why = (
            f"it is a TF1 placeholder ({spec.name}) with no default: re-export the graph with "
            "tf.compat.v1.placeholder_with_default (beamscore leaves those to their default), or call "
            "it with beamscore run, which feeds scalars"
        )
    else:
        why = (
            "a tf.function argument with a default becomes a required scalar input: re-export the "
            "signature with the value fixed, e.g. functools.partial or a lambda"
        )
    return f"signature input {spec.key!r} is a scalar (shape ()), not a batch; beamscore feeds batches ({why})"


def _fill_unknown(inner: tuple[int | None, ...], row_size: int) -> tuple[int, ...] | None:
    """The concrete per-row shape for ``row_size`` values, or ``None`` if they cannot fit."""
    unknown = [i for i, d in enumerate(inner) if d is None]
    known = math.prod(d for d in inner if d is not None)
    if not unknown:
        return tuple(inner) if known == row_size else None  # type: ignore[return-value]
    if len(unknown) == 1 and known and row_size % known == 0:
        filled = list(inner)
        filled[unknown[0]] = row_size // known
        return tuple(filled)  # type: ignore[arg-type]
    if row_size == 0 and len(unknown) == len(inner):
        return tuple(0 for _ in inner)
    return None


def _shape_str(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("-1" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
