"""A local model path TensorFlow can read: one without glob characters.

TensorFlow finds a checkpoint's data files by glob pattern, so a model under a directory
named ``model[1]`` (or with ``?`` in its path) cannot load: "Unsuccessful TensorSliceReader
constructor: Failed to find any matching files", though the files are there. Such a path is
read through a symbolic link whose name has no glob characters.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid

__all__ = ["GLOB_CHARS", "tf_readable"]

#: Characters TensorFlow's file matching treats as a pattern.
GLOB_CHARS = frozenset("[]?*")


def tf_readable(path: str) -> str:
    """``path`` itself, or a symbolic link to it (under the temp dir) when it holds a glob
    character; the link is named from the path, so each process reuses the same one."""
    if not GLOB_CHARS & set(path):
        return path
    target = os.path.abspath(path)
    links = os.path.join(tempfile.gettempdir(), "beamscore-links")
    os.makedirs(links, exist_ok=True)
    link = os.path.join(links, hashlib.sha256(target.encode()).hexdigest()[:24])
    if os.path.islink(link) and os.readlink(link) == target:
        return link
    staging = f"{link}.tmp-{uuid.uuid4().hex}"
    os.symlink(target, staging)
    os.replace(staging, link)  # atomic: a concurrent process sees the old link or the new one
    return link
