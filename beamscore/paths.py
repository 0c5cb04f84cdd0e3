"""Safe file names from names we do not control (signature output keys, column names).

A SavedModel's output key may contain ``/`` or ``..`` (TensorFlow accepts
``"../../escaped"``); ``saved_model_cli run --outdir D`` then writes outside ``D``. Every
file name that beamscore derives from a model or from data goes through
:func:`safe_component`, and :func:`child` checks that the result stays inside its directory.
"""

from __future__ import annotations

import os
import posixpath
import re

from beamscore.errors import BeamscoreError

__all__ = ["check_name_lengths", "child", "safe_component"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]")


def safe_component(name: str) -> str:
    """One path component for ``name``: unsafe characters percent-escaped, never ``.``/``..``.

    The mapping is injective (``%`` itself is escaped), so two different keys never share
    a file name; ``a/b`` becomes ``a%2Fb``, ``..`` becomes ``%2E%2E`` and a leading dot is
    escaped so that no output is a hidden file (``../x`` becomes ``%2E.%2Fx``).
    """
    if not name:
        raise BeamscoreError("an empty name cannot be used as a file name")
    escaped = _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)
    if escaped.strip(".") == "":  # "." and ".."
        escaped = escaped.replace(".", "%2E")
    elif escaped.startswith("."):  # no hidden files such as "..%2Fx"
        escaped = "%2E" + escaped[1:]
    return escaped


def child(directory: str, name: str) -> str:
    """``directory/safe_component(name)``, checked to stay inside ``directory``."""
    path = posixpath.join(directory.rstrip("/"), safe_component(name))
    parent = posixpath.normpath(posixpath.dirname(path))
    if parent != posixpath.normpath(directory.rstrip("/") or "/"):
        raise BeamscoreError(f"name {name!r} would write outside {directory}")
    return path


#: name and key limits where the filesystem cannot tell us (object stores: 1,024-byte keys)
DEFAULT_NAME_MAX = 255
OBJECT_KEY_MAX = 1024


def check_name_lengths(root: str, local: bool, names: dict[str, str]) -> None:
    """Refuse, before a job, a file name its filesystem would reject as too long.

    ``names`` maps each relative path the job will write to what it comes from (an output
    key, a ``--keep`` column). Locally every component must fit ``NAME_MAX`` of the nearest
    existing directory (255 bytes on most filesystems) and the whole path ``PATH_MAX``; on
    object stores the whole key must fit 1,024 bytes."""
    name_max, path_max = DEFAULT_NAME_MAX, 4096
    if local:
        existing = root
        while existing and not os.path.exists(existing):
            existing = os.path.dirname(existing.rstrip("/")) or "/"
        try:
            name_max = os.pathconf(existing, "PC_NAME_MAX")
            path_max = os.pathconf(existing, "PC_PATH_MAX")
        except (OSError, ValueError):
            pass
    for rel, origin in names.items():
        full = posixpath.join(root.rstrip("/"), rel)
        if local:
            for part in rel.split("/"):
                size = len(part.encode())
                if size > name_max:
                    raise BeamscoreError(
                        f"{origin} makes the file name {part[:40]}... ({size} bytes), longer than the "
                        f"{name_max} bytes the filesystem of {root} allows; rename it or leave it out"
                    )
        limit = path_max if local else OBJECT_KEY_MAX
        key = full if local else full.split("/", 1)[-1]  # an object key excludes the bucket
        if len(key.encode()) > limit:
            raise BeamscoreError(
                f"{origin} makes the path {full[:60]}... ({len(key.encode())} bytes), longer than the "
                f"{limit} bytes {'the filesystem' if local else 'an object key'} allows; rename it or leave it out"
            )
