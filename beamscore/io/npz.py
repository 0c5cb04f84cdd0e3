""".npz source: each array of the archive is a column, all with one common number of rows.

Arrays map to signature inputs by name or ``--map INPUT=ARRAY``. Members are read as
``.npy`` streams straight out of the zip (one seek and one read per batch, see
:mod:`beamscore.io.npy`), so a unit of rows never loads the other rows; work units are row
ranges. Arrays are read without pickle: an object array is refused, naming
``--allow-pickle``. A file whose arrays disagree on their number of rows is refused on the
launcher, naming the arrays and their lengths.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import ExitStack

import pyarrow as pa

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.io.base import FilePlan, Source, WorkUnit
from beamscore.io.npy import DEFAULT_ROWS_PER_UNIT, NpyHeader, column_spec, read_header, read_rows, row_units, to_arrow
from beamscore.model.binding import ColumnSpec

__all__ = ["NpzSource"]


class NpzSource(Source):
    """Reads ``.npz`` files (``np.savez`` / ``np.savez_compressed``) through fsspec."""

    format = "npz"
    options = ("allow_pickle", "rows_per_unit")

    def __init__(self, rows_per_unit: int = DEFAULT_ROWS_PER_UNIT, allow_pickle: bool = False) -> None:
        self.rows_per_unit = rows_per_unit
        self.allow_pickle = allow_pickle

    def columns(self, path: str) -> dict[str, ColumnSpec]:
        return {name: column_spec(name, header) for name, header in self._headers(path).items()}

    def units(self, path: str, shard: int) -> list[WorkUnit]:
        return self.plan_file(path, shard).units

    def plan_file(self, path: str, shard: int, tail: bytes | None = None, size: int | None = None) -> FilePlan:
        """Columns and units from one read of the members' headers."""
        headers = self._headers(path)
        rows = next(iter(headers.values())).rows if headers else 0
        columns = {name: column_spec(name, header) for name, header in headers.items()}
        return FilePlan(columns, row_units(path, shard, rows, self.rows_per_unit))

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table]:
        fs, path = bfs.filesystem(unit.path)
        with fs.open(path, "rb") as f, ExitStack() as stack:
            archive = _zip(f, unit.path)
            members = _members(archive)
            streams = {}
            for name in columns:
                if name not in members:
                    raise BeamscoreError(f"{unit.path}: no array {name!r}; arrays: {', '.join(members) or 'none'}")
                stream = stack.enter_context(archive.open(members[name]))
                streams[name] = (stream, read_header(stream, f"{unit.path}: array {name!r}", self.allow_pickle))
            starts = range(unit.start, unit.stop, batch_size) or range(unit.start, unit.start + 1)
            for start in starts:
                stop = min(start + batch_size, unit.stop)
                yield pa.table(
                    {
                        name: to_arrow(read_rows(stream, header, start, stop, f"{unit.path}: array {name!r}"))
                        for name, (stream, header) in streams.items()
                    }
                )

    def _headers(self, url: str) -> dict[str, NpyHeader]:
        fs, path = bfs.filesystem(url)
        try:
            f = fs.open(path, "rb")
        except FileNotFoundError:
            raise BeamscoreError(f"{url}: no such file") from None
        with f:
            archive = _zip(f, url)
            headers = {}
            for name, member in _members(archive).items():
                with archive.open(member) as stream:
                    headers[name] = read_header(stream, f"{url}: array {name!r}", self.allow_pickle)
        lengths = {name: h.rows for name, h in headers.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise BeamscoreError(f"{url}: arrays disagree on their number of rows ({listed}); each array is a column")
        return headers


def _zip(f, url: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BeamscoreError(f"{url}: not a readable .npz (zip) file: {exc}") from None


def _members(archive: zipfile.ZipFile) -> dict[str, str]:
    """Array name -> zip member name (``x`` -> ``x.npy``), in archive order."""
    return {name.removesuffix(".npy"): name for name in archive.namelist() if name.endswith(".npy")}
