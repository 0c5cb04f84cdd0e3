"""Temporary files: where every output and control file is written before it is renamed.

Each writer puts its file under ``OUTPUT/_temporary/`` (dead letters under
``OUTPUT/_errors/_temporary/``) with a name made of the final name and a random hex token,
so two attempts never share one. :func:`is_temp_name` recognises exactly those names, so
that cleaning up after a job (and ``--overwrite``) removes only beamscore's temporary files
and leaves anything else a user put there.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid

import fsspec

from beamscore import fs as bfs

__all__ = ["CLAIM_TEMP_GRACE_S", "TEMP_DIR", "clean_temp_dir", "in_flight_claim", "is_temp_name", "temp_path"]

TEMP_DIR = "_temporary"

# final name (a part, a receipt or a control file) + "." + 32 hex digits + a suffix. Nothing
# else: a fixed name (the ``_temporary/_manifest.json`` of versions before 0.2) could be a
# user's file, and ``--overwrite`` removes only names no user would pick by chance.
_TEMP = re.compile(
    r"^(?:part-\d{5}-\d{5}(?:\.json)?|_manifest\.json|_job\.json|_claim\.json)\.[0-9a-f]{32}\.(?:parquet|npy|tmp|json)$"
)
_CLAIM_TEMP = re.compile(r"^_claim\.json\.[0-9a-f]{32}\.tmp$")
#: a claim's temporary file younger than this may belong to a job claiming the output right
#: now (it lives for milliseconds): no other job removes it
CLAIM_TEMP_GRACE_S = 60.0


def temp_path(directory: str, final_name: str, suffix: str) -> str:
    """A fresh temporary path in ``directory/_temporary`` for a file to be named ``final_name``."""
    return bfs.join(directory, TEMP_DIR, f"{final_name}.{uuid.uuid4().hex}.{suffix}")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (a base name in a ``_temporary`` directory) is one beamscore writes."""
    return bool(_TEMP.match(name))


def in_flight_claim(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    """Whether ``path`` is the temporary file of a claim another job may be creating now
    (:mod:`beamscore.pipelines.claim`): a local ``_claim.json.<hex>.tmp`` younger than
    :data:`CLAIM_TEMP_GRACE_S`. Removing it would make that job fail instead of being
    refused with "being written by another job"."""
    if not _CLAIM_TEMP.match(path.rstrip("/").rsplit("/", 1)[-1]) or not bfs.is_local(fs):
        return False
    try:
        return time.time() - os.lstat(path).st_mtime < CLAIM_TEMP_GRACE_S
    except FileNotFoundError:
        return False


def clean_temp_dir(fs: fsspec.AbstractFileSystem, directory: str) -> list[str]:
    """Remove beamscore's temporary files from ``directory`` (a ``_temporary`` dir), then the
    directory if it is left empty; return the files that are not ours and were left. Another
    job's claim in flight (:func:`in_flight_claim`) is left and not returned."""
    try:
        entries = fs.ls(directory, detail=True)
    except FileNotFoundError:
        return []
    left = []
    busy = False
    for entry in entries:
        path = entry["name"]
        if in_flight_claim(fs, path):
            busy = True
        elif is_temp_name(path.rstrip("/").rsplit("/", 1)[-1]) and (entry.get("type") == "file" or entry.get("islink")):
            with contextlib.suppress(FileNotFoundError):
                bfs.remove_file(fs, path)  # a link planted at one of our names: the link goes
        else:
            left.append(bfs.unstrip(fs, path))
    if not left and not busy:
        bfs.remove_empty_dir(fs, directory)
    return left
