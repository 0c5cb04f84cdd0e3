"""Read a table snapshot's data files by the table's columns, not the files' own names.

:class:`TableSource` is the Parquet source (same work units, checks and dead letters) with
three differences, all decided on the launcher from the :class:`~beamscore.tables.snapshot.TableSnapshot`:

- a column is found in a file by its field id where the table has them (Iceberg, Delta's
  column mapping mode ``id``) or by its physical name (mode ``name``): a column
  renamed after the file was written is read from the file's old physical column, a column
  added (or dropped and added again) after it is null in that file's rows, never the
  file's old column of the same name;
- partition columns the files do not store (Delta's) are constant columns typed from the
  table's schema, with each file's value from the table's log, not parsed from its path;
- directory names are not read as hive partition keys (the table's metadata says them).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from beamscore.io import structs
from beamscore.io.base import UnreadRows, WorkUnit
from beamscore.io.parquet import ParquetSource
from beamscore.tables.snapshot import TableColumn, TableSnapshot

__all__ = ["TableSource"]

_FIELD_ID = b"PARQUET:field_id"


class TableSource(ParquetSource):
    """Parquet data files of one table snapshot, read by the table's columns."""

    def __init__(self, rows_per_unit: int = 1 << 20, pad: Any = None) -> None:
        super().__init__(rows_per_unit, pad)
        self.table_columns: tuple[TableColumn, ...] = ()
        #: file URL -> its values of the partition columns the files do not store
        self.constants: dict[str, dict[str, Any]] = {}
        self.constant_types: dict[str, pa.DataType] = {}

    @classmethod
    def of(cls, source: ParquetSource, snapshot: TableSnapshot) -> TableSource:
        """``source`` (bound to the signature) reading ``snapshot``'s files."""
        table = cls.__new__(cls)
        table.__dict__.update(copy.copy(source.__dict__))
        table.table_columns = snapshot.columns
        table.constant_types = dict(snapshot.partitions)
        table.constants = {f.url: dict(f.values) for f in snapshot.files if snapshot.partitions}
        return table

    def with_files(self, files: Sequence[str]) -> TableSource:
        planned = copy.copy(self)
        planned.partitions = {}  # no hive keys from directory names: the table says its partitions
        planned.first_files = tuple(files[:64])
        return planned

    def _mapping(self, schema: pa.Schema) -> dict[str, str | None]:
        """Table column -> the file's physical column holding it (``None``: the file has none)."""
        by_id = {
            int(f.metadata[_FIELD_ID]): f.name for f in schema if f.metadata is not None and _FIELD_ID in f.metadata
        }
        out: dict[str, str | None] = {}
        for c in self.table_columns:
            if c.name in self.constant_types:
                continue
            if c.physical is not None:
                out[c.name] = c.physical if c.physical in schema.names else None
            elif c.field_id is not None:
                out[c.name] = by_id.get(c.field_id)
            else:
                out[c.name] = c.name if c.name in schema.names else None
        return out

    def _types(self, schema: pa.Schema, path: str) -> dict[str, pa.DataType]:
        """The table's columns as this file holds them (a column it lacks: the table's type)."""
        mapping = self._mapping(schema)
        types: dict[str, pa.DataType] = {}
        for c in self.table_columns:
            if c.name in self.constant_types:
                types[c.name] = self.constant_types[c.name]
            else:
                physical = mapping[c.name]
                types[c.name] = c.type if physical is None else schema.field(physical).type
        for name, type_ in structs.field_types(schema).items():  # struct fields of columns not renamed
            parent = name.split(".", 1)[0]
            if mapping.get(parent) == parent:
                types.setdefault(name, type_)
        return types

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table | UnreadRows]:
        mapping = self._mapping(self._file(unit.path, lambda f: f.schema_arrow))
        physical: list[str] = []
        for c in columns:
            if c in self.constant_types:
                continue
            found = mapping.get(c, c) if c in mapping else c  # a struct field: as stored
            if found is not None:
                physical.append(found)
        physical = list(dict.fromkeys(physical))
        values = self.constants.get(unit.path, {})
        for item in super().read(unit, physical, batch_size):
            yield item if not isinstance(item, pa.Table) else self._as_table(item, columns, mapping, values)

    def _as_table(
        self, batch: pa.Table, columns: list[str], mapping: dict[str, str | None], values: dict[str, Any]
    ) -> pa.Table:
        """A batch of physical columns as the table's columns, in the order asked for."""
        rows = batch.num_rows
        arrays = []
        for c in columns:
            if c in self.constant_types:
                arrays.append(pa.repeat(pa.scalar(values.get(c), type=self.constant_types[c]), rows))
            elif c in mapping and mapping[c] is None:
                arrays.append(pa.nulls(rows, type=next(t.type for t in self.table_columns if t.name == c)))
            else:
                arrays.append(batch.column(mapping.get(c) or c))
        return pa.table(arrays, names=list(columns))
