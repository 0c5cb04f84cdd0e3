"""Read Parquet files whose fixed-size list columns have null rows, which pyarrow cannot.

polars (``Array``), pyarrow (``fixed_size_list``) and duckdb (``FLOAT[8]``) all write such
files, and polars and duckdb read them back, but pyarrow 25 fails on the whole row group:

* polars and pyarrow store the column as a Parquet LIST and record ``fixed_size_list`` in
  the ``ARROW:schema`` footer key; pyarrow then refuses the null row's zero length
  (``Expected all lists to be of size=N but index i had size=0``). Read without that key,
  the column is a plain list with a null row, which pyarrow reads. The footer is re-read
  with the key renamed (same length, so the Thrift stays valid) and handed to
  ``ParquetFile(metadata=...)``; the other columns are cast back to their recorded types.
* duckdb writes a NULL ``FLOAT[8]`` as eight null levels, which pyarrow cannot read as any
  list type (``Length spanned by list offsets ... larger than values array``). polars reads
  it: when polars is installed (``pip install beamscore[polars]``) the rest of the unit is
  read with polars; otherwise the error stands (the unit's remaining rows become a dead
  letter naming it and the fix).

Either way the null rows reach validation as nulls and become dead letters; the other rows
are scored.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from beamscore.errors import BeamscoreError

__all__ = ["INT96_UNIT", "is_list_error", "read_lenient"]

#: The unit of INT96 timestamps (Spark, Hive, Impala), for every Parquet reader here: pyarrow's
#: default, ns, wraps any date outside 1677-2262 (Spark's 9999-12-31 "no end" became
#: 1816-03-29) without a word; us holds years 1-9999 and is Spark's own precision.
INT96_UNIT = "us"

_LIST_ERRORS = ("Expected all lists to be of size", "Length spanned by list offsets")
_ARROW_KEY = b"ARROW:schema"


def is_list_error(exc: BaseException) -> bool:
    """Whether ``exc`` is pyarrow failing on a null row of a (fixed-size) list column."""
    return isinstance(exc, pa.ArrowInvalid) and any(m in str(exc) for m in _LIST_ERRORS)


def read_lenient(
    f: BinaryIO,
    url: str,
    schema: pa.Schema,
    row_groups: Sequence[int],
    first_row: int,
    columns: list[str],
    batch_size: int,
    skip: int,
    cause: BaseException,
) -> Iterator[pa.Table]:
    """The unit's rows after the first ``skip`` (already read), read around ``cause``.

    ``row_groups`` are the unit's row groups, ``first_row`` the index of its first row in
    the file and ``schema`` the file's Arrow schema, to which columns are cast back."""
    done = skip
    footer = _footer(f)
    if footer.count(_ARROW_KEY) == 1:
        try:
            for table in _without_arrow_schema(f, footer, row_groups, columns, batch_size, skip):
                done += table.num_rows
                yield _restore(table, schema)
            return
        except pa.ArrowInvalid as exc:
            if not is_list_error(exc):
                raise
            cause = exc
    rows = sum(_row_group_rows(f, row_groups)) - done
    yield from _with_polars(f, url, schema, first_row + done, rows, columns, batch_size, cause)


def _without_arrow_schema(f: BinaryIO, footer: bytes, row_groups, columns, batch_size, skip) -> Iterator[pa.Table]:
    renamed = footer.replace(_ARROW_KEY, b"ARROW:schem_")
    rebuild = pq.read_metadata(f).__reduce__()[0]  # pyarrow's own FileMetaData-from-Thrift
    pf = pq.ParquetFile(
        f,
        metadata=rebuild(pa.py_buffer(renamed)),
        page_checksum_verification=True,
        coerce_int96_timestamp_unit=INT96_UNIT,
    )
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=list(row_groups), columns=columns):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        yield pa.Table.from_batches([batch.slice(skip)])
        skip = 0


def _footer(f: BinaryIO) -> bytes:
    f.seek(0, 2)
    size = f.tell()
    f.seek(size - 8)
    (length,) = struct.unpack("<i", f.read(4))
    f.seek(size - 8 - length)
    return f.read(length)


def _row_group_rows(f: BinaryIO, row_groups) -> list[int]:
    meta = pq.read_metadata(f)
    return [meta.row_group(rg).num_rows for rg in row_groups]


def _with_polars(f, url, schema, offset, rows, columns, batch_size, cause) -> Iterator[pa.Table]:
    try:
        import polars as pl
    except ImportError:
        raise BeamscoreError(
            f"{url}: pyarrow cannot read a null row of a list column ({cause}); "
            "install polars (pip install 'beamscore[polars]') to read such files"
        ) from None
    f.seek(0)
    frame = pl.scan_parquet(f).slice(offset, rows).select(columns).collect()
    table = _restore(frame.to_arrow(), schema)
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)


def _restore(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast each column back to the type the file records, where the cast works."""
    arrays = []
    for name in table.column_names:
        column = table[name]
        want = schema.field(name).type
        if column.type != want:
            # a fixed-size list with null rows may stay a list: validation handles both
            with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                column = column.cast(want)
        arrays.append(column)
    return pa.table(arrays, names=table.column_names)
