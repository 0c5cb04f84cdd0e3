"""Tables as inputs: Delta Lake and Iceberg snapshots, and the refusal of stale reads.

:func:`resolve_input` says whether an ``--input`` names a table (a Delta table's root, an
Iceberg table's directory or metadata file, ``iceberg://CATALOG/db.table``) and resolves it
to one :class:`~beamscore.tables.snapshot.TableSnapshot`;
:func:`~beamscore.tables.detect.refuse_stale_reads` refuses files that lie inside a table.
"""

from __future__ import annotations

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.tables.detect import FOUND_LABELS, refusal, table_at
from beamscore.tables.iceberg import CATALOG_SCHEME
from beamscore.tables.snapshot import TableSnapshot

__all__ = ["TableSnapshot", "resolve_input"]


def table_kind(given: str) -> str | None:
    """``delta``, ``iceberg`` or ``hudi`` when ``given`` names a table (not a file inside one)."""
    if given.startswith(CATALOG_SCHEME):
        return "iceberg"
    if any(c in given for c in "*?["):
        return None
    fs, path = bfs.filesystem(given)
    if path.endswith(".metadata.json") and posix_parent(path).endswith("/metadata") and fs.isfile(path):
        return "iceberg"
    if not fs.isdir(path):
        return None
    return table_at(fs, path)


def posix_parent(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0]


def resolve_input(
    given: str,
    version: int | None = None,
    as_of: str | None = None,
    where: str | None = None,
) -> TableSnapshot | None:
    """The snapshot of the table ``given`` names, or ``None`` when it names files."""
    kind = table_kind(given)
    if kind is None:
        return None
    if kind == "hudi":
        fs, path = bfs.filesystem(given)
        from beamscore.tables.detect import TableFound

        raise BeamscoreError(refusal(given, TableFound("hudi", bfs.unstrip(fs, path.rstrip("/"))), given))
    if version is not None and as_of is not None:
        raise BeamscoreError("give --table-version or --table-as-of, not both")
    if kind == "delta":
        from beamscore.tables.delta import resolve_delta

        fs, path = bfs.filesystem(given)
        root = bfs.unstrip(fs, path.rstrip("/"))
        snapshot = resolve_delta(given, root, version, as_of, where)
    else:
        from beamscore.tables.iceberg import resolve_iceberg

        snapshot = resolve_iceberg(given, version, as_of, where)
    if not snapshot.files and where is None:
        raise BeamscoreError(
            f"the {FOUND_LABELS[kind]} table {snapshot.root} holds no data files at "
            f"{'version' if kind == 'delta' else 'snapshot'} {snapshot.version}: nothing to score"
        )
    if not snapshot.files:
        raise BeamscoreError(
            f"--where {where!r} keeps none of the {snapshot.files_before_where} files of the {FOUND_LABELS[kind]} "
            f"table {snapshot.root} at {'version' if kind == 'delta' else 'snapshot'} {snapshot.version}: "
            "no partition matches"
        )
    return snapshot
