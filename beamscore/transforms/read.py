"""``ReadBatches``: work units in, column batches out (one reader call per unit)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apache_beam as beam

from beamscore.io.base import Source, WorkUnit
from beamscore.transforms.batch import Batch

__all__ = ["ReadBatches", "ReadUnitFn", "plan_units"]


def plan_units(source: Source, files: Sequence[str]) -> list[WorkUnit]:
    """All work units of ``files`` (in order: the position of a file is its shard number)."""
    return [unit for shard, path in enumerate(files) for unit in source.units(path, shard)]


class ReadUnitFn(beam.DoFn):
    """Reads one unit and emits its batches in order, the last one flagged."""

    def __init__(self, source: Source, columns: Sequence[str], batch_size: int) -> None:
        self.source = source
        self.columns = list(columns)
        self.batch_size = batch_size
        self.rows_in = beam.metrics.Metrics.counter("beamscore", "rows_in")

    def process(self, unit: WorkUnit) -> Iterator[Batch]:
        tables = iter(self.source.read(unit, self.columns, self.batch_size))
        current = next(tables)
        index = offset = 0
        for following in tables:
            yield Batch(unit, index, offset, False, current)
            self.rows_in.inc(current.num_rows)
            index, offset = index + 1, offset + current.num_rows
            current = following
        self.rows_in.inc(current.num_rows)
        yield Batch(unit, index, offset, True, current)


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
