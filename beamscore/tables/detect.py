"""Which table, if any, a path is or lies inside: Delta Lake, Iceberg, Hudi.

A table's directory holds the files of every version it had (a delete, an update or an
overwrite writes new files and leaves the old ones until a VACUUM or an expiry), and only
its log or metadata says which are live. Files matched inside a table and read as plain
files score stale rows with no error, so :func:`refuse_stale_reads` refuses any input inside
a table unless the user says they mean the raw files (``--raw-files``).

A directory is a table's root when it holds ``_delta_log/`` (Delta), ``.hoodie/`` (Hudi) or
``metadata/*.metadata.json`` (Iceberg). Each matched file's parent directories are looked up
once per directory, up to the filesystem's or bucket's root, never once per file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError

__all__ = ["FOUND_LABELS", "TableFound", "refuse_stale_reads", "table_around", "table_at"]

#: a table format as the refusals name it
FOUND_LABELS = {"delta": "Delta Lake", "iceberg": "Iceberg", "hudi": "Hudi"}


@dataclass(frozen=True)
class TableFound:
    """A table's format (``delta``, ``iceberg``, ``hudi``) and its root's URL."""

    format: str
    root: str


def table_at(fs: fsspec.AbstractFileSystem, path: str) -> str | None:
    """The format of the table whose root is the directory ``path``, or ``None``."""
    path = path.rstrip("/") or "/"
    if fs.exists(bfs.join(path, "_delta_log")):
        return "delta"
    if fs.exists(bfs.join(path, ".hoodie")):
        return "hudi"
    metadata = bfs.join(path, "metadata")
    if fs.exists(metadata) and fs.glob(bfs.join(metadata, "*.metadata.json")):
        return "iceberg"
    return None


def _parents(path: str) -> list[str]:
    """``path``'s directories, innermost first, up to ``/`` (local) or the bucket."""
    out = []
    current = posixpath.dirname(path.rstrip("/"))
    while current and current not in out:
        out.append(current)
        parent = posixpath.dirname(current)
        if parent == current or not parent:
            break
        current = parent
    return out


#: directories looked up at once on an object store (each lookup is a few requests)
LOOKUP_THREADS = 16


def table_around(urls: Sequence[str]) -> dict[str, TableFound]:
    """For each of ``urls`` inside a table (or a table's root), the table. The files are
    grouped by directory first and each directory (and each parent, up to the root) is looked
    up once, whatever the number of files in it; on an object store the lookups run
    concurrently."""
    by_directory: dict[str, list[str]] = {}
    for url in urls:
        by_directory.setdefault(url.rsplit("/", 1)[0] if "/" in url else "", []).append(url)
    filesystems: dict[str, fsspec.AbstractFileSystem] = {}
    chains: list[tuple[fsspec.AbstractFileSystem, list[str], list[str]]] = []
    for directory_url, members in by_directory.items():
        scheme = directory_url.split("://", 1)[0] if "://" in directory_url else ""
        if scheme not in filesystems:
            filesystems[scheme] = bfs.filesystem(members[0])[0]
        fs = filesystems[scheme]
        chains.append((fs, _parents(fs._strip_protocol(members[0])), members))
    wanted = {(id(fs), d): (fs, d) for fs, parents, _ in chains for d in parents}
    threads = 1 if all(bfs.is_local(fs) for fs in filesystems.values()) else LOOKUP_THREADS
    with ThreadPoolExecutor(max_workers=threads) as pool:
        kinds = dict(zip(wanted, pool.map(lambda pair: table_at(*pair), wanted.values()), strict=True))
    found: dict[str, TableFound] = {}
    for fs, parents, members in chains:
        for directory in parents:  # innermost first: a table inside a table's folder is the one
            kind = kinds[(id(fs), directory)]
            if kind is not None:
                found.update(dict.fromkeys(members, TableFound(kind, bfs.unstrip(fs, directory))))
                break
    return found


def refusal(url: str, table: TableFound, pattern: str) -> str:
    """One line: ``url`` lies in ``table``; how to read it as a table, or as files on purpose."""
    label = FOUND_LABELS[table.format]
    where = "is" if url.rstrip("/") == table.root.rstrip("/") else "lies inside"
    head = f"--input {pattern!r}: {url} {where} the {label} table {table.root}, whose directory also holds "
    head += "the files of earlier versions (deleted, updated and overwritten rows)"
    if table.format == "hudi":
        how = (
            "beamscore does not read Hudi tables: write a snapshot to Parquet with the table's own reader "
            "(Spark: spark.read.format('hudi').load(ROOT).write.parquet(DIR)) and score that"
        )
    else:
        extra = "beamscore[delta]" if table.format == "delta" else "beamscore[iceberg]"
        how = f"give the table's root {table.root} as --input to score its current snapshot (with {extra} installed)"
    return f"{head}; {how}, or add --raw-files if you mean these files as they are"


def refuse_stale_reads(patterns: Sequence[str], files: Sequence[str]) -> None:
    """Refuse when any of ``files`` (listed from ``patterns``) lies inside a table."""
    found = table_around(files)
    if not found:
        return
    url = next(u for u in files if u in found)
    pattern = next((p for p in patterns if _from(p, url)), patterns[0])
    raise BeamscoreError(refusal(url, found[url], pattern))


def _from(pattern: str, url: str) -> bool:
    """Whether ``url`` plausibly came from ``pattern`` (for naming it in the refusal)."""
    import fnmatch

    bare = pattern.split("://", 1)[-1].rstrip("/")
    path = url.split("://", 1)[-1]
    return fnmatch.fnmatch(path, bare) or path.startswith(bare + "/") or path == bare
