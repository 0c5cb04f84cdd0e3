"""What ``beamscore`` prints for operators: stderr as text or as JSON lines, and the summary.

``--log-format json`` makes every line beamscore writes on stderr one JSON object with
``ts`` (ISO-8601, UTC), ``level``, ``event`` and the event's fields, for log shippers and
schedulers that parse their tasks' logs. Lines printed anywhere in beamscore go through
:class:`StderrLines`, which wraps ``sys.stderr`` while a command runs: ``beamscore: error: X``
becomes ``{"level": "error", "event": "error", "message": "X"}``, a warning likewise, any other
line an ``info`` ``message``. Code that has fields to report (progress) calls :func:`emit`.
The same wrapper remembers the last error line, which ``--json``'s summary carries.

In text format, error and warning lines written to a file or a pipe (cron, systemd, a CI
log: stderr has a file descriptor and it is no terminal) start with the time, as the launch
and progress lines do: ``2026-12-07T06:40:00.123Z beamscore: error: ...``; the rest of the
line is unchanged, so ``beamscore: error:`` still opens what follows the first field. On a
terminal, or in a host's own stream (``main()`` called with ``sys.stderr`` a ``StringIO``),
they have none. ``BEAMSCORE_TIMESTAMPS=always`` or ``never`` overrides (see :func:`stamps`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "TIMESTAMPS_ENV", "StderrLines", "emit", "human_size", "json_line", "stamps", "timestamp"]

LOG_FORMATS = ("text", "json")
_PREFIXES = (("beamscore: error: ", "error"), ("beamscore: warning: ", "warning"))
#: ``auto`` (the default), ``always`` or ``never``: whether error and warning lines start with the time
TIMESTAMPS_ENV = "BEAMSCORE_TIMESTAMPS"


def stamps(stream: Any) -> bool:
    """Whether text lines of errors and warnings written to ``stream`` start with the time:
    ``BEAMSCORE_TIMESTAMPS`` is ``always`` or ``never``, or else (``auto``) ``stream`` is a
    file or a pipe, not a terminal (a log that outlives the run, where the time is needed)."""
    chosen = os.environ.get(TIMESTAMPS_ENV, "auto").strip().lower()
    if chosen in ("always", "never"):
        return chosen == "always"
    try:
        os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # a StringIO, pytest's capture: a host's own stream
        return False
    return not stream.isatty()


def timestamp() -> str:
    """Now, as ISO-8601 in UTC with milliseconds: ``2026-12-02T21:55:00.123Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(level: str, event: str, **fields: Any) -> str:
    """One log event as a JSON line (``ts``, ``level``, ``event`` first, then ``fields``)."""
    return json.dumps({"ts": timestamp(), "level": level, "event": event, **fields}, default=str) + "\n"


class StderrLines:
    """``sys.stderr`` seen line by line: in ``json`` format each line becomes an event
    (:func:`json_line`); in ``text`` format lines pass through unchanged. Either way the last
    ``beamscore: error:`` line is kept in :attr:`last_error`."""

    def __init__(self, stream: TextIO, fmt: str = "text", stamp: bool = False) -> None:
        self._stream = stream
        self.fmt = fmt
        #: error and warning lines start with the time (text format; :func:`stamps`)
        self.stamp = stamp
        self.last_error: str | None = None
        self._pending = ""
        self._line_start = True

    def write(self, text: str) -> int:
        if self.fmt == "text":
            for line in text.splitlines():
                if line.startswith(_PREFIXES[0][0]):
                    self.last_error = line[len(_PREFIXES[0][0]) :]
            if self.stamp:
                return self._write_stamped(text)
            return self._stream.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._event(line)
        return len(text)

    def _write_stamped(self, text: str) -> int:
        """``text`` with the time before each error or warning line it starts."""
        out = []
        for part in text.splitlines(keepends=True):
            if self._line_start and part.startswith(tuple(p for p, _ in _PREFIXES)):
                part = f"{timestamp()} {part}"
            out.append(part)
            self._line_start = part.endswith("\n")
        self._stream.write("".join(out))
        return len(text)

    def _event(self, line: str) -> None:
        line = line.strip("\r")
        if not line.strip():
            return
        level, event, message = "info", "message", line
        for prefix, kind in _PREFIXES:
            if line.startswith(prefix):
                level, event, message = kind, kind, line[len(prefix) :]
        if level == "error":
            self.last_error = message
        self._stream.write(json_line(level, event, message=message))

    def write_event(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """Write one event as it is (no line splitting)."""
        self.flush()
        self._stream.write(json_line(level, event, **fields))
        self._stream.flush()

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self._event(pending)
        self._stream.flush()

    def isatty(self) -> bool:
        return self.fmt == "text" and bool(getattr(self._stream, "isatty", lambda: False)())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def lines_of(stream: Any) -> StderrLines | None:
    """The :class:`StderrLines` in ``stream``'s chain of wrappers (``_stream``), if any."""
    seen = 0
    while stream is not None and seen < 8:
        if isinstance(stream, StderrLines):
            return stream
        stream = getattr(stream, "__dict__", {}).get("_stream")
        seen += 1
    return None


def json_format(stream: Any = None) -> bool:
    """Whether ``stream`` (default ``sys.stderr``) writes JSON lines."""
    found = lines_of(sys.stderr if stream is None else stream)
    return found is not None and found.fmt == "json"


def emit(text: str, level: str = "info", event: str = "message", stream: Any = None, **fields: Any) -> None:
    """Write one event to ``stream`` (default ``sys.stderr``): ``text`` as a line in text
    format, the event with its ``fields`` (and ``message``: ``text``) in JSON format."""
    stream = sys.stderr if stream is None else stream
    found = lines_of(stream)
    if found is not None and found.fmt == "json":
        found.write_event(level, event, {"message": text, **fields})
        return
    stream.write(f"{text}\n")
    stream.flush()


class JsonLogFormatter(logging.Formatter):
    """Python log records as JSON lines (event ``log``, with the logger's name)."""

    def format(self, record: logging.LogRecord) -> str:
        return json_line(record.levelname.lower(), "log", logger=record.name, message=record.getMessage()).rstrip("\n")


def human_size(n: float) -> str:
    """``n`` bytes as people read them (``512 B``, ``1.5 KiB``, ``3,210.0 GiB``): GiB is the
    largest unit, so sizes stay comparable down a column (``show``, ``report``)."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} GiB"
