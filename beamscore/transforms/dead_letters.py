"""Dead letters: the rows that could not be scored, with where they came from and why.

A row that cannot be decoded (bad CRC, truncated record), does not fit the signature (wrong
length, wrong type, a null, NaN under ``--reject-nan``) or makes the model raise is not
scored; it becomes one row of a dead-letter table that travels with its batch to the
writer, which commits it as ``OUTPUT/_errors/part-SSSSS-UUUUU.parquet`` next to the unit's
output. Columns: ``source`` (input file), ``unit`` (part name), ``row`` (row index in the
file), ``stage`` (``read``, ``validate`` or ``model``), ``error`` (one line) and ``raw`` (the
undecoded record, or the row as JSON, when it is at most ``RAW_LIMIT`` bytes; else null) and
``count``, the input rows the dead letter stands for: 1, or for a range of rows that could
not be read at all (``rows A-B unread: <reason>``, ``row`` is A) the length of the range.
``rows_failed`` is the sum of ``count``, so ``rows_in`` stays the rows the inputs hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beamscore.io.arrow import take_rows
from beamscore.io.base import BadRows, UnreadRows, WorkUnit

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "ERRORS_DIR",
    "RAW_LIMIT",
    "SCHEMA",
    "concat",
    "count",
    "for_element",
    "from_bad_rows",
    "from_element_rows",
    "from_table_rows",
    "from_unread",
]

ERRORS_DIR = "_errors"
RAW_LIMIT = 4096
#: at most this many rows of one call get their raw value (the rest: null), to bound the cost
RAW_ROWS = 1000

SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("unit", pa.string()),
        ("row", pa.int64()),
        ("stage", pa.string()),
        ("error", pa.string()),
        ("raw", pa.large_binary()),
        ("count", pa.int64()),
    ]
)


#: the public name of :data:`SCHEMA` (``beamscore.DEAD_LETTER_SCHEMA``): the columns of every
#: dead-letter table, ``_errors/`` files and ``with_exception_handling()``'s outputs alike, as
#: ``beam.io.WriteToParquetBatched(..., schema=beamscore.DEAD_LETTER_SCHEMA)`` needs them
DEAD_LETTER_SCHEMA = SCHEMA


def _table(
    unit: WorkUnit,
    rows: np.ndarray,
    stage: str,
    errors: str | Sequence[str],
    raw: list,
    span: int = 1,
    member: WorkUnit | None = None,
) -> pa.Table:
    """Dead letters of ``unit``'s rows; ``member`` is the file of a packed unit they are in."""
    return _rows_table((member or unit).path, unit.name, rows, stage, errors, raw, span)


def _rows_table(
    source: str | Sequence[str],
    unit: str,
    rows: np.ndarray,
    stage: str,
    errors: str | Sequence[str],
    raw: list,
    span: int = 1,
) -> pa.Table:
    """Dead letters of one source (or one source per row); ``span`` is the input rows each
    one stands for (``count``)."""
    n = len(rows)
    error_col = pa.repeat(errors, n) if isinstance(errors, str) else pa.array(list(errors), pa.string())
    return pa.table(
        [
            pa.repeat(source, n) if isinstance(source, str) else pa.array(list(source), pa.string()),
            pa.repeat(unit, n),
            pa.array(np.asarray(rows, dtype=np.int64)),
            pa.repeat(stage, n),
            error_col.cast(pa.string()),
            pa.array(raw, pa.large_binary()),
            pa.repeat(pa.scalar(span, pa.int64()), n),
        ],
        schema=SCHEMA,
    )


def from_bad_rows(unit: WorkUnit, bad: BadRows, member: WorkUnit | None = None) -> pa.Table:
    """Dead letters for rows a source reported as undecodable (rows are file row indices;
    ``member``: the file of a packed unit the source was reading)."""
    raw = list(bad.raw) if bad.raw is not None else [None] * len(bad.rows)
    raw = [r if r is not None and len(r) <= RAW_LIMIT else None for r in raw]
    return _table(unit, np.asarray(bad.rows, dtype=np.int64), "read", bad.error, raw, member=member)


