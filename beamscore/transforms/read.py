"""``ReadBatches``: work units in, column batches out (one reader call per unit)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import apache_beam as beam
import pyarrow as pa

from beamscore.errors import BeamscoreError, first_line, in_stage
from beamscore.io.base import BadRows, Source, UnreadRows, WorkUnit
from beamscore.io.prefetch import prefetch
from beamscore.transforms import dead_letters
from beamscore.transforms.batch import Batch

__all__ = [
    "PACK_AHEAD",
    "PACK_THREADS",
    "REMOTE_PACK_AHEAD",
    "REMOTE_PACK_THREADS",
    "ReadBatches",
    "ReadUnitFn",
    "plan_units",
    "read_error",
    "schema_file",
]

#: files of a packed unit read ahead of the one being scored, and the threads reading them
PACK_AHEAD = 16
PACK_THREADS = 8
#: A packed unit of local files is read in its own thread while its files read in under
#: :data:`SLOW_FILE_S` each (a mean over :data:`PROBE_FILES` files): a small file on a
#: local disk reads in 0.2 ms of Python and Arrow holding the GIL, where 8 threads cost
#: about 0.07 ms a file more CPU and gain no time. A mount that is local by path but
#: remote in fact (gcsfuse, NFS) is found by its latency and read by the threads.
PROBE_FILES = 16
SLOW_FILE_S = 0.002
#: the same on an object store, where a small file is a request or two of 20-80 ms each and
#: the threads mostly wait: 8 threads read 100 files a second at 40 ms a request
REMOTE_PACK_AHEAD = 128
REMOTE_PACK_THREADS = 64


def plan_units(source: Source, files: Sequence[str | os.PathLike[str]]) -> list[WorkUnit]:
    """All work units of ``files`` (in order: the position of a file is its shard number)."""
    return [unit for shard, path in enumerate(files) for unit in source.units(os.fspath(path), shard)]


def schema_file(source: Source, files: Sequence[str]) -> str:
    """The file whose schema describes the job: the first that holds rows (an empty shard,
    a zero-record TFRecord or zero-row Parquet file, may carry no types or placeholder
    ones), or the first file when all are empty."""
    for path in files:
        if source.has_rows(path):
            return path
    return files[0]


class ReadUnitFn(beam.DoFn):
    """Reads one unit and emits its batches in order, the last one flagged.

    Rows the source reports as :class:`~beamscore.io.base.BadRows` or
    :class:`~beamscore.io.base.UnreadRows` ride along with the next batch as dead letters.
    Any error a source raises part-way (a damaged page, a file deleted, truncated or replaced
    after planning, an I/O error) ends its unit there, never the job: the rows already read
    are still scored and the unread rest of the unit becomes one dead letter for its range
    (``rows A-B unread: <reason>``), so ``rows_in`` is the unit's planned row count. A source
    that cannot count rows up front (TFRecord) gets one dead letter at the place it stopped,
    and its ``rows_in`` is the records as read.
    """

    def __init__(self, source: Source, columns: Sequence[str], batch_size: int) -> None:
        self.source = source.with_dead_letters()
        self.columns = list(columns)
        self.batch_size = batch_size
        self.rows_in = beam.metrics.Metrics.counter("beamscore", "rows_in")

    def process(self, unit: WorkUnit) -> Iterator[Batch]:
        try:
            yield from self._process(unit)
        except BeamscoreError:
            raise
        except Exception as exc:  # the launcher's one line names file, unit, stage
            raise in_stage(unit.path, unit.name, "read", exc) from exc

    def _process(self, unit: WorkUnit) -> Iterator[Batch]:
        held: pa.Table | None = None  # one table of lookahead, so that the last can be flagged
        held_offset = held_failed_rows = 0
        held_failed: list[pa.Table] = []
        pending: list[pa.Table] = []  # dead letters waiting for the next table
        pending_rows = seen = index = 0
        started: float | None = time.time()  # told by the unit's first batch
        held_s = pending_s = 0.0  # seconds spent reading (not while a yielded batch is processed)
        clock = time.perf_counter()
        for member, item in self._packed(unit):
            pending_s += time.perf_counter() - clock
            clock = time.perf_counter()
            if not isinstance(item, pa.Table):  # rows that failed: dead letters for the next table
                bad = isinstance(item, BadRows)
                pending.append(
                    dead_letters.from_bad_rows(unit, item, member)
                    if bad
                    else dead_letters.from_unread(unit, item, member)
                )
                pending_rows += _rows(item)
                seen += _rows(item)
                continue
            if held is not None:
                batch = self._batch(unit, index, held_offset, False, held, held_failed, held_failed_rows)
                yield dataclasses.replace(batch, read_seconds=held_s, started=started)
                started = None
                index += 1
                clock = time.perf_counter()
            held, held_offset, held_failed, held_failed_rows = item, seen, pending, pending_rows
            held_s, pending_s = pending_s, 0.0
            pending, pending_rows = [], 0
            seen += item.num_rows
        if held is None:  # every row failed: an empty batch carries them to the writer
            held, held_offset = pa.table({}), seen
        pending_s += time.perf_counter() - clock
        failed_rows = held_failed_rows + pending_rows
        batch = self._batch(unit, index, held_offset, True, held, held_failed + pending, failed_rows)
        yield dataclasses.replace(batch, read_seconds=held_s + pending_s, started=started)

    def _packed(self, unit: WorkUnit) -> Iterator[tuple[WorkUnit, pa.Table | BadRows | UnreadRows]]:
        """``(file's unit, item)`` of every item of ``unit``. A packed unit's files are read
        one after the other, each with its own accounting (a file that ends early or fails
        costs its own unread rows, named in it), and their tables are joined into batches
        of ``batch_size`` rows, so that a thousand three-row files make one batch, not a
        thousand: a batch never spans a failed row, so its rows stay contiguous."""
        if not unit.members:
            for item in self._items(unit):
                yield unit, item
            return
        buffer: list[pa.Table] = []
        buffered = 0
        empty: pa.Table | None = None
        for member, items in self._ahead(unit.members):
            for item in items:
                if isinstance(item, pa.Table):
                    if not item.num_rows:
                        empty = item if empty is None else empty
                        continue
                    buffer.append(item)
                    buffered += item.num_rows
                    while buffered >= self.batch_size:
                        joined = _join(buffer)
                        yield unit, joined.slice(0, self.batch_size)
                        rest = joined.slice(self.batch_size)
                        buffer, buffered = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
                    continue
                if buffer:
                    yield unit, _join(buffer)
                    buffer, buffered = [], 0
                yield member, item
        if buffer:
            yield unit, _join(buffer)
        elif empty is not None:
            yield unit, empty

    def _ahead(self, members: Sequence[WorkUnit]) -> Iterator[tuple[WorkUnit, list]]:
        """Each file of a packed unit with all its items, in order, read :data:`PACK_AHEAD`
        files ahead by :data:`PACK_THREADS` threads (on an object store
        :data:`REMOTE_PACK_AHEAD` by :data:`REMOTE_PACK_THREADS`): there a small file costs a
        request or two of latency, and a pack of thousands read one by one would wait for
        each in turn. Local files are read here while they read fast (:data:`SLOW_FILE_S`)."""
        remote = "://" in members[0].path and not members[0].path.startswith("file://")
        threads, ahead = (REMOTE_PACK_THREADS, REMOTE_PACK_AHEAD) if remote else (PACK_THREADS, PACK_AHEAD)
        files = iter(members)
        if not remote:
            spent, probed = 0.0, 0
            for member in files:
                clock = time.perf_counter()
                items = list(self._items(member, ahead=0))
                spent += time.perf_counter() - clock
                probed += 1
                yield member, items
                if probed == PROBE_FILES:
                    if spent / probed > SLOW_FILE_S:
                        break  # a slow mount: the threads read the rest
                    spent, probed = 0.0, 0
            else:
                return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            window: deque = deque()
            for member in itertools.islice(files, ahead):
                window.append((member, pool.submit(lambda m=member: list(self._items(m, ahead=0)))))
            while window:
                member, future = window.popleft()
                following = next(files, None)
                if following is not None:
                    window.append((following, pool.submit(lambda m=following: list(self._items(m, ahead=0)))))
                yield member, future.result()

    def _items(self, unit: WorkUnit, ahead: int = 2) -> Iterator[pa.Table | BadRows | UnreadRows]:
        position = 0  # rows of the unit accounted for so far: read, bad or unread
        reason = None
        try:
            for item in prefetch(self.source.read(unit, self.columns, self.batch_size), ahead):  # reads ahead
                position += _rows(item)
                yield item
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any read error costs the unread rows, not the job
            reason = read_error(exc)
        if self.source.counts_rows and (position < unit.rows or reason is not None):
            stop = max(position, unit.rows)
            yield UnreadRows(
                unit.file_row(position),
                unit.file_row(stop),
                reason or f"the file ended after {position} of the unit's {unit.rows} planned rows",
            )
        elif reason is not None:
            yield BadRows(rows=[unit.file_row(position)], error=f"cannot read on from here: {reason}")

    def _batch(
        self, unit: WorkUnit, index: int, offset: int, last: bool, table: pa.Table, failed: list, failed_rows: int
    ) -> Batch:
        rows_in = table.num_rows + failed_rows
        self.rows_in.inc(rows_in)
        return Batch(unit, index, offset, last, table, rows_in=rows_in, failed=dead_letters.concat(failed))


def _join(tables: list[pa.Table]) -> pa.Table:
    """Tables of several files of a packed unit as one (their columns must agree, which
    planning checked); one table is returned as it is."""
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default").combine_chunks()


def _rows(item: pa.Table | BadRows | UnreadRows) -> int:
    """How many rows of the unit an item of a source's ``read`` stands for."""
    if isinstance(item, BadRows):
        return len(item.rows)
    return item.count if isinstance(item, UnreadRows) else item.num_rows


def read_error(exc: BaseException) -> str:
    """One line for an error a source raised: our own message as it is, any other
    exception (``OSError: Couldn't deserialize thrift``...) with its type."""
    if isinstance(exc, BeamscoreError):
        return first_line(str(exc))
    return f"{type(exc).__name__}: {first_line(str(exc), 'no message')}"


class ReadBatches(beam.PTransform):
    """Read work units into :class:`~beamscore.transforms.batch.Batch` es.

    Units are reshuffled first so that a runner spreads them over workers; everything after
    the reshuffle fuses into one stage per unit, so batches of a unit stay in order.
    """

    def __init__(self, source: Source, columns: Sequence[str], batch_size: int = 4096) -> None:
        super().__init__()
        self.source = source
        self.columns = list(columns)
        self.batch_size = batch_size

    def expand(self, units):
        return (
            units
            | "Spread" >> beam.Reshuffle()
            | "ReadUnit" >> beam.ParDo(ReadUnitFn(self.source, self.columns, self.batch_size))
        )
