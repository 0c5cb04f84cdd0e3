"""Parquet source: read only the needed columns, stream by row group, split big files.

Work units are runs of consecutive row groups of about ``rows_per_unit`` rows, so a large
file spreads over several workers while a small file stays one unit. Reading uses
``ParquetFile.iter_batches`` one row group at a time, which streams and never loads the
file whole.

Damage is detected, not scored: page checksums are verified when the writer stored them
(``page_checksum_verification``), and a row group that cannot be read (a page that fails
its CRC, a page header that does not parse) becomes one :class:`UnreadRows` for its unread
rows while the unit's other row groups are still read. A unit whose row groups no longer
hold the rows planned (the file was replaced after planning) is not read at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line
from beamscore.io.arrow import column_spec
from beamscore.io.base import Source, UnreadRows, WorkUnit
from beamscore.model.binding import ColumnSpec

__all__ = ["ParquetSource"]

DEFAULT_ROWS_PER_UNIT = 1 << 20


class ParquetSource(Source):
    """Reads ``.parquet`` files through fsspec."""

    format = "parquet"
    options = ("rows_per_unit",)

    def __init__(self, rows_per_unit: int = DEFAULT_ROWS_PER_UNIT) -> None:
        self.rows_per_unit = rows_per_unit

    def columns(self, path: str) -> dict[str, ColumnSpec]:
        schema = self._file(path, lambda f: f.schema_arrow)
        return {name: column_spec(name, schema.field(name).type) for name in schema.names}

    def units(self, path: str, shard: int) -> list[WorkUnit]:
        meta = self._file(path, lambda f: f.metadata)
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

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table | UnreadRows]:
        fs, path = bfs.filesystem(unit.path)
        with fs.open(path, "rb") as f:
            pf = _open(pq.ParquetFile, f, unit.path)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise BeamscoreError(
                    f"{unit.path}: no column {missing[0]!r}; columns: {', '.join(pf.schema_arrow.names)}"
                )
            meta = pf.metadata
            sizes = [meta.row_group(rg).num_rows for rg in range(unit.start, min(unit.stop, meta.num_row_groups))]
            if len(sizes) != unit.stop - unit.start or sum(sizes) != unit.rows:
                raise BeamscoreError(
                    f"{unit.path}: changed after planning: row groups {unit.start}-{unit.stop - 1} were planned "
                    f"with {unit.rows} rows, the file now has {meta.num_row_groups} row groups of {meta.num_rows} rows"
                )
            empty = True
            first = unit.file_row(0)
            for rg, size in zip(range(unit.start, unit.stop), sizes, strict=True):
                done = 0
                try:
                    for batch in pf.iter_batches(batch_size=batch_size, row_groups=[rg], columns=columns):
                        empty = False
                        done += batch.num_rows
                        yield pa.Table.from_batches([batch])
                except (OSError, pa.ArrowException) as exc:
                    if not self.dead_letters:
                        raise BeamscoreError(f"{unit.path}: row group {rg}: {first_line(str(exc))}") from None
                    reason = f"row group {rg}: {type(exc).__name__}: {first_line(str(exc))}"
                    yield UnreadRows(first + done, first + size, reason)
                first += size
            if empty:  # zero rows: one empty batch, so the unit still gets its (empty) output
                yield pf.schema_arrow.empty_table().select(columns)

    def _file(self, path: str, get):
        fs, local = bfs.filesystem(path)
        with fs.open(local, "rb") as f:
            return get(_open(pq.ParquetFile, f, path))


def _open(factory, f, path: str):
    try:
        return factory(f, page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BeamscoreError(f"{path}: not a readable Parquet file: {exc}") from None
