"""What flows through the pipeline: column batches tagged with their work unit."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from beamscore.io.base import WorkUnit

__all__ = ["Batch", "UnitResult"]


@dataclass(frozen=True)
class Batch:
    """A few thousand rows of one unit as an Arrow table, in input order.

    ``index`` numbers the batches of a unit from 0, ``offset`` is the first row's index
    within the input file's unit and ``last`` marks the unit's final batch, so the writer
    knows when to commit the unit's file.
    """

    unit: WorkUnit
    index: int
    offset: int
    last: bool
    table: pa.Table

    @property
    def where(self) -> str:
        """File and rows, for error messages."""
        n = self.table.num_rows
        return f"{self.unit.path} (unit {self.unit.index}, rows {self.offset}-{self.offset + max(n, 1) - 1})"


@dataclass(frozen=True)
class UnitResult:
    """What writing one unit produced; the manifest is built from these."""

    unit: str
    input: str
    files: list[str] = field(default_factory=list)
    rows_in: int = 0
    rows_out: int = 0
    rows_failed: int = 0
