"""What flows through the pipeline: column batches tagged with their work unit."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from beamscore.io.base import WorkUnit
from beamscore.transforms import dead_letters

__all__ = ["Batch", "UnitResult"]


@dataclass(frozen=True)
class Batch:
    """A few thousand rows of one unit as an Arrow table, in input order.

    ``index`` numbers the batches of a unit from 0, ``offset`` is the position within the
    unit of the batch's first row and ``last`` marks the unit's final batch, so the writer
    knows when to commit the unit's file.

    Dead letters travel with the batch: ``failed`` holds the rows of this batch that were
    dropped so far (see :mod:`beamscore.transforms.dead_letters`), ``positions`` the
    position within the unit of each remaining row once some were dropped (``None``:
    ``offset, offset + 1, ...``) and ``rows_in`` how many source rows the batch stands for,
    good and failed, so that every step can be checked: ``rows_in == rows_out + rows_failed``.

    ``device`` is where the model ran on this batch (``GPU:0 (NVIDIA L4)`` or ``CPU``), set
    by the scoring step for the manifest, as are ``seconds`` (its time in that step),
    ``worker`` (``host:pid`` of the process) and ``model_loads`` (the seconds of each model
    load of the process first told by this batch).
    """

    unit: WorkUnit
    index: int
    offset: int
    last: bool
    table: pa.Table
    rows_in: int | None = None
    failed: pa.Table | None = None
    positions: np.ndarray | None = None
    device: str | None = None
    seconds: float = 0.0
    worker: str | None = None
    model_loads: tuple[float, ...] = ()
    #: several models (:mod:`beamscore.transforms.run_models`): ``(name, ModelRows)`` each
    models: tuple[tuple[str, Any], ...] = ()
    #: seconds the reader took to read this batch's rows (the source's file format parsed
    #: into Arrow columns)
    read_seconds: float = 0.0
    #: of ``seconds``: turning the Arrow columns into the signature's inputs (``decode``)
    #: and the outputs into the Arrow columns written (``encode``)
    decode_seconds: float = 0.0
    encode_seconds: float = 0.0
    #: when the reader began the unit (epoch seconds; on the unit's first batch)
    started: float | None = None

    @property
    def source_rows(self) -> int:
        """The number of source rows this batch accounts for."""
        return self.table.num_rows if self.rows_in is None else self.rows_in

    @property
    def failed_rows(self) -> int:
        return dead_letters.count(self.failed)

    def scored(self, table: pa.Table, good: np.ndarray, failed: Iterable[pa.Table | None], **fields: Any) -> Batch:
        """This batch after a scoring step: ``table`` holds the outputs of its rows ``good``
        (indices into this batch's table, in order), ``failed`` the dead letters so far (this
        batch's and the step's); the batch still accounts for all its source rows. ``fields``
        are the step's measures (``seconds``, ``worker``, ``model_loads``...). One place for the
        three scoring steps (one model, several, routed) to keep the accounting alike."""
        positions = self.row_positions()
        return dataclasses.replace(
            self,
            table=table,
            rows_in=self.source_rows,
            failed=dead_letters.concat(list(failed)),
            positions=None if len(good) == self.table.num_rows else positions[good],
            **fields,
        )

    def row_positions(self) -> np.ndarray:
        """Position within the unit of each row of ``table``."""
        if self.positions is not None:
            return self.positions
        return np.arange(self.offset, self.offset + self.table.num_rows, dtype=np.int64)

    @property
    def where(self) -> str:
        """File and rows, for error messages."""
        n = max(self.source_rows, 1)
        if self.unit.members:  # a packed unit: the file and rows of the batch's first row
            paths, rows = self.unit.locate([self.offset])
            more = len(self.unit.members) - 1
            return f"{paths[0]} (unit {self.unit.name}, row {rows[0]}; {n} rows from {more + 1} packed files)"
        return f"{self.unit.path} (unit {self.unit.index}, rows {self.offset}-{self.offset + n - 1})"


@dataclass(frozen=True)
class UnitResult:
    """What writing one unit produced; the manifest is built from these.

    ``files`` are the unit's output files and ``errors`` its dead-letter file (if any rows
    failed). ``rows_in`` is counted from the batches' ``source_rows``, ``rows_out`` from the
    rows written and ``rows_failed`` from the dead letters written. ``device`` is where the
    model ran on the unit's rows (``None`` when no batch was scored). ``batches``,
    ``batch_seconds`` (their time in the scoring step, summed), ``model_loads`` and
    ``model_load_seconds`` (loads first used by this unit's batches) and ``worker`` (the
    ``host:pid`` that scored it) make the manifest's ``metrics``.
    """

    unit: str
    input: str
    files: list[str] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0
    rows_failed: int = 0
    errors: list[str] = field(default_factory=list)
    device: str | None = None
    batches: int = 0
    batch_seconds: float = 0.0
    model_loads: int = 0
    model_load_seconds: float = 0.0
    worker: str | None = None
    #: a packed unit's files: ``[path, first row, stop row]`` each (``input`` is the first's)
    inputs: list[list] = field(default_factory=list)
    #: several models: each one's ``rows_failed``, ``rows_held`` and ``loads`` over the unit
    #: (:class:`~beamscore.transforms.run_models.ModelRows`); empty for a one-model job
    models: dict[str, dict[str, int]] = field(default_factory=dict)
    #: each batch's seconds in the scoring step, in ms (for the manifest's percentiles)
    batch_ms: list[float] = field(default_factory=list)
    #: seconds of the unit in each stage: read (the source's format into Arrow), decode
    #: (Arrow into the signature's inputs), encode (outputs into Arrow), write (the sink);
    #: decode and encode are part of ``batch_seconds``
    read_seconds: float = 0.0
    decode_seconds: float = 0.0
    encode_seconds: float = 0.0
    write_seconds: float = 0.0
    #: when the unit began (read) and was committed, ISO-8601 UTC
    started: str | None = None
    finished: str | None = None

    def to_json(self) -> dict:
        found = self._to_json()
        if self.models:  # a one-model job's receipt stays as it was
            found["models"] = {name: dict(counts) for name, counts in self.models.items()}
        return found

    def _to_json(self) -> dict:
        packed = {"inputs": [list(i) for i in self.inputs]} if self.inputs else {}
        return {
            **packed,
            "started": self.started,
            "finished": self.finished,
            "read_seconds": self.read_seconds,
            "decode_seconds": self.decode_seconds,
            "encode_seconds": self.encode_seconds,
            "write_seconds": self.write_seconds,
            "batch_ms": list(self.batch_ms),
            "batches": self.batches,
            "batch_seconds": self.batch_seconds,
            "model_loads": self.model_loads,
            "model_load_seconds": self.model_load_seconds,
            "worker": self.worker,
            "device": self.device,
            "unit": self.unit,
            "input": self.input,
            "files": list(self.files),
            "errors": list(self.errors),
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_failed": self.rows_failed,
        }

    @classmethod
    def from_json(cls, data: dict) -> UnitResult:
        return cls(
            unit=str(data["unit"]),
            input=str(data["input"]),
            files=[str(f) for f in data.get("files", [])],
            errors=[str(f) for f in data.get("errors", [])],
            rows_in=int(data["rows_in"]),
            rows_out=int(data["rows_out"]),
            rows_failed=int(data["rows_failed"]),
            device=data.get("device"),
            batches=int(data.get("batches", 0)),
            batch_seconds=float(data.get("batch_seconds", 0.0)),
            model_loads=int(data.get("model_loads", 0)),
            model_load_seconds=float(data.get("model_load_seconds", 0.0)),
            worker=data.get("worker"),
            inputs=[[str(p), int(a), int(b)] for p, a, b in data.get("inputs", [])],
            models={
                str(name): {str(k): int(v) for k, v in counts.items()}
                for name, counts in (data.get("models") or {}).items()
            },
            batch_ms=[float(x) for x in data.get("batch_ms", [])],
            read_seconds=float(data.get("read_seconds", 0.0)),
            decode_seconds=float(data.get("decode_seconds", 0.0)),
            encode_seconds=float(data.get("encode_seconds", 0.0)),
            write_seconds=float(data.get("write_seconds", 0.0)),
            started=data.get("started"),
            finished=data.get("finished"),
        )
