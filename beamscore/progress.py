"""The progress of a running job: rows done, rows/s and the ETA from the planned units.

Two sources, read by a thread on the launcher, neither of them Beam's metrics (which local
runners and Dask report only when the job has ended):

- **batches**: where the launcher can read the workers' files (local runners, a Dask cluster
  on this machine), every scored batch appends its row count to a small file
  (:class:`~beamscore.transforms.progress_file.ReportRows`), read by :class:`RowCounter`, so
  progress moves batch by batch, not only when a whole unit is done;
- **units**: every committed unit leaves a receipt in ``OUTPUT/_units/`` (see
  :mod:`beamscore.transforms.receipts`): one listing per tick, and it works on any runner.

On a terminal the line is redrawn in place about twice a second. Elsewhere (cron, Airflow, a
log file) one timestamped line is written every ``--progress-every`` seconds, or one JSON
event with ``--log-format json`` (:mod:`beamscore.console`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TextIO

from beamscore import fs as bfs
from beamscore.console import emit, timestamp
from beamscore.transforms.receipts import UNITS_DIR

__all__ = ["PROGRESS_EVERY", "Progress", "RowCounter", "format_line", "receipts_lister"]

#: Seconds between progress lines when stderr is not a terminal (``--progress-every``).
PROGRESS_EVERY = 30.0
#: Off a terminal, the first progress line comes this soon (then every ``--progress-every``),
#: so that a log shows the job moving before the first 30 s are up.
FIRST_LINE_S = 5.0
#: Seconds between redraws of the progress line on a terminal.
TTY_INTERVAL = 0.5


def format_line(done_rows: int, total_rows: int, done_units: int, total_units: int, seconds: float) -> str:
    """``1,200 / 5,000 rows (24%), 3 / 10 units, 400 rows/s, ETA 0:00:09``."""
    rate = done_rows / seconds if seconds > 0 else 0.0
    if total_rows:
        share = f"{done_rows:,} / {total_rows:,} rows ({100 * done_rows / total_rows:.0f}%)"
        left = (total_rows - done_rows) / rate if rate > 0 else None
    else:  # a source that cannot count rows ahead: go by units
        share = f"{done_rows:,} rows"
        unit_rate = done_units / seconds if seconds > 0 else 0.0
        left = (total_units - done_units) / unit_rate if unit_rate > 0 else None
    eta = "?" if left is None else _clock(left)
    return f"{share}, {done_units:,} / {total_units:,} units, {rate:,.0f} rows/s, ETA {eta}"


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def receipts_lister(output: str) -> Callable[[], set[str]]:
    """A function listing the unit names with a receipt under ``output``."""
    fs, root = bfs.filesystem(output)
    directory = bfs.join(root, UNITS_DIR)

    def names() -> set[str]:
        try:
            entries = fs.ls(directory, detail=False, refresh=True)
        except (FileNotFoundError, TypeError):
            try:
                entries = fs.ls(directory, detail=False)
            except FileNotFoundError:
                return set()
        return {e.rsplit("/", 1)[-1][: -len(".json")] for e in entries if e.rsplit("/", 1)[-1].startswith("part-")}

    return names


class RowCounter:
    """The rows the workers reported so far in a progress file: one decimal count per line,
    appended per batch (:class:`~beamscore.transforms.progress_file.ReportRows`). Each call
    reads only what was appended since the last one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows = 0
        self._offset = 0
        self._partial = b""

    def __call__(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.rows
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        self.rows += sum(int(line) for line in lines if line.strip().isdigit())
        return self.rows

    def remove(self) -> None:
        """Delete the progress file (the job is over)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class Progress:
    """Reports progress to ``stream`` while in a ``with``.

    ``unit_rows`` maps each unit still to run to its planned rows; ``done`` lists the units
    committed so far; ``rows`` (optional) returns the rows scored so far, batch by batch. On a
    terminal the line is redrawn in place (``\\r``) every ``interval`` seconds; elsewhere a
    timestamped line (or a JSON ``progress`` event) is written every ``every`` seconds.
    """

    def __init__(
        self,
        unit_rows: Mapping[str, int],
        done: Callable[[], Iterable[str]],
        stream: TextIO,
        interval: float = TTY_INTERVAL,
        *,
        rows: Callable[[], int] | None = None,
        every: float | None = None,
        launch: Mapping[str, object] | None = None,
    ) -> None:
        """``launch``: what the job is (model, inputs, files and rows planned, output, date),
        written as one timestamped line when it starts, off a terminal (a ``launch`` event in
        JSON)."""
        self.unit_rows = dict(unit_rows)
        self.done = done
        self.rows = rows
        self.stream = stream
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = interval if self._tty or every is None else every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self.lines = 0
        self.launch = dict(launch) if launch else None

    def tick(self) -> str:
        """Report progress now and return the line."""
        names = [n for n in self.done() if n in self.unit_rows]
        total = sum(self.unit_rows.values())
        done_rows = sum(self.unit_rows[n] for n in names)
        if self.rows is not None:  # batches scored: ahead of the committed units, never past the plan
            counted = self.rows()
            done_rows = max(done_rows, min(counted, total) if total else counted)
        seconds = time.monotonic() - self._start
        line = format_line(done_rows, total, len(names), len(self.unit_rows), seconds)
        if self._tty:
            self.stream.write(f"\r{line}\x1b[K")
            self.stream.flush()
        else:
            rate = done_rows / seconds if seconds > 0 else 0.0
            left = (total - done_rows) / rate if total and rate > 0 else None
            emit(
                f"{timestamp()} progress: {line}",
                event="progress",
                stream=self.stream,
                message=line,
                rows_done=done_rows,
                rows_total=total or None,
                units_done=len(names),
                units_total=len(self.unit_rows),
                rows_per_s=round(rate, 1),
                eta_s=None if left is None else round(left, 1),
                seconds=round(seconds, 3),
            )
        self.lines += 1
        return line

    def _run(self) -> None:
        first = self.interval if self._tty else min(FIRST_LINE_S, self.interval)
        if self._stop.wait(first):
            return
        try:
            self.tick()
        except Exception:  # noqa: BLE001 - progress is best effort; a hiccup never stops the job
            return
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - progress is best effort; a hiccup never stops the job
                return

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if self.launch is not None and not self._tty:
            said = ", ".join(f"{k} {v}" for k, v in self.launch.items() if v is not None)
            emit(f"{timestamp()} launch: {said}", event="launch", stream=self.stream, **self.launch)
        self._thread = threading.Thread(target=self._run, name="beamscore-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._tty and self.lines:
            self.stream.write("\n")
            self.stream.flush()
