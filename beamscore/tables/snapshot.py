"""One table snapshot, resolved on the launcher: what a job reads of a Delta or Iceberg table.

A table given as ``--input`` is resolved once (:mod:`beamscore.tables.delta`,
:mod:`beamscore.tables.iceberg`) into a :class:`TableSnapshot`: its format, root, version
(Delta) or snapshot id (Iceberg) and that version's timestamp, the live data files with the
partition values each holds (typed from the table's schema, never guessed from paths), and
the table's columns with their field ids. From there the files become work units like any
other Parquet files (:class:`beamscore.tables.source.TableSource` reads them by the table's
columns), so runners, resume and dead letters do not change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from beamscore import fs as bfs

__all__ = ["TableColumn", "TableFile", "TableSnapshot", "iso_ms", "table_line"]


@dataclass(frozen=True)
class TableColumn:
    """A column of the table's schema: its name now, its field id (Iceberg, Delta's column
    mapping mode ``id``; ``None``: read by name), its type, and the name its data files give
    it when that is not ``name`` (Delta's column mapping mode ``name``)."""

    name: str
    field_id: int | None
    type: pa.DataType
    physical: str | None = None


@dataclass(frozen=True)
class TableFile:
    """A live data file of the snapshot: its URL, size, row count, and the values of the
    partition columns the file does not store (Delta's; typed from the table's schema)."""

    url: str
    size: int | None
    rows: int | None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSnapshot:
    """A table at one version: what the job reads, and what its manifest records."""

    format: str  # "delta" or "iceberg"
    given: str  # the --input as given
    root: str  # the table's root (location) as a URL or path
    version: int  # Delta version, or Iceberg snapshot id
    timestamp: str  # when that version was committed, ISO 8601 UTC
    files: tuple[TableFile, ...]
    columns: tuple[TableColumn, ...]
    #: partition columns the data files do not store (Delta), by type
    partitions: dict[str, pa.DataType] = field(default_factory=dict)
    #: --where as given (already applied to ``files``)
    where: str | None = None
    #: files the table's metadata held before --where pruned them
    files_before_where: int | None = None

    def facts(self) -> list[bfs.FileFacts]:
        """The files as a listing would give them: a table's data files are never rewritten in
        place, so their version is the snapshot's."""
        tag = f"{self.format}:{self.version}"
        return [bfs.FileFacts(f.url, f.size, tag) for f in self.files]

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``table``: what snapshot the job read."""
        out: dict[str, Any] = {
            "format": self.format,
            "root": self.root,
            "given": self.given,
            "version" if self.format == "delta" else "snapshot_id": self.version,
            "timestamp": self.timestamp,
            "files": len(self.files),
            "rows": sum(f.rows or 0 for f in self.files) if all(f.rows is not None for f in self.files) else None,
        }
        if self.where is not None:
            out["where"] = self.where
            out["files_before_where"] = self.files_before_where
        return out

    def identity(self) -> dict[str, Any]:
        """What a ``--resume`` must find unchanged: the same table at the same version."""
        return {"format": self.format, "root": self.root, "version": self.version, "where": self.where}


def iso_ms(ms: int | float | None) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC (``2026-12-07T03:00:00.123Z``)."""
    if ms is None:
        return ""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def table_line(table: dict[str, Any]) -> str:
    """``delta table /lake/t, version 3 (2026-12-01T06:00:00.000Z), where day = '2026-12-01'``."""
    kind = "version" if "version" in table else "snapshot"
    number = table.get("version", table.get("snapshot_id"))
    when = f" ({table['timestamp']})" if table.get("timestamp") else ""
    where = f", where {table['where']}" if table.get("where") else ""
    return f"{table.get('format')} table {table.get('root')}, {kind} {number}{when}{where}"
