"""fsspec helpers shared by the model loader, the sources and the sinks.

Everything that touches storage goes through fsspec, so a local path, ``file://``,
``gs://`` (gcsfs), ``s3://`` (s3fs) and ``memory://`` all behave the same.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from dataclasses import dataclass

import fsspec
from fsspec.core import url_to_fs

from beamscore.errors import BeamscoreError, TryLater
from beamscore.store_watch import client_options
from beamscore.stores import check_reachable

__all__ = [
    "FileFacts",
    "expand_globs",
    "filesystem",
    "is_local",
    "is_object_store",
    "join",
    "list_files",
    "move",
    "refuse_symlinks",
    "remove_empty_dir",
    "remove_file",
    "unstrip",
    "write_atomic",
    "write_new_local",
]

_INSTALL_HINTS = {"gs": "beamscore[gcp]", "gcs": "beamscore[gcp]", "s3": "beamscore[s3]"}


def filesystem(url: str | os.PathLike[str]) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(fs, path)`` for a URL, with an install hint when the backend is missing.

    An object store whose endpoint is set explicitly (an emulator, ``FSSPEC_S3_ENDPOINT_URL``)
    is checked to answer the first time it is used, so a stopped or mistyped endpoint is one
    line naming it within seconds, not minutes of client retries (:mod:`beamscore.stores`).
    Object-store clients get connect and read timeouts (:mod:`beamscore.store_watch`).
    """
    url = os.fspath(url)  # a pathlib.Path is a local path
    if "://" not in url and "::" not in url and _LOCAL:  # a plain local path, once per file of a job
        fs = _LOCAL[0]
        return fs, fs._strip_protocol(url)
    protocol = url.split("://", 1)[0] if "://" in url and "::" not in url else ""
    try:
        fs, path = url_to_fs(url, **client_options(protocol))
    except ImportError as exc:
        protocol = url.split("://", 1)[0]
        hint = _INSTALL_HINTS.get(protocol, f"the fsspec backend for {protocol}://")
        raise BeamscoreError(f"cannot open {url}: {exc}; install {hint}") from None
    check_reachable(fs, url)
    if not protocol and "::" not in url and is_local(fs) and not _LOCAL:
        _LOCAL.append(fs)
    return fs, path


