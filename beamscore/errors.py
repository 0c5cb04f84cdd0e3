"""Errors that reach the user as one line.

Every problem we can explain (a missing model, a column of the wrong dtype, an output
directory that already holds results) is raised as :class:`BeamscoreError` with a message
that names the place and both sides. The CLI prints it as one line and exits with 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import re

__all__ = ["BeamscoreError", "JobFailed", "first_line", "wrapped_message"]


class BeamscoreError(Exception):
    """A user-facing error: the message is the whole story, no traceback needed."""


class JobFailed(BeamscoreError):
    """The job ran and failed (a worker or the runner raised): exit code 1, not 2, since
    files may already have been written. The message is one line; the cause is chained."""


def first_line(text: str, default: str = "") -> str:
    """The first non-blank line of ``text`` (library errors often run to many lines)."""
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else default


def wrapped_message(exc: BaseException) -> str | None:
    """Our message from an exception a runner wrapped (in-process or as traceback text)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BeamscoreError):
            return str(current)
        current = current.__cause__ or current.__context__
    match = re.search(r"BeamscoreError: (.+)", str(exc))
    if match:
        text = match.group(1).strip()
        return re.sub(r" \[while running '.*'\]$", "", text)
    return None
