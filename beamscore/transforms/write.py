"""``WriteBatches``: batches of predictions in, one committed file per unit out."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import pyarrow as pa

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, JobFailed, first_line
from beamscore.io.base import Sink, UnitWriter, WorkUnit
from beamscore.io.parquet_sink import ParquetSink
from beamscore.transforms import dead_letters, stopping
from beamscore.transforms.batch import Batch, UnitResult
from beamscore.transforms.receipts import write_receipt
from beamscore.transforms.watchdog import watch_launcher

__all__ = ["WriteBatches", "WriteParquet", "WriteUnitFn", "check_order"]


@dataclass
class _OpenUnit:
    writer: UnitWriter
    rows_in: int = 0
    rows_out: int = 0
    written: bool = False
    device: str | None = None
    failed: list[pa.Table] = field(default_factory=list)
    next_index: int = 0
    batches: int = 0
    seconds: float = 0.0
    loads: int = 0
    load_seconds: float = 0.0
    worker: str | None = None
    #: several models: name -> ModelRows (:mod:`beamscore.transforms.run_models`)
    models: dict[str, Any] = field(default_factory=dict)
    batch_ms: list[float] = field(default_factory=list)
    read_seconds: float = 0.0
    decode_seconds: float = 0.0
    encode_seconds: float = 0.0
    write_seconds: float = 0.0
    started: float | None = None


class WriteUnitFn(beam.DoFn):
    """Appends each batch to its unit's open writer and commits the unit on its last batch.

    Batches of a unit arrive in order within one bundle (reading, scoring and writing are
    fused after the reshuffle); a unit left open when its bundle ends means that promise was
    broken, and its temporary file is dropped rather than committed half-written.

    Committing a unit: its dead letters (if any) go to ``OUTPUT/_errors/`` first, then its
    output file(s) are renamed into place, then its receipt (``OUTPUT/_units/``) is written:
    a unit with a receipt is complete (see :mod:`beamscore.transforms.receipts`).
    """

    def __init__(self, sink: Sink, metadata: Mapping[str, str], output: str | None = None) -> None:
        self.sink = sink
        self.metadata = dict(metadata)
        self.output = output if output is not None else sink.output  # type: ignore[attr-defined]
        self.errors_sink = ParquetSink(bfs.join(self.output, dead_letters.ERRORS_DIR))
        self.rows_out = beam.metrics.Metrics.counter("beamscore", "rows_out")
        self.rows_failed = beam.metrics.Metrics.counter("beamscore", "rows_failed")
        self.units_done = beam.metrics.Metrics.counter("beamscore", "units")
        self._open: dict[WorkUnit, _OpenUnit] = {}
        # units this instance committed: a later batch of one would replace its file
        self._committed: set[WorkUnit] = set()

    def setup(self) -> None:
        watch_launcher()  # a worker of a killed local launcher stops instead of committing units

    def start_bundle(self) -> None:
        self._open = {}

    def process(self, batch: Batch) -> Iterator[UnitResult]:
        with stopping.writing(self.output) as go:
            if not go:  # the job was stopped and its temporary files removed: write nothing more
                self._drop_open()
                return
            results = self._guarded(batch)
        yield from results

    def _guarded(self, batch: Batch) -> list[UnitResult]:
        try:
            return list(self._process(batch))
        except BeamscoreError:
            raise
        except Exception as exc:  # name the file and the stage: the CLI's last line is this one
            raise JobFailed(
                f"{batch.unit.path} ({batch.unit.name}): write: {type(exc).__name__}: {first_line(str(exc))}"
            ) from exc

    def _process(self, batch: Batch) -> Iterator[UnitResult]:
        check_order(batch, self._open.get(batch.unit), batch.unit in self._committed)
        state = self._open.pop(batch.unit, None)
        if state is None:
            state = _OpenUnit(self.sink.open(batch.unit, self.metadata))
        state.next_index = batch.index + 1
        began = time.perf_counter()
        try:
            # an empty table is written only to give a unit with no rows its (empty) file
            if batch.table.num_rows or (batch.last and not state.written):
                state.writer.write(batch.table)
                state.written = True
        except BaseException:
            state.writer.abort()
            raise
        state.write_seconds += time.perf_counter() - began
        state.batch_ms.append(round(1000 * batch.seconds, 3))
        state.read_seconds += batch.read_seconds
        state.decode_seconds += batch.decode_seconds
        state.encode_seconds += batch.encode_seconds
        state.started = batch.started if state.started is None else state.started
        state.rows_in += batch.source_rows
        state.rows_out += batch.table.num_rows
        state.device = batch.device or state.device
        state.batches += 1
        state.seconds += batch.seconds
        state.worker = batch.worker or state.worker
        state.loads += len(batch.model_loads)
        state.load_seconds += sum(batch.model_loads)
        for name, counts in batch.models:  # several models: each one's counts over the unit
            state.models[name] = state.models[name].plus(counts) if name in state.models else counts
        if batch.failed is not None:
            state.failed.append(batch.failed)
        self.rows_out.inc(batch.table.num_rows)
        self.rows_failed.inc(batch.failed_rows)
        if not batch.last:
            self._open[batch.unit] = state
            return
        self._committed.add(batch.unit)
        yield self._commit(batch.unit, state)

    def _commit(self, unit: WorkUnit, state: _OpenUnit) -> UnitResult:
        began = time.perf_counter()
        failed = dead_letters.concat(state.failed)
        errors: list[str] = []
        try:
            if failed is not None:
                error_writer = self.errors_sink.open(unit, self.metadata)
                error_writer.write(failed)
                errors = error_writer.close()
        except BaseException:
            state.writer.abort()
            raise
        files = state.writer.close()
        result = UnitResult(
            unit=unit.name,
            input=unit.path,
            files=files,
            rows_in=state.rows_in,
            rows_out=state.rows_out,
            rows_failed=dead_letters.count(failed),
            errors=errors,
            device=state.device,
            batches=state.batches,
            batch_seconds=state.seconds,
            model_loads=state.loads,
            model_load_seconds=state.load_seconds,
            worker=state.worker,
            inputs=unit.files if unit.members else [],
            models={name: counts.to_json() for name, counts in state.models.items()},
            batch_ms=state.batch_ms,
            read_seconds=round(state.read_seconds, 6),
            decode_seconds=round(state.decode_seconds, 6),
            encode_seconds=round(state.encode_seconds, 6),
            write_seconds=round(state.write_seconds + time.perf_counter() - began, 6),
            started=_iso(state.started),
            finished=_iso(time.time()),
        )
        write_receipt(self.output, result)
        self.units_done.inc()
        return result

    def _drop_open(self) -> None:
        for state in self._open.values():
            with contextlib.suppress(Exception):  # its file may be gone with the stopped job's temporaries
                state.writer.abort()
        self._open = {}

    def finish_bundle(self) -> None:
        left = list(self._open)
        if stopping.stopped(self.output):
            self._drop_open()
            return
        for state in self._open.values():
            state.writer.abort()
        self._open = {}
        if left:
            raise RuntimeError(f"units {[u.name for u in left]} were not finished within one bundle")


def _iso(epoch: float | None) -> str | None:
    """``2026-12-07T03:50:01.123Z`` (UTC), or ``None``."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_order(batch: Batch, state: _OpenUnit | None, committed: bool) -> None:
    """Refuse a batch that would lose or replace rows: one for a unit already committed
    (its file would be replaced), a repeated ``index`` or one that skips ahead.

    A unit's batches must come as ``index`` 0, 1, 2, ... with ``last`` on the final one,
    which is what :class:`~beamscore.transforms.read.ReadBatches` makes."""
    if committed:
        raise BeamscoreError(
            f"{batch.where}: batch {batch.index} arrived after unit {batch.unit.name} was committed "
            "(its last batch was already written); writing it would replace the unit's file. "
            "Each unit needs batches 0, 1, 2, ... with last=True only on the final one"
        )
    expected = 0 if state is None else state.next_index
    if batch.index != expected:
        what = "a repeated batch" if batch.index < expected else "out of order"
        raise BeamscoreError(
            f"{batch.where}: batch {batch.index} of unit {batch.unit.name} is {what}; expected batch {expected}"
        )


