"""Plan many input files at once: footers and headers read concurrently, in bounded chunks.

:func:`survey` turns the listed files (:class:`~beamscore.fs.FileFacts`) into work units and
hands each file's columns to a check, so that every file's schema is checked before the job
(not only the first). Files go in chunks of :data:`CHUNK`: for a source with a footer
(Parquet) the chunk's tails are fetched concurrently (:func:`~beamscore.io.tails.fetch_tails`)
and parsed in memory while the next chunk's are fetched; other sources open their files in a
pool of threads. Only two chunks' bytes are held at a time, so the launcher's memory grows
with the unit list alone.
Planning time is then set by concurrency and bandwidth, not by files x latency. What was
read is not read again: a whole file's unit carries its footer to the worker, within
:data:`~beamscore.io.base.PLAN_CARRY_BYTES` for the whole plan.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from beamscore.fs import FileFacts
from beamscore.io.base import FilePlan, Source, WorkUnit, carry_within, pack_units
from beamscore.io.schemas import file_has_rows
from beamscore.io.tails import fetch_tails
from beamscore.model.binding import ColumnSpec

__all__ = ["CHUNK", "THREADS", "PlanningProgress", "survey"]

#: Files planned per round (their tails are held in memory together, with the next round's
#: being fetched meanwhile).
CHUNK = 512
#: Threads that open files for sources without a footer (npy, npz, TFRecord).
THREADS = 32

Check = Callable[[str, dict[str, ColumnSpec]], None]


def survey(
    source: Source,
    files: Sequence[FileFacts],
    check: Check | None = None,
    progress: Callable[[int, int], None] | None = None,
    concurrency: int | None = None,
) -> list[WorkUnit]:
    """All work units of ``files`` in order (a file's position is its shard number).

    ``check(url, columns)`` is called for every file (in order) and raises to refuse one;
    ``progress(done, total)`` after every chunk; ``concurrency`` requests are in flight at
    once (default: :func:`beamscore.io.tails.plan_concurrency`)."""
    units: list[WorkUnit] = []
    total = len(files)
    on_disk = all(_on_disk(f.url) for f in files)
    chunks = [files[first : first + CHUNK] for first in range(0, total, CHUNK)]

    def tails_of(chunk: Sequence[FileFacts]) -> list[bytes | None]:
        return fetch_tails(chunk, source.tail_bytes, concurrency) if source.tail_bytes else [None] * len(chunk)

    with ThreadPoolExecutor(max_workers=THREADS) as pool, ThreadPoolExecutor(max_workers=1) as fetcher:
        # the next chunk's tails are fetched while this chunk's are parsed (two chunks held)
        coming = fetcher.submit(tails_of, chunks[0]) if chunks else None
        for number, chunk in enumerate(chunks):
            assert coming is not None
            tails = coming.result()
            coming = fetcher.submit(tails_of, chunks[number + 1]) if number + 1 < len(chunks) else None
            first = number * CHUNK

            def plan(i: int, chunk=chunk, tails=tails, first=first) -> FilePlan:
                facts = chunk[i]
                return source.plan_file(facts.url, first + i, tails[i], facts.size)

            for facts, file_plan in zip(chunk, _plans(pool, plan, tails, on_disk, source), strict=True):
                if check is not None and file_has_rows(source, file_plan):
                    check(facts.url, file_plan.columns)
                units.extend(file_plan.units)
            del tails
            if progress is not None:
                progress(min(first + CHUNK, total), total)
    return carry_within(packed(source, units, files))


def _plans(
    pool: ThreadPoolExecutor, plan: Callable[[int], FilePlan], tails: list, on_disk: bool, source: Source
) -> Iterator[FilePlan]:
    """``plan(i)`` of each file of a chunk, in order. A file whose fetched tail holds all
    that planning needs (or, for a source that plans from tails, any file on a local disk:
    a read of microseconds) is planned in this thread, a parse of a tenth of a millisecond
    that a thread would cost more than; the others, which open their file (a request of tens
    of ms each, or a sample of TFRecord records), in the pool."""
    inline = [(on_disk and source.tail_bytes > 0) or source.tail_suffices(tail) for tail in tails]
    opened = {i: pool.submit(plan, i) for i, quick in enumerate(inline) if not quick}
    for i, quick in enumerate(inline):
        yield plan(i) if quick else opened[i].result()


def _on_disk(url: str) -> bool:
    """Whether ``url`` is a path on the local disk."""
    return "://" not in url or url.startswith("file://")


def packed(source: Source, units: list[WorkUnit], files: Sequence[FileFacts]) -> list[WorkUnit]:
    """``units`` with runs of whole small files packed into one unit each
    (:func:`~beamscore.io.base.pack_units`), up to the source's ``rows_per_unit`` rows.
    Only sources that know each file's rows before reading it are packed (a unit's row
    positions must map back to files; TFRecord counts its records only as it reads)."""
    if not source.counts_rows:
        return units
    return pack_units(units, getattr(source, "rows_per_unit", None), {f.url: f.size for f in files})


class PlanningProgress:
    """``planned 12,000 of 20,000 files`` on stderr, once planning has taken ``after``
    seconds, then at most every ``every`` seconds (overwriting itself on a terminal)."""

    def __init__(self, stream: TextIO | None = None, after: float = 3.0, every: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.after = after
        self.every = every
        self.start = time.monotonic()
        self.shown = False
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.start < self.after or (now - self._last < self.every and done < total):
            return
        self._last = now
        tty = getattr(self.stream, "isatty", lambda: False)()
        line = f"beamscore: planned {done:,} of {total:,} files"
        end = "" if tty and done < total else "\n"
        self.stream.write(("\r" if tty else "") + line + end)
        self.stream.flush()
        self.shown = True
