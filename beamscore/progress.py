"""A progress line for local runs: rows done, rows/s and the ETA from the planned units.

Progress is read from the output itself, not from Beam: every committed unit leaves a
receipt in ``OUTPUT/_units/`` (see :mod:`beamscore.transforms.receipts`), so a thread on the
launcher lists that directory every ``interval`` seconds and turns the units done into rows
with the plan's row counts. That works the same whether the job runs in this process or in
worker processes, and costs one directory listing per tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TextIO

from beamscore import fs as bfs
from beamscore.transforms.receipts import UNITS_DIR

__all__ = ["Progress", "format_line", "receipts_lister"]


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


class Progress:
    """Prints the progress line to ``stream`` every ``interval`` seconds while in a ``with``.

    ``unit_rows`` maps each unit still to run to its planned rows; ``done`` lists the units
    committed so far. On a terminal the line is redrawn in place (``\\r``); elsewhere one
    line per tick is written.
    """

    def __init__(
        self,
        unit_rows: Mapping[str, int],
        done: Callable[[], Iterable[str]],
        stream: TextIO,
        interval: float = 1.0,
    ) -> None:
        self.unit_rows = dict(unit_rows)
        self.done = done
        self.stream = stream
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self.lines = 0

    def tick(self) -> str:
        """Write one progress line now and return it."""
        names = [n for n in self.done() if n in self.unit_rows]
        rows = sum(self.unit_rows[n] for n in names)
        line = format_line(
            rows, sum(self.unit_rows.values()), len(names), len(self.unit_rows), time.monotonic() - self._start
        )
        self.stream.write(f"\r{line}\x1b[K" if self._tty else f"{line}\n")
        self.stream.flush()
        self.lines += 1
        return line

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except OSError:
                return  # progress is best effort; storage hiccups do not stop the job

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
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