class WriteBatches(beam.PTransform):
    """Write scored batches with any :class:`~beamscore.io.base.Sink`; emits a
    :class:`~beamscore.transforms.batch.UnitResult` per committed unit.

    ``output`` is the job's output directory, where dead letters (``_errors/``) and unit
    receipts (``_units/``) go; it defaults to the sink's ``output``."""

    def __init__(
        self,
        sink: Sink,
        metadata: Mapping[str, str] | None = None,
        output: str | os.PathLike[str] | None = None,
        tidy: bool = True,
    ) -> None:
        super().__init__()
        self.sink = sink
        self.metadata = dict(metadata or {})
        self.output = None if output is None else os.fspath(output)
        self.tidy = tidy

    def expand(self, batches):
        results = batches | "WriteUnit" >> beam.ParDo(WriteUnitFn(self.sink, self.metadata, self.output))
        if not self.tidy:  # the caller's WriteManifest removes _temporary/ (beamscore score)
            return results
        output = self.output if self.output is not None else self.sink.output  # type: ignore[attr-defined]
        # once every unit is committed: remove OUTPUT/_temporary/, then pass the results on
        return results | "Gather" >> beam.combiners.ToList() | "Tidy" >> beam.FlatMap(_tidy, output)


def _tidy(results: list[UnitResult], output: str) -> list[UnitResult]:
    from beamscore.transforms.manifest import remove_temporary

    remove_temporary(output)
    return results


class WriteParquet(WriteBatches):
    """Write scored batches as ``OUTPUT/part-SSSSS-UUUUU.parquet``, one file per unit."""

    def __init__(self, output: str | os.PathLike[str], metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(ParquetSink(os.fspath(output)), metadata)
