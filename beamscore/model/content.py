"""What a model's files hold, by content: each file's size and checksum.

``fingerprint.pb`` says which export a model is, but nothing stops its ``variables/`` being
replaced in place while the old ``fingerprint.pb`` stays (a partial copy, an rsync of the
variables only). A ``--resume`` that trusted the fingerprint alone would then mix the old
weights' units with the new ones'. So a job records every file under the model directory
(``saved_model.pb``, ``variables/variables.index``, the data shards, ``assets/``...) with its
size and a checksum, and a resume compares them all (:func:`changed_file`).

The checksum is the store's own where it keeps one, read from the listing (no byte read):
GCS's ``crc32c`` (or ``md5Hash``), S3's and most stores' ``ETag``. Elsewhere (a local disk,
a store without one) the file is read once in 8 MiB chunks into a CRC32C (``google-crc32c``,
C code: 0.16-0.27 s per 100 MB file read from the page cache, measured here), spelled as GCS spells it, so a
local copy and its upload compare equal.
"""

from __future__ import annotations

import base64
from typing import Any

import fsspec

from beamscore import fs as bfs

__all__ = ["changed_file", "digest", "model_files"]

#: bytes read at a time when a file is hashed here
CHUNK = 8 << 20
#: what a store's listing may carry as a checksum, in order of preference: (info key, name)
_STORE_SUMS = (("crc32c", "crc32c"), ("md5Hash", "md5"), ("ETag", "etag"), ("etag", "etag"))


def model_files(fs: fsspec.AbstractFileSystem, model_path: str) -> dict[str, dict[str, Any]]:
    """Every file under ``model_path`` (relative name -> ``{"size": N, "crc32c"|"md5"|"etag": V}``),
    sorted by name. One listing; local files and files a store has no checksum for are read."""
    root = model_path.rstrip("/")
    found = fs.find(root, detail=True)
    files: dict[str, dict[str, Any]] = {}
    for name in sorted(found):
        info = found[name]
        if info.get("type") == "directory":
            continue
        rel = name[len(root) :].lstrip("/")
        size = info.get("size")
        files[rel] = {"size": None if size is None else int(size), **_checksum(fs, name, info)}
    return files


def _checksum(fs: fsspec.AbstractFileSystem, path: str, info: dict) -> dict[str, str]:
    if not bfs.is_local(fs):
        for key, name in _STORE_SUMS:
            value = info.get(key)
            if value not in (None, ""):
                return {name: str(value).strip('"')}
    return {"crc32c": crc32c_of(fs, path)}


def crc32c_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The CRC32C of a file's bytes, base64 of its 4 big-endian bytes (as GCS reports it)."""
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with fs.open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode()


def changed_file(before: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first difference between two :func:`model_files` records, in words
    (``variables/variables.data-00000-of-00001: size was 120, now 96; crc32c was ..., now ...``,
    ``assets/vocab.txt is gone``, ``assets/extra.txt is new``); ``None`` when they are equal."""
    for name in sorted(set(before) | set(now)):
        old, new = before.get(name), now.get(name)
        if old == new:
            continue
        if old is None:
            return f"{name} is new ({_size(new)})"
        if new is None:
            return f"{name} is gone (was {_size(old)})"
        if not isinstance(old, dict) or not isinstance(new, dict):
            return f"{name} changed"
        keys = ("size", *_keys(old, new))
        parts = [f"{k} was {old.get(k)}, now {new.get(k)}" for k in keys if old.get(k) != new.get(k)]
        return f"{name}: {'; '.join(parts)}"
    return None


def digest(files: dict[str, dict[str, Any]]) -> str:
    """A short digest of :func:`model_files`' result ("" for none): what a loaded copy of the
    model is shared under in a process, beside its path and fingerprint."""
    if not files:
        return ""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(files, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _keys(old: dict, new: dict) -> list[str]:
    return sorted((set(old) | set(new)) - {"size"})


def _size(facts: Any) -> str:
    size = facts.get("size") if isinstance(facts, dict) else None
    return "size unknown" if size is None else f"{size} bytes"
