"""fsspec helpers shared by the model loader, the sources and the sinks.

Everything that touches storage goes through fsspec, so a local path, ``file://``,
``gs://`` (gcsfs), ``s3://`` (s3fs) and ``memory://`` all behave the same.
"""

from __future__ import annotations

import posixpath

import fsspec
from fsspec.core import url_to_fs

from beamscore.errors import BeamscoreError

__all__ = ["expand_globs", "filesystem", "is_local", "join", "move", "unstrip"]

_INSTALL_HINTS = {"gs": "beamscore[gcp]", "gcs": "beamscore[gcp]", "s3": "beamscore[s3]"}


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(fs, path)`` for a URL, with an install hint when the backend is missing."""
    try:
        return url_to_fs(url)
    except ImportError as exc:
        protocol = url.split("://", 1)[0]
        hint = _INSTALL_HINTS.get(protocol, f"the fsspec backend for {protocol}://")
        raise BeamscoreError(f"cannot open {url}: {exc}; install {hint}") from None


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
    """
    if is_local(fs):
        fs.mv(src, dst)
        return
    fs.copy(src, dst)
    fs.rm(src)


def join(base: str, *parts: str) -> str:
    """Join URL or path parts with ``/`` (fsspec paths always use forward slashes)."""
    return posixpath.join(base.rstrip("/"), *parts)


def expand_globs(patterns: list[str]) -> list[str]:
    """Expand input globs into a sorted, de-duplicated list of file URLs.

    The order is deterministic (sorted per pattern, patterns in the order given) because the
    position of a file in this list is its shard number in the output file names. A
    directory a glob matches (Spark writes ``part-1.parquet/`` as a directory of files) is
    read as the files under it; one that holds none is refused, never skipped silently.
    """
    seen: set[str] = set()
    files: list[str] = []
    for pattern in patterns:
        fs, path = filesystem(pattern)
        entries = _entries(fs, path)
        matches = []
        for name, info in entries.items():
            if _hidden(name):
                continue
            if info["type"] != "directory":
                matches.append(name)
                continue
            inside = _files_under(fs, name)
            if not inside:
                raise BeamscoreError(
                    f"input {pattern!r} matches the directory {unstrip(fs, name)}, which holds no data files"
                )
            matches.extend(inside)
        matches.sort()
        if not matches:
            raise BeamscoreError(f"input {pattern!r} matches no files")
        for m in matches:
            url = unstrip(fs, m)
            if url not in seen:
                seen.add(url)
                files.append(url)
    return files


def _entries(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, dict]:
    """Name -> info of what ``path`` names: a glob's matches, a directory's files, or the file.

    One listing call with details, so an object store is not asked about each file again.
    """
    if _has_magic(path):
        return fs.glob(path, detail=True)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return {}
    if info["type"] == "directory":
        return fs.find(path, detail=True)
    return {path: info}


def _files_under(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    """The data files anywhere under ``directory``, skipping hidden names at every level
    (``_SUCCESS``, ``.part-0.parquet.crc``, a ``_temporary/`` directory)."""
    root = directory.rstrip("/")
    found = fs.find(root, detail=True)
    return [
        name
        for name, info in found.items()
        if info["type"] != "directory"
        and not any(part.startswith(("_", ".")) for part in name[len(root) :].strip("/").split("/"))
    ]


def _hidden(path: str) -> bool:
    """Files such as ``_SUCCESS``, ``_manifest.json`` or ``.crc`` are never data."""
    return posixpath.basename(path).startswith(("_", "."))


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")
