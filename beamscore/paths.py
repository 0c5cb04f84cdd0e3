"""Safe file names from names we do not control (signature output keys, column names).

A SavedModel's output key may contain ``/`` or ``..`` (TensorFlow accepts
``"../../escaped"``); ``saved_model_cli run --outdir D`` then writes outside ``D``. Every
file name that beamscore derives from a model or from data goes through
:func:`safe_component`, and :func:`child` checks that the result stays inside its directory.
"""

from __future__ import annotations

import posixpath
import re

from beamscore.errors import BeamscoreError

__all__ = ["child", "safe_component"]

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