#: the local filesystem as the first plain path resolved it (fsspec would return the same
#: cached instance each time; resolving it again costs about 0.02 ms, once per input file)
_LOCAL: list[fsspec.AbstractFileSystem] = []


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Turn a protocol-less path back into a URL that :func:`filesystem` accepts."""
    return fs.unstrip_protocol(path) if not is_local(fs) else path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem, where paths can be handed to TensorFlow as they are."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def move(fs: fsspec.AbstractFileSystem, src: str, dst: str) -> None:
    """Put a finished temporary file under its final name (the commit of temp + rename).

    Local filesystems rename, atomically. Object stores have no rename, but an object only
    appears once its upload is complete, so copying to the final name and deleting the
    temporary one is as safe; it is what s3fs does anyway and what gcsfs falls back to
    after trying the newer ``moveTo`` API, which storage emulators answer with 501 (gcsfs
    then retries for about 30 s per file before falling back).

    Locally ``os.replace`` is used, not ``fs.mv`` (``shutil.move``): a symbolic link planted
    at ``dst`` is replaced, never written through, and a link to a directory does not swallow
    the file.
    """
    if is_local(fs):
        os.replace(src, dst)
        return
    fs.copy(src, dst)
    fs.rm(src)


#: stores where one PUT is atomic: an object appears only once its upload is complete
_OBJECT_STORES = frozenset({"gs", "gcs", "s3", "s3a", "az", "abfs", "abfss", "adl", "memory"})


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    """True where a single write is atomic (GCS, S3, Azure, ``memory://``)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return any(p in _OBJECT_STORES for p in protocols)


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes, temp_dir: str) -> None:
    """Write a small control file (job file, receipt, manifest) all at once or not at all.

    Locally the bytes go to a unique file in ``temp_dir``, are synced, and renamed over
    ``path``, so a crash or a full disk leaves the old file or none, never a torn one. On an
    object store a single PUT is already atomic: an object appears only when complete. Any
    other filesystem (HDFS, SFTP, a wrapped local disk) gets the same temp-then-rename through
    fsspec, since its plain write may leave a torn file behind.
    """
    if is_object_store(fs):
        fs.pipe_file(path, data)
        return
    temp = join(temp_dir, f"{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
    if not is_local(fs):
        fs.makedirs(temp_dir, exist_ok=True)
        try:
            fs.pipe_file(temp, data)
            fs.mv(temp, path)
        except BaseException:
            with contextlib.suppress(Exception):  # not there (the write failed first): nothing to remove
                fs.rm_file(temp)
            raise
        return
    try:
        write_new_local(temp, data)
        os.replace(temp, path)
    except BaseException:
        if os.path.lexists(temp):
            os.unlink(temp)
        raise


def write_new_local(path: str, data: bytes) -> None:
    """Create the local file ``path`` (which must not exist) with ``data``, synced.

    Its directory is made as needed, and made again if another process removes it in between:
    a finished job removes its empty ``_temporary/`` while a second job may be just about to
    write there."""
    for attempt in range(5):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return
        except FileNotFoundError:
            if attempt == 4:
                raise


def remove_file(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove one file; a symbolic link is removed itself, never what it points at."""
    if is_local(fs):
        os.unlink(path)
    else:
        fs.rm_file(path)


def remove_empty_dir(fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Remove a local directory if it is empty; object stores have no directories to remove
    (and gcsfs's ``rmdir`` deletes buckets), so there it does nothing."""
    if is_local(fs):
        with contextlib.suppress(OSError):
            os.rmdir(path)


def refuse_symlinks(fs: fsspec.AbstractFileSystem, root: str, names: list[str]) -> None:
    """Refuse when any of ``names`` (paths relative to ``root``, or a parent of one) is a
    symbolic link: beamscore never writes through a link out of its output directory.

    Object stores have no links; the check is for local filesystems."""
    if not is_local(fs):
        return
    checked: set[str] = set()
    for name in names:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            if rel in checked:
                continue
            checked.add(rel)
            path = join(root, rel)
            if os.path.islink(path):
                raise BeamscoreError(
                    f"output {root}: {rel} is a symbolic link (to {os.readlink(path)}); beamscore does not "
                    "write through links out of its output directory: remove it"
                )


def join(base: str, *parts: str) -> str:
    """Join URL or path parts with ``/`` (fsspec paths always use forward slashes)."""
    return posixpath.join(base.rstrip("/"), *parts)


@dataclass(frozen=True)
class FileFacts:
    """What one listing says of an input file, without opening it.

    ``url`` is the file's URL as the job names it; ``size`` its length in bytes (``None``
    when the filesystem does not say); ``version`` what changes when the file is rewritten,
    as the store spells it: ``generation:N`` on GCS, ``etag:"..."`` on S3 and most object
    stores, ``mtime:SECONDS`` on a local disk, ``None`` where the listing has none. Two
    listings of an unchanged file give equal facts, so the facts can go into a job's
    identity (``--resume``) and be compared as they are.
    """

    url: str
    size: int | None
    version: str | None

    def to_json(self) -> dict:
        return {"url": self.url, "size": self.size, "version": self.version}


def expand_globs(patterns: list[str]) -> list[str]:
    """Expand input globs into a sorted, de-duplicated list of file URLs (see :func:`list_files`)."""
    return [f.url for f in list_files(patterns)]


def list_files(patterns: list[str]) -> list[FileFacts]:
    """Expand input globs into the sorted, de-duplicated :class:`FileFacts` of their files.

    One detailed listing per pattern gives each file's size and version, so nothing is
    asked about each file again. The order is deterministic (sorted per pattern, patterns
    in the order given) because the position of a file in this list is its shard number in
    the output file names. A directory a glob matches (Spark writes ``part-1.parquet/`` as a
    directory of files) is read as the files under it; one that holds none is refused, never
    skipped silently.
    """
    seen: set[str] = set()
    files: list[FileFacts] = []
    for pattern in patterns:
        fs, path = filesystem(pattern)
        entries = _entries(fs, path)
        infos: dict[str, dict] = {}
        for name, info in entries.items():
            if _hidden(name):
                continue
            if info["type"] != "directory":
                infos[name] = info
                continue
            inside = _files_under(fs, name)
            if not inside:
                raise BeamscoreError(
                    f"input {pattern!r} matches the directory {unstrip(fs, name)}, which holds no data files"
                )
            infos.update(inside)
        matches = sorted(infos)
        if not matches:
            raise TryLater(f"input {pattern!r} matches no files")
        for m in matches:
            url = unstrip(fs, m)
            if url not in seen:
                seen.add(url)
                files.append(_facts(url, infos[m]))
    return files


def _facts(url: str, info: dict) -> FileFacts:
    """:class:`FileFacts` from one fsspec ``info`` entry (gcsfs, s3fs, local, memory...)."""
    size = info.get("size")
    version = None
    for key, tag in (("generation", "generation"), ("ETag", "etag"), ("etag", "etag"), ("mtime", "mtime")):
        value = info.get(key)
        if value not in (None, ""):
            version = f"{tag}:{value}"
            break
    else:
        created = info.get("LastModified") or info.get("updated") or info.get("created")
        if created is not None:
            version = f"modified:{created}"
    return FileFacts(url, None if size is None else int(size), version)


def _entries(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, dict]:
    """Name -> info of what ``path`` names: a glob's matches, a directory's files, or the file.

    One listing call with details, so an object store is not asked about each file again.
    A name with ``[`` that exists as it is (``data[1].parquet``) is that file, not a pattern
    that matches ``data1.parquet`` or nothing; any other pattern that matches nothing is
    looked up as a name (``what?.parquet``). A ``*`` pattern costs no request beyond its glob.
    """
    if _has_magic(path) and "[" not in path:
        found = fs.glob(path, detail=True)
        if found:
            return found
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return fs.glob(path, detail=True) if "[" in path else {}
    if info["type"] == "directory":
        return _files_under(fs, path)
    return {path: info}


def _files_under(fs: fsspec.AbstractFileSystem, directory: str) -> dict[str, dict]:
    """Name -> info of the data files anywhere under ``directory``, skipping hidden names at
    every level (``_SUCCESS``, ``.part-0.parquet.crc``, a ``_temporary/`` directory)."""
    root = directory.rstrip("/")
    found = fs.find(root, detail=True)
    return {
        name: info
        for name, info in found.items()
        if info["type"] != "directory"
        and not any(part.startswith(("_", ".")) for part in name[len(root) :].strip("/").split("/"))
    }


def _hidden(path: str) -> bool:
    """Files such as ``_SUCCESS``, ``_manifest.json`` or ``.crc`` are never data."""
    return posixpath.basename(path).startswith(("_", "."))


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")
