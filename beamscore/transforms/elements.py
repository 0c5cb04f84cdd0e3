"""The elements Beam users have, as one Arrow table in and the same kind back out.

:class:`~beamscore.transforms.run_signature.RunSignature` and
:class:`~beamscore.inference.SignatureModelHandler` take any of these, optionally as a keyed
``(key, element)`` pair, and give back the same kind with one column per prediction added:

=================  ===========================================  ============================
kind               element                                      made by
=================  ===========================================  ============================
``table``          ``pyarrow.Table``                            ``ReadFromParquetBatched``
``record_batch``   ``pyarrow.RecordBatch``                      Arrow Flight, user code
``numpy``          ``dict[str, numpy.ndarray]`` (one per col)   user code
``rows``           ``list[dict]`` (one dict per row)            ``BatchElements``
``examples``       ``list[bytes]`` (serialized tf.Example)      ``ReadFromTFRecord | BatchElements``
=================  ===========================================  ============================

:func:`unpack` normalises an element once, at the boundary, into an :class:`Element` whose
``table`` the signature is fed from; :func:`pack` builds the output of the element's kind
from the rows that were scored and their predictions. ``rows`` and ``examples`` output one
dict per scored row (an ``examples`` row keeps its record under ``"example"``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from beamscore.errors import BeamscoreError
from beamscore.io.arrow import from_numpy, take_rows

__all__ = ["EXAMPLE", "Element", "pack", "unpack"]

#: the key of an ``examples`` output row that holds the serialized record
EXAMPLE = "example"


@dataclass
class Element:
    """One normalised element: its kind, key (``keyed`` pairs only) and the original value.

    ``table`` holds the element's rows as Arrow columns; for ``examples`` it is ``None``
    until the records are parsed against the signature."""

    kind: str
    original: Any
    table: pa.Table | None
    keyed: bool = False
    key: Any = None

    @property
    def where(self) -> str:
        """What to call the element in error messages."""
        return f"element with key {self.key!r}" if self.keyed else f"{self.kind} element"

    @property
    def num_rows(self) -> int:
        return len(self.original) if self.table is None else self.table.num_rows


def unpack(element: Any) -> Element:
    """Recognise one element (see the module docstring); anything else is a clear error."""
    if isinstance(element, tuple) and len(element) == 2 and not _is_batch(element[0]) and _is_batch(element[1]):
        inner = unpack(element[1])
        inner.keyed, inner.key = True, element[0]
        return inner
    if isinstance(element, pa.Table):
        return Element("table", element, element)
    if isinstance(element, pa.RecordBatch):
        return Element("record_batch", element, pa.Table.from_batches([element]))
    if isinstance(element, Mapping) and element and all(isinstance(v, np.ndarray) for v in element.values()):
        return Element("numpy", element, _numpy_table(element))
    if isinstance(element, list) and element and all(isinstance(r, bytes) for r in element):
        return Element("examples", element, None)
    if isinstance(element, list) and all(isinstance(r, Mapping) for r in element):
        return Element("rows", element, _rows_table(element))
    raise BeamscoreError(
        f"cannot score an element of type {_describe(element)}; expected a pyarrow.Table or RecordBatch, "
        "a dict of numpy arrays, a list of row dicts or of serialized tf.train.Example records "
        "(beam.BatchElements makes lists), or a (key, one of those) pair"
    )


def _is_batch(value: Any) -> bool:
    return isinstance(value, pa.Table | pa.RecordBatch | list) or (
        isinstance(value, Mapping) and bool(value) and all(isinstance(v, np.ndarray) for v in value.values())
    )


def _describe(element: Any) -> str:
    if isinstance(element, list | tuple) and element:
        return f"{type(element).__name__} of {type(element[0]).__name__}"
    return type(element).__name__


def _numpy_table(columns: Mapping[str, np.ndarray]) -> pa.Table:
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise BeamscoreError(f"numpy columns of one element must have one length; lengths: {lengths}")
    return pa.table({name: from_numpy(values) for name, values in columns.items()})


def _rows_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Rows to columns, stacking each column's values so numpy dtypes survive (a list of
    float32 arrays stays float32); a column whose rows differ in shape becomes an Arrow list."""
    names = list(rows[0]) if rows else []
    columns = {}
    for name in names:
        try:
            values = [row[name] for row in rows]
        except KeyError:
            missing = next(i for i, row in enumerate(rows) if name not in row)
            raise BeamscoreError(f"row {missing} of a list of row dicts has no key {name!r}, which row 0 has") from None
        try:
            stacked = np.stack([np.asarray(v) for v in values])
            if stacked.dtype == object and any(v is None for v in values):
                raise ValueError("a None among the values")
            columns[name] = from_numpy(stacked)
        except ValueError:  # ragged, mixed or with None: Arrow types it (validation names the bad rows)
            columns[name] = pa.array([np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for v in values])
    return pa.table(columns)


def pack(
    element: Element,
    good: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    keep: Sequence[str] | None = None,
    variable: Collection[str] = (),
) -> Any:
    """The element's kind again: its ``good`` rows (all columns, or ``keep``) and one column
    per prediction (``variable``: those written as variable-length lists, see
    :func:`beamscore.io.arrow.from_numpy`). A prediction named like a kept input column is an
    error, not a silent replacement."""
    all_rows = len(good) == element.num_rows
    if element.kind == "examples":
        records = element.original if all_rows else [element.original[i] for i in good.tolist()]
        out = _rows_out([{EXAMPLE: r} for r in records], predictions)
        return (element.key, out) if element.keyed else out
    names = element.table.column_names if keep is None else list(keep)
    clash = sorted(set(names) & set(predictions))
    if clash:
        raise BeamscoreError(
            f"{element.where}: prediction {clash[0]!r} has the name of an input column; "
            "choose outputs=[...] or keep=[...] so that names do not collide"
        )
    if element.kind == "numpy":
        kept = {n: element.original[n] if all_rows else element.original[n][good] for n in names}
        out = {**kept, **predictions}
    elif element.kind == "rows":
        rows = element.original if all_rows else [element.original[i] for i in good.tolist()]
        out = _rows_out([{n: row[n] for n in names} for row in rows], predictions)
    else:
        table = element.table if all_rows else take_rows(element.table, good)
        columns = {n: table[n] for n in names}
        columns.update({k: from_numpy(v, k in variable) for k, v in predictions.items()})
        out = pa.table(columns)
        if element.kind == "record_batch":
            out = out.combine_chunks().to_batches()[0] if out.num_rows else pa.RecordBatch.from_pylist([], out.schema)
    return (element.key, out) if element.keyed else out


def _rows_out(rows: list[dict], predictions: Mapping[str, np.ndarray]) -> list[dict]:
    for key, values in predictions.items():
        for row, value in zip(rows, values, strict=True):
            row[key] = value
    return rows
