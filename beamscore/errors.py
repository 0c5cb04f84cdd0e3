"""Errors that reach the user as one line.

Every problem we can explain (a missing model, a column of the wrong dtype, an output
directory that already holds results) is raised as :class:`BeamscoreError` with a message
that names the place and both sides. The CLI prints it as one line and exits with 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["BeamscoreError", "first_line"]


class BeamscoreError(Exception):
    """A user-facing error: the message is the whole story, no traceback needed."""


def first_line(text: str, default: str = "") -> str:
    """The first non-blank line of ``text`` (library errors often run to many lines)."""
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else default
