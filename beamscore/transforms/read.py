"""``ReadBatches``: work units in, column batches out (one reader call per unit)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam
import pyarrow as pa

from beamscore.errors import BeamscoreError
from beamscore.io.base import BadRows, Source, WorkUnit
from beamscore.io.prefetch import prefetch
from beamscore.transforms import dead_letters
from beamscore.transforms.batch import Batch

__all__ = ["ReadBatches", "ReadUnitFn", "plan_units"]


def plan_units(source: Source, files: Sequence[str]) -> list[WorkUnit]:
    """All work units of ``files`` (in order: the position of a file is its shard number)."""
    return [unit for shard, path in enumerate(files) for unit in source.units(path, shard)]


class ReadUnitFn(beam.DoFn):
    """Reads one unit and emits its batches in order, the last one flagged.

    Rows the source reports as :class:`~beamscore.io.base.BadRows` ride along with the next
    batch as dead letters. A source that raises :class:`~beamscore.errors.BeamscoreError`
    part-way (a file it cannot read on from) ends its unit there: one dead letter records
    where and why, and the rows already read are still scored.
    """

    def __init__(self, source: Source, columns: Sequence[str], batch_size: int) -> None:
        self.source = source.with_dead_letters()
        self.columns = list(columns)
        self.batch_size = batch_size
        self.rows_in = beam.metrics.Metrics.counter("beamscore", "rows_in")

    def process(self, unit: WorkUnit) -> Iterator[Batch]:
        held: pa.Table | None = None  # one table of lookahead, so that the last can be flagged
        held_offset = held_failed_rows = 0
        held_failed: list[pa.Table] = []
        pending: list[pa.Table] = []  # dead letters waiting for the next table
        pending_rows = seen = index = 0
        for item in self._items(unit):
            if isinstance(item, BadRows):
                pending.append(dead_letters.from_bad_rows(unit, item))
                pending_rows += len(item.rows)
                seen += len(item.rows)
                continue
            if held is not None:
                yield self._batch(unit, index, held_offset, False, held, held_failed, held_failed_rows)
                index += 1
            held, held_offset, held_failed, held_failed_rows = item, seen, pending, pending_rows
            pending, pending_rows = [], 0
            seen += item.num_rows
        if held is None:  # every row failed: an empty batch carries them to the writer
            held, held_offset = pa.table({}), seen
        yield self._batch(unit, index, held_offset, True, held, held_failed + pending, held_failed_rows + pending_rows)

    def _items(self, unit: WorkUnit) -> Iterator[pa.Table | BadRows]:
        position = 0
        try:
            for item in prefetch(self.source.read(unit, self.columns, self.batch_size)):  # reads ahead
                position += len(item.rows) if isinstance(item, BadRows) else item.num_rows
                yield item
        except BeamscoreError as exc:
            yield BadRows(rows=[unit.file_row(position)], error=f"cannot read on from here: {exc}")

    def _batch(
        self, unit: WorkUnit, index: int, offset: int, last: bool, table: pa.Table, failed: list, failed_rows: int
    ) -> Batch:
        rows_in = table.num_rows + failed_rows
        self.rows_in.inc(rows_in)
        return Batch(unit, index, offset, last, table, rows_in=rows_in, failed=dead_letters.concat(failed))


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
