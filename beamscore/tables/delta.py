"""Delta Lake tables as inputs, through ``deltalake`` (delta-rs): one snapshot, resolved once.

The table's log says which files are live at a version; the directory also holds the files
of every earlier version until a VACUUM. :func:`resolve_delta` loads the log at the latest
version, ``--table-version N`` or ``--table-as-of TIMESTAMP``, and returns the live files
with their partition values typed from the table's schema (``partition.KEY`` of delta-rs's
add actions). Column mapping is applied (a column is read from its file's physical name or
field id). Deletion vectors (rows deleted without rewriting their file), which a file read
cannot honour, are refused in one line.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.parse
from typing import Any

import pyarrow as pa

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.tables import where as wh
from beamscore.tables.snapshot import TableColumn, TableFile, TableSnapshot, iso_ms
from beamscore.wording import flag

__all__ = ["resolve_delta", "storage_options"]


def _deltalake():
    try:
        import deltalake
    except ImportError:
        raise BeamscoreError(
            "reading a Delta Lake table needs the deltalake package: pip install 'beamscore[delta]'"
        ) from None
    return deltalake


def storage_options(url: str) -> dict[str, str] | None:
    """delta-rs's storage options for ``url``: an S3 endpoint set for fsspec (an emulator,
    MinIO) is given to delta-rs too, so both read the same store."""
    if not url.startswith(("s3://", "s3a://")):
        return None
    import fsspec

    endpoint = (
        os.environ.get("AWS_ENDPOINT_URL")
        or os.environ.get("FSSPEC_S3_ENDPOINT_URL")
        or (fsspec.config.conf.get("s3") or {}).get("endpoint_url")
    )
    options = {"AWS_REGION": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options


def _timestamp(text: str) -> dt.datetime:
    """``--table-as-of``: an ISO 8601 date or time; without a zone it is UTC."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BeamscoreError(
            f"{flag('table_as_of')} {text!r}: expected an ISO 8601 time such as 2026-12-01T06:00:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def resolve_delta(
    given: str,
    root: str,
    version: int | None = None,
    as_of: str | None = None,
    where: str | None = None,
) -> TableSnapshot:
    """The snapshot of the Delta table at ``root`` (see the module docstring)."""
    deltalake = _deltalake()
    try:
        table = deltalake.DeltaTable(root, version=version, storage_options=storage_options(root))
        if as_of is not None:
            table.load_as_version(_timestamp(as_of))
    except BeamscoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - delta-rs's errors: one line, naming what was asked
        asked = f" at version {version}" if version is not None else f" as of {as_of}" if as_of else ""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BeamscoreError(f"Delta Lake table {root}{asked}: {reason}") from None
    _check_features(table, root)
    schema = pa.schema(table.schema().to_arrow())
    partition_columns = list(table.metadata().partition_columns)
    partitions = {name: schema.field(name).type for name in partition_columns}
    physical = {c.name: c.physical for c in _columns(table, schema)}
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    files = [
        TableFile(
            _file_url(root, row["path"]),
            row.get("size_bytes"),
            row.get("num_records"),
            {k: row.get(f"partition.{k}", row.get(f"partition.{physical.get(k)}")) for k in partition_columns},
        )
        for row in adds
    ]
    files.sort(key=lambda f: f.url)
    before = len(files)
    if where is not None:
        conditions = wh.parse_where(where)
        wh.check_columns(conditions, partitions, root)
        files = [f for f in files if wh.matches(f.values, conditions, partitions)]
    return TableSnapshot(
        format="delta",
        given=given,
        root=root,
        version=table.version(),
        timestamp=_commit_time(table, root),
        files=tuple(files),
        columns=_columns(table, schema),
        partitions=partitions,
        where=where,
        files_before_where=before if where is not None else None,
    )


def _check_features(table: Any, root: str) -> None:
    """Refuse, in one line, what reading the files by name would get wrong."""
    protocol = table.protocol()
    features = {f.lower() for f in (protocol.reader_features or [])}
    config = table.metadata().configuration or {}
    if "deletionvectors" in features and config.get("delta.enableDeletionVectors", "true").lower() == "true":
        raise BeamscoreError(
            f"Delta Lake table {root} uses deletion vectors (rows deleted without rewriting their files), which "
            "beamscore does not apply yet; rewrite its files without them (Spark: REORG TABLE ... APPLY (PURGE)) "
            "or disable them and OPTIMIZE"
        )


def _columns(table: Any, schema: pa.Schema) -> tuple[TableColumn, ...]:
    """The table's columns; with column mapping, the name (mode ``name``) or field id (mode
    ``id``) its files give each, so that a renamed column is read from its file's column."""
    mode = ((table.metadata().configuration or {}).get("delta.columnMapping.mode") or "none").lower()
    out = []
    for field, arrow in zip(table.schema().fields, schema, strict=True):
        meta = field.metadata or {}
        found_id = meta.get("delta.columnMapping.id")
        physical = meta.get("delta.columnMapping.physicalName")
        out.append(
            TableColumn(
                field.name,
                int(found_id) if mode == "id" and found_id is not None else None,
                arrow.type,
                physical if mode == "name" and physical else None,
            )
        )
    return tuple(out)


def _file_url(root: str, path: str) -> str:
    """An add action's path as a URL beamscore opens. The log holds it as a URI, percent-encoded
    (a partition value ``a b/c`` is the directory ``c=a%20b%2Fc``, logged as
    ``c=a%2520b%252Fc``): decoded once; a relative path is under the root."""
    path = urllib.parse.unquote(path)
    if "://" in path or path.startswith("/"):
        return path
    return bfs.join(root, path)


def _commit_time(table: Any, root: str) -> str:
    """When the loaded version was committed, as ``--table-as-of`` reads it, so that the
    manifest's time given back to ``--table-as-of`` reads the same version.

    Delta's time travel (the protocol, Spark and delta-rs alike) compares a time with the
    modification time of the version's log file, not with the ``timestamp`` of its commit
    info, which the writer stamps before it writes the file: on a loaded machine the two
    differ by milliseconds, and a time copied from ``history()`` reads the version before.
    With in-commit timestamps on, the commit info's time is the one time travel uses."""
    version = table.version()
    config = table.metadata().configuration or {}
    if config.get("delta.enableInCommitTimestamps", "false").lower() != "true":
        try:
            fs, path = bfs.filesystem(bfs.join(root, "_delta_log", f"{version:020d}.json"))
            return iso_ms(fs.modified(path).timestamp() * 1000)
        except Exception:  # noqa: BLE001 - a store that does not say: the commit info's time below
            pass
    try:
        for entry in table.history():
            if entry.get("version") == version:
                return iso_ms(entry.get("timestamp"))
    except Exception:  # noqa: BLE001 - a log without commit info: the time is unknown, not an error
        return ""
    return ""