def from_unread(unit: WorkUnit, unread: UnreadRows, member: WorkUnit | None = None) -> pa.Table:
    """One dead letter for a range of rows that could not be read (``rows A-B unread: ...``;
    ``member``: the file of a packed unit the rows are in)."""
    if unread.count:
        error = f"rows {unread.start}-{unread.stop - 1} unread: {unread.reason}"
    else:  # the error came after the unit's last row: nothing is lost, but it is reported
        error = f"read error after row {unread.start - 1}, no rows unread: {unread.reason}"
    return _table(unit, np.asarray([unread.start], dtype=np.int64), "read", error, [None], unread.count, member)


def count(table: pa.Table | None) -> int:
    """The input rows a dead-letter table stands for (the sum of its ``count`` column)."""
    if table is None or not table.num_rows:
        return 0
    if "count" not in table.column_names:
        return table.num_rows
    return int(pc.sum(table["count"]).as_py())  # pyright: ignore[reportAttributeAccessIssue]


def from_table_rows(
    unit: WorkUnit, table: pa.Table, index: np.ndarray, positions: np.ndarray, errors: str | Sequence[str], stage: str
) -> pa.Table:
    """Dead letters for rows ``index`` of ``table`` (at unit ``positions``), raw as JSON."""
    if unit.members:  # a packed unit: each row names its own file
        sources, rows = unit.locate(np.asarray(positions, dtype=np.int64))
        return _rows_table(sources, unit.name, rows, stage, errors, _raw_json(table, index))
    rows = unit.file_row(0) + np.asarray(positions, dtype=np.int64)
    return _table(unit, rows, stage, errors, _raw_json(table, index))


def from_element_rows(source: str, rows: Any, index: np.ndarray, errors: str | Sequence[str], stage: str) -> pa.Table:
    """Dead letters for rows ``index`` of one element of a user's pipeline (no work unit):
    ``source`` says which element (its key), ``row`` is the row's index in the element and
    ``raw`` the row as JSON (``rows``: a table, a list of row dicts or a dict of numpy
    columns), or the record itself when ``rows`` are serialized records."""
    index = np.asarray(index, dtype=np.int64)
    if isinstance(rows, pa.Table):
        raw = _raw_json(rows, index)
    elif isinstance(rows, Mapping):  # numpy columns
        raw = [_json({k: v[i] for k, v in rows.items()}) for i in index[:RAW_ROWS].tolist()]
        raw += [None] * (len(index) - len(raw))
    else:
        raw = []
        for i in index[:RAW_ROWS].tolist():
            row = rows[i]
            if isinstance(row, bytes):
                raw.append(row if len(row) <= RAW_LIMIT else None)
            else:
                raw.append(_json(row) if isinstance(row, Mapping) else None)
        raw += [None] * (len(index) - len(raw))
    return _rows_table(source, "", index, stage, errors, raw)


def for_element(source: str, error: str) -> pa.Table:
    """One dead letter for a whole element that is no kind of batch (``None``, an ndarray...):
    ``row`` 0, ``count`` 1, no ``raw``."""
    return _rows_table(source, "", np.zeros(1, dtype=np.int64), "validate", error, [None])


def _json(row: Mapping[str, Any]) -> bytes | None:
    try:
        text = json.dumps(dict(row), default=_jsonable, allow_nan=True).encode()
    except (TypeError, ValueError):  # keys that are not strings, circular values
        return None
    return text if len(text) <= RAW_LIMIT else None


def _raw_json(table: pa.Table, index: np.ndarray) -> list[bytes | None]:
    """Rows ``index`` of ``table`` as JSON (the first ``RAW_ROWS`` of them; small ones only)."""
    index = np.asarray(index, dtype=np.int64)
    raw: list[bytes | None] = [None] * len(index)
    if len(index) and table.num_columns:
        head = index[:RAW_ROWS]
        for i, row in enumerate(take_rows(table, head).to_pylist()):  # failure path only
            text = json.dumps(row, default=_jsonable, allow_nan=True).encode()
            raw[i] = text if len(text) <= RAW_LIMIT else None
    return raw


def _jsonable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def concat(tables: Sequence[pa.Table | None]) -> pa.Table | None:
    """One dead-letter table from several (``None`` when there are none)."""
    present = [t for t in tables if t is not None and t.num_rows]
    if not present:
        return None
    return present[0] if len(present) == 1 else pa.concat_tables(present)
