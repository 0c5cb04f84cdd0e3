"""Iceberg tables as inputs, through ``pyiceberg``: one snapshot, resolved once.

A table is named by its directory (its latest ``metadata/*.metadata.json``), by one metadata
file, or by catalog (``iceberg://CATALOG/db.table``, configured as pyiceberg configures
catalogs: ``~/.pyiceberg.yaml`` or ``PYICEBERG_CATALOG__NAME__URI``...). ``--table-version``
is a snapshot id, ``--table-as-of`` a time. The snapshot's scan plan gives the live data
files; its schema gives each column's field id, by which the files are read (a renamed
column gets the table's values, a column added after a file was written is null there).
Delete files (row-level deletes) are refused in one line: beamscore does not apply them yet.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from typing import Any

import pyarrow as pa

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.tables import where as wh
from beamscore.tables.snapshot import TableColumn, TableFile, TableSnapshot, iso_ms
from beamscore.wording import flag

__all__ = ["CATALOG_SCHEME", "latest_metadata", "resolve_iceberg"]

CATALOG_SCHEME = "iceberg://"
_NUMBERED = re.compile(r"^(?:v)?(\d+)(?:-.*)?\.metadata\.json$")


def _pyiceberg():
    try:
        import pyiceberg.table  # noqa: F401
    except ImportError:
        raise BeamscoreError(
            "reading an Iceberg table needs the pyiceberg package: pip install 'beamscore[iceberg]'"
        ) from None


def latest_metadata(directory: str) -> str:
    """The newest ``metadata/*.metadata.json`` of the table at ``directory``: the one
    ``metadata/version-hint.text`` names, else the highest numbered."""
    fs, path = bfs.filesystem(directory)
    meta = bfs.join(path, "metadata")
    hint = bfs.join(meta, "version-hint.text")
    if fs.exists(hint):
        number = fs.cat_file(hint).decode().strip()
        for name in (f"v{number}.metadata.json", f"{number}.metadata.json"):
            if fs.exists(bfs.join(meta, name)):
                return bfs.unstrip(fs, bfs.join(meta, name))
    numbered = []
    for name in fs.glob(bfs.join(meta, "*.metadata.json")):
        m = _NUMBERED.match(posixpath.basename(name))
        if m:
            numbered.append((int(m.group(1)), name))
    if not numbered:
        raise BeamscoreError(f"Iceberg table {directory}: no numbered metadata/*.metadata.json to read")
    return bfs.unstrip(fs, max(numbered)[1])


def _load(given: str) -> tuple[Any, str]:
    """The pyiceberg table ``given`` names, and its location."""
    _pyiceberg()
    from pyiceberg.table import StaticTable

    try:
        if given.startswith(CATALOG_SCHEME):
            from pyiceberg.catalog import load_catalog

            rest = given[len(CATALOG_SCHEME) :]
            if "/" not in rest:
                raise BeamscoreError(f"--input {given!r}: write an Iceberg catalog table as iceberg://CATALOG/db.table")
            catalog, name = rest.split("/", 1)
            table = load_catalog(catalog).load_table(name)
        else:
            metadata = given if given.endswith(".metadata.json") else latest_metadata(given)
            table = StaticTable.from_metadata(metadata)
    except BeamscoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyiceberg's errors: one line, naming the table
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BeamscoreError(f"Iceberg table {given}: {type(exc).__name__}: {reason}") from None
    return table, table.location()


def _snapshot(table: Any, given: str, version: int | None, as_of: str | None) -> Any:
    if version is not None:
        snapshot = table.snapshot_by_id(version)
        if snapshot is None:
            ids = ", ".join(str(s.snapshot_id) for s in table.snapshots()[-5:]) or "none"
            raise BeamscoreError(
                f"Iceberg table {given}: no snapshot {version} ({flag('table_version')} is a snapshot id); "
                f"its latest snapshots: {ids}"
            )
        return snapshot
    if as_of is not None:
        try:
            when = dt.datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            raise BeamscoreError(
                f"{flag('table_as_of')} {as_of!r}: expected an ISO 8601 time such as 2026-12-01T06:00:00Z"
            ) from None
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        snapshot = table.snapshot_as_of_timestamp(int(when.timestamp() * 1000))
        if snapshot is None:
            raise BeamscoreError(f"Iceberg table {given}: no snapshot as of {as_of} (the table is younger)")
        return snapshot
    snapshot = table.current_snapshot()
    if snapshot is None:
        raise BeamscoreError(f"Iceberg table {given} has no snapshot yet (no rows were ever written)")
    return snapshot


def _local(url: str) -> str:
    """``file:///a/b`` as ``/a/b`` (the form beamscore gives local files); other URLs as they are."""
    return url[len("file://") :] if url.startswith("file://") else url


def _value(value: Any, type_: pa.DataType) -> Any:
    """A partition value as Iceberg stores it (days, microseconds) as a Python value of its column."""
    if isinstance(value, int) and not isinstance(value, bool):
        if pa.types.is_date(type_):
            return dt.date(1970, 1, 1) + dt.timedelta(days=value)
        if pa.types.is_timestamp(type_):
            return pa.scalar(value, pa.int64()).cast(type_).as_py()
    return value


def resolve_iceberg(
    given: str, version: int | None = None, as_of: str | None = None, where: str | None = None
) -> TableSnapshot:
    """The snapshot of the Iceberg table ``given`` names (see the module docstring)."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow
    from pyiceberg.transforms import IdentityTransform

    table, location = _load(given)
    snapshot = _snapshot(table, given, version, as_of)
    schemas = table.schemas()
    # the current snapshot is read with the table's current schema (a rename without new data
    # makes no snapshot); time travel with the schema of the snapshot asked for, as Spark reads it
    travel = version is not None or as_of is not None
    schema = (
        schemas.get(snapshot.schema_id, table.schema()) if travel and snapshot.schema_id is not None else table.schema()
    )
    arrow = schema_to_pyarrow(schema)
    columns = tuple(
        TableColumn(f.name, int(f.metadata[b"PARQUET:field_id"]) if f.metadata else None, f.type) for f in arrow
    )
    types = {c.name: c.type for c in columns}
    specs = table.specs()
    current_identity = {
        schema.find_field(pf.source_id).name
        for pf in table.spec().fields
        if isinstance(pf.transform, IdentityTransform) and schema.find_column_name(pf.source_id) is not None
    }
    files: list[TableFile] = []
    for task in table.scan(snapshot_id=snapshot.snapshot_id).plan_files():
        data = task.file
        if task.delete_files:
            kinds = sorted({str(d.content).rsplit(".", 1)[-1].lower() for d in task.delete_files})
            raise BeamscoreError(
                f"Iceberg table {given}: snapshot {snapshot.snapshot_id} has delete files ({', '.join(kinds)}) for "
                f"{_local(data.file_path)}, which beamscore does not apply yet; rewrite the table's data files "
                "(e.g. Spark's rewrite_data_files with delete-file-threshold 1) and score the new snapshot"
            )
        values: dict[str, Any] = {}
        spec = specs.get(data.spec_id)
        for i, pf in enumerate(spec.fields if spec is not None else []):
            name = schema.find_column_name(pf.source_id)
            if isinstance(pf.transform, IdentityTransform) and name in types:
                values[name] = _value(data.partition[i], types[name])
        files.append(TableFile(_local(data.file_path), data.file_size_in_bytes, data.record_count, values))
    files.sort(key=lambda f: f.url)
    before = len(files)
    if where is not None:
        conditions = wh.parse_where(where)
        wh.check_columns(conditions, {k: types[k] for k in sorted(current_identity)}, given)
        for f in files:
            lacking = next((c.column for c in conditions if c.column not in f.values), None)
            if lacking is not None:
                raise BeamscoreError(
                    f"{flag('where')}: {f.url} of Iceberg table {given} was written before the table was "
                    f"partitioned by {lacking!r}; --where can only prune files partitioned by it"
                )
        files = [f for f in files if wh.matches(f.values, conditions, types)]
    return TableSnapshot(
        format="iceberg",
        given=given,
        root=_local(location),
        version=snapshot.snapshot_id,
        timestamp=iso_ms(snapshot.timestamp_ms),
        files=tuple(TableFile(f.url, f.size, f.rows, {}) for f in files),  # Iceberg files store their columns
        columns=columns,
        where=where,
        files_before_where=before if where is not None else None,
    )
