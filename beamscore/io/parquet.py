"""Parquet source: read only the needed columns, stream by row group, split big files.

Work units are runs of consecutive row groups of about ``rows_per_unit`` rows, so a large
file spreads over several workers while a small file stays one unit. Reading uses
``ParquetFile.iter_batches`` over the unit's row groups, which streams and never loads the
file whole.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.io.arrow import column_spec
from beamscore.io.base import FilePlan, Source, WorkUnit
from beamscore.io.tails import OutsideTail, TailFile
from beamscore.model.binding import ColumnSpec

__all__ = ["ParquetSource"]

DEFAULT_ROWS_PER_UNIT = 1 << 20
#: pyarrow's first read of a file is its last 64 KiB: with those, most footers parse
#: without another request.
FOOTER_TAIL = 64 << 10


class ParquetSource(Source):
    """Reads ``.parquet`` files through fsspec."""

    format = "parquet"
    options = ("rows_per_unit",)
    tail_bytes = FOOTER_TAIL

    def __init__(self, rows_per_unit: int = DEFAULT_ROWS_PER_UNIT) -> None:
        self.rows_per_unit = rows_per_unit

    def columns(self, path: str) -> dict[str, ColumnSpec]:
        return _columns(self._file(path, lambda f: f.schema_arrow))

    def units(self, path: str, shard: int) -> list[WorkUnit]:
        return self._units(path, shard, self._file(path, lambda f: f.metadata))

    def plan_file(self, path: str, shard: int, tail: bytes | None = None, size: int | None = None) -> FilePlan:
        """Columns and units from the footer: parsed from ``tail`` when it holds the whole
        footer, else read from the file (one more open for footers over 64 KiB)."""
        pf = None
        if tail is not None and size is not None:
            try:
                pf = _open(pq.ParquetFile, TailFile(size, tail), path)
            except OutsideTail:
                pf = None
        if pf is None:
            return self._file(path, lambda f: FilePlan(_columns(f.schema_arrow), self._units(path, shard, f.metadata)))
        return FilePlan(_columns(pf.schema_arrow), self._units(path, shard, pf.metadata))

    def _units(self, path: str, shard: int, meta: pq.FileMetaData) -> list[WorkUnit]:
        units: list[WorkUnit] = []
        start, rows, first_row = 0, 0, 0
        for rg in range(meta.num_row_groups):
            rows += meta.row_group(rg).num_rows
            if rows >= self.rows_per_unit or rg == meta.num_row_groups - 1:
                units.append(WorkUnit(shard, len(units), path, start, rg + 1, rows, first_row))
                start, rows, first_row = rg + 1, 0, first_row + rows
        if not units:  # a file with no row groups still gets a unit (and an empty output)
            units.append(WorkUnit(shard, 0, path, 0, 0, 0))
        return units

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table]:
        fs, path = bfs.filesystem(unit.path)
        with fs.open(path, "rb") as f:
            pf = _open(pq.ParquetFile, f, unit.path)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise BeamscoreError(
                    f"{unit.path}: no column {missing[0]!r}; columns: {', '.join(pf.schema_arrow.names)}"
                )
            row_groups = list(range(unit.start, unit.stop))
            empty = True
            if row_groups:
                for batch in pf.iter_batches(batch_size=batch_size, row_groups=row_groups, columns=columns):
                    empty = False
                    yield pa.Table.from_batches([batch])
            if empty:  # zero rows: one empty batch, so the unit still gets its (empty) output
                yield pf.schema_arrow.empty_table().select(columns)

    def _file(self, path: str, get):
        fs, local = bfs.filesystem(path)
        with fs.open(local, "rb") as f:
            return get(_open(pq.ParquetFile, f, path))


def _columns(schema: pa.Schema) -> dict[str, ColumnSpec]:
    return {name: column_spec(name, schema.field(name).type) for name in schema.names}


def _open(factory, f, path: str):
    try:
        return factory(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BeamscoreError(f"{path}: not a readable Parquet file: {exc}") from None
