"""``WriteBatches``: batches of predictions in, one committed file per unit out."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import apache_beam as beam

from beamscore.io.base import Sink, UnitWriter, WorkUnit
from beamscore.io.parquet_sink import ParquetSink
from beamscore.transforms.batch import Batch, UnitResult

__all__ = ["WriteBatches", "WriteParquet", "WriteUnitFn"]


class WriteUnitFn(beam.DoFn):
    """Appends each batch to its unit's open writer and commits the unit on its last batch.

    Batches of a unit arrive in order within one bundle (reading, scoring and writing are
    fused after the reshuffle); a unit left open when its bundle ends means that promise was
    broken, and its temporary file is dropped rather than committed half-written.
    """

    def __init__(self, sink: Sink, metadata: Mapping[str, str]) -> None:
        self.sink = sink
        self.metadata = dict(metadata)
        self.rows_out = beam.metrics.Metrics.counter("beamscore", "rows_out")
        self.units_done = beam.metrics.Metrics.counter("beamscore", "units")
        self._open: dict[WorkUnit, tuple[UnitWriter, int]] = {}

    def start_bundle(self) -> None:
        self._open = {}

    def process(self, batch: Batch) -> Iterator[UnitResult]:
        writer, rows = self._open.pop(batch.unit, (None, 0))
        if writer is None:
            if batch.index != 0:
                raise RuntimeError(f"{batch.where}: batch {batch.index} of a unit arrived before batch 0")
            writer = self.sink.open(batch.unit, self.metadata)
        try:
            writer.write(batch.table)
        except BaseException:
            writer.abort()
            raise
        rows += batch.table.num_rows
        self.rows_out.inc(batch.table.num_rows)
        if not batch.last:
            self._open[batch.unit] = (writer, rows)
            return
        files = writer.close()
        self.units_done.inc()
        yield UnitResult(unit=batch.unit.name, input=batch.unit.path, files=files, rows_in=rows, rows_out=rows)

    def finish_bundle(self) -> None:
        left = list(self._open)
        for writer, _ in self._open.values():
            writer.abort()
        self._open = {}
        if left:
            raise RuntimeError(f"units {[u.name for u in left]} were not finished within one bundle")


class WriteBatches(beam.PTransform):
    """Write scored batches with any :class:`~beamscore.io.base.Sink`; emits a
    :class:`~beamscore.transforms.batch.UnitResult` per committed unit."""

    def __init__(self, sink: Sink, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.sink = sink
        self.metadata = dict(metadata or {})

    def expand(self, batches):
        return batches | "WriteUnit" >> beam.ParDo(WriteUnitFn(self.sink, self.metadata))


class WriteParquet(WriteBatches):
    """Write scored batches as ``OUTPUT/part-SSSSS-UUUUU.parquet``, one file per unit."""

    def __init__(self, output: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(ParquetSink(output), metadata)
