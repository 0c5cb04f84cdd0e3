""".npy sink: one ``.npy`` file per output column per work unit, no pickle.

Layout: ``OUTPUT/<column>/part-SSSSS-UUUUU.npy`` for every signature output and every
``--keep`` column, where ``<column>`` is :func:`beamscore.paths.safe_component` of the name
(``../x`` becomes ``%2E.%2Fx``: a leading ``_`` or ``.`` is escaped too, so a column can never
take the place of ``_errors`` or ``_manifest.json``). Files of the same unit share the part
name and hold the same rows in input order, so ``np.load`` of one part across columns lines
up row by row.

Numeric columns stream to a local spool file and the ``.npy`` header is written once the row
count is known; strings and bytes become fixed-width ``U``/``S`` arrays (kept in memory until
the unit closes, to find the width). Object arrays are refused: ``.npy`` would need pickle.
Every file is written under ``OUTPUT/_temporary/`` and renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import IO

import numpy as np
import pyarrow as pa

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.io.arrow import to_numpy
from beamscore.io.base import Sink, UnitWriter, WorkUnit
from beamscore.paths import safe_component
from beamscore.transforms.temp import temp_path

__all__ = ["NpySink", "column_dir"]


def column_dir(name: str) -> str:
    """The directory name (one safe path component) of an output or kept column."""
    component = safe_component(name)
    if component[0] in "_.":
        component = f"%{ord(component[0]):02X}{component[1:]}"
    return component


class NpySink(Sink):
    """Writes ``DIR/<column>/part-SSSSS-UUUUU.npy``."""

    format = "npy"

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = os.fspath(output)

    def open(self, unit: WorkUnit, metadata: dict[str, str]) -> UnitWriter:
        return _NpyUnitWriter(self.output, unit)

    def unit_files(self, unit: str, columns: Sequence[str]) -> list[str]:
        return [f"{column_dir(c)}/{unit}.npy" for c in columns]


class _Column:
    """One column of one unit: a numeric spool file, or in-memory string chunks."""

    def __init__(self, name: str, first: np.ndarray) -> None:
        self.name = name
        self.inner = first.shape[1:]
        self.kind = first.dtype.kind
        self.dtype = first.dtype
        self.rows = 0
        self.chunks: list[np.ndarray] = []
        self.spool: IO[bytes] | None = None if self.kind in "SU" else tempfile.TemporaryFile()  # noqa: SIM115

    def add(self, values: np.ndarray, where: str) -> None:
        if values.shape[1:] != self.inner:
            raise BeamscoreError(
                f"{where}: column {self.name!r} has rows of shape {values.shape[1:]} here and {self.inner} "
                "earlier in the unit; .npy needs one shape per file (use --output-format parquet)"
            )
        if self.spool is None:
            if values.dtype.kind not in "SU":
                raise BeamscoreError(f"{where}: column {self.name!r} changed dtype within a unit")
            self.chunks.append(values)
        else:
            if values.dtype != self.dtype:
                raise BeamscoreError(
                    f"{where}: column {self.name!r} has dtype {values.dtype} here and {self.dtype} earlier in the unit"
                )
            self.spool.write(np.ascontiguousarray(values).tobytes())
        self.rows += len(values)

    def write_to(self, f: IO[bytes]) -> None:
        if self.spool is None:
            array = np.concatenate(self.chunks) if self.chunks else np.empty((0, *self.inner), self.dtype)
            np.lib.format.write_array(f, array, allow_pickle=False)
            return
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, *self.inner),
        }
        np.lib.format.write_array_header_2_0(f, header)
        self.spool.seek(0)
        shutil.copyfileobj(self.spool, f, 1 << 20)

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class _NpyUnitWriter(UnitWriter):
    def __init__(self, output: str, unit: WorkUnit) -> None:
        self.fs, self.root = bfs.filesystem(output)
        self.unit = unit
        self.columns: dict[str, _Column] = {}

    def write(self, table: pa.Table) -> None:
        where = f"{self.unit.path} (unit {self.unit.index})"
        for name in table.column_names:
            values = _numpy(table[name], name, where)
            if name not in self.columns:
                self.columns[name] = _Column(name, values)
            self.columns[name].add(values, where)

    def close(self) -> list[str]:
        files = []
        try:
            for name, column in self.columns.items():
                directory = bfs.join(self.root, column_dir(name))
                final = bfs.join(directory, f"{self.unit.name}.npy")
                temp = temp_path(self.root, self.unit.name, "npy")
                self.fs.makedirs(temp.rsplit("/", 1)[0], exist_ok=True)
                with self.fs.open(temp, "wb") as f:
                    column.write_to(f)
                self.fs.makedirs(directory, exist_ok=True)
                bfs.move(self.fs, temp, final)
                files.append(bfs.unstrip(self.fs, final))
        finally:
            self.abort()
        return files

    def abort(self) -> None:
        for column in self.columns.values():
            column.close()


def _numpy(column: pa.ChunkedArray, name: str, where: str) -> np.ndarray:
    """A column as a fixed-width numpy array: numbers as they are, strings ``U``, bytes ``S``."""
    t = column.type
    if pa.types.is_null(t):
        return np.empty((len(column),), dtype=np.float64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        _no_nulls(column, name, where)
        return column.to_numpy().astype(str)
    values = to_numpy(column, name, where)
    if values.dtype == object:
        flat = values.reshape(-1)
        if all(isinstance(v, bytes) for v in flat[:1]):
            return values.astype(bytes)
        raise BeamscoreError(
            f"{where}: column {name!r} holds Python objects; .npy would need pickle (use --output-format parquet)"
        )
    return values


def _no_nulls(column: pa.ChunkedArray, name: str, where: str) -> None:
    if column.null_count:
        raise BeamscoreError(
            f"{where}: column {name!r} has nulls, which .npy cannot hold (use --output-format parquet)"
        )
