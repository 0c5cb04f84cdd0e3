""".npz source: each array of the archive is a column, all with one common number of rows.

Arrays map to signature inputs by name or ``--map INPUT=ARRAY``. Members are read as
``.npy`` streams straight out of the zip (one seek and one read per batch, see
:mod:`beamscore.io.npy`), so a unit of rows never loads the other rows; work units are row
ranges. Arrays are read without pickle: an object array is refused, naming
``--allow-pickle``. A file whose arrays disagree on their number of rows is refused on the
launcher, naming the arrays and their lengths. ``--pad ARRAY=LENGTH[:VALUE]`` cuts or fills
the rows of a 2-d array, or of an object array of 1-d arrays (ragged rows, which only pickle
stores: ``--allow-pickle``), to one length.

Damage is detected before it is scored: a zip member's CRC is checked only once the member
has been read to its end, so each unit first reads its members through (:func:`verify`) and
only then yields rows; a member that fails raises before any of its rows is scored (the
unit's rows become one dead letter). This reads each member twice (once per process,
not once per unit), the price of not scoring corrupt values.
"""

from __future__ import annotations

import copy
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import pyarrow as pa

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line
from beamscore.io.base import FilePlan, Source, WorkUnit
from beamscore.io.npy import DEFAULT_ROWS_PER_UNIT, NpyHeader, column_spec, read_header, read_rows, row_units, to_arrow
from beamscore.io.pad import pad_spec, pad_table, parse_pad
from beamscore.model.binding import STRING, ColumnSpec
from beamscore.model.inspect import SignatureInfo

__all__ = ["NpzSource", "verify"]

_VERIFY_CHUNK = 1 << 20
#: members this process has read through (CRC checked), so a file's later units skip it
_verified: set[tuple] = set()
_VERIFIED_MAX = 4096


class NpzSource(Source):
    """Reads ``.npz`` files (``np.savez`` / ``np.savez_compressed``) through fsspec."""

    format = "npz"
    options = ("allow_pickle", "rows_per_unit", "pad")

    def __init__(
        self,
        rows_per_unit: int = DEFAULT_ROWS_PER_UNIT,
        allow_pickle: bool = False,
        pad: Mapping[str, Any] | None = None,
    ) -> None:
        self.rows_per_unit = rows_per_unit
        self.allow_pickle = allow_pickle
        self.pad = parse_pad(pad)
        self.inputs: frozenset[str] | None = None  # the arrays the signature's inputs read (bind)

    def bind(self, signature: SignatureInfo, mapping: Mapping[str, str]) -> NpzSource:
        """A copy that knows which arrays feed the signature: an archive often carries other
        arrays beside the rows (``class_names``, a scalar ``version``), which are then left
        out of the columns instead of refusing the file."""
        bound = copy.copy(self)
        bound.inputs = frozenset(mapping.get(key, key) for key in signature.inputs)
        return bound

    def bind_models(self, models: Sequence[tuple[str, SignatureInfo, Mapping[str, str]]]) -> NpzSource:
        """Several models: the arrays any model's inputs read."""
        bound = copy.copy(self)
        bound.inputs = frozenset(mapping.get(key, key) for _, signature, mapping in models for key in signature.inputs)
        return bound

    def columns(self, path: str) -> dict[str, ColumnSpec]:
        return self._specs(path, self._headers(path))

    def _specs(self, path: str, headers: dict[str, NpyHeader]) -> dict[str, ColumnSpec]:
        """Each array's column: object arrays as their rows hold them, ``--pad`` applied."""
        specs = {
            name: self._object_spec(path, name) if header.dtype.hasobject else column_spec(name, header)
            for name, header in headers.items()
        }
        for name, pad in self.pad.items():
            if name not in specs:
                raise BeamscoreError(f"{path}: --pad {name}: no array {name!r}; arrays: {', '.join(specs) or 'none'}")
            specs[name] = pad_spec(specs[name], pad, path)
        return specs

    def units(self, path: str, shard: int) -> list[WorkUnit]:
        return self.plan_file(path, shard).units

    def plan_file(self, path: str, shard: int, tail: bytes | None = None, size: int | None = None) -> FilePlan:
        """Columns and units from one read of the members' headers."""
        headers = self._headers(path)
        rows = next(iter(headers.values())).rows if headers else 0
        return FilePlan(self._specs(path, headers), row_units(path, shard, rows, self.rows_per_unit))

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table]:
        fs, path = bfs.filesystem(unit.path)
        with fs.open(path, "rb") as f, ExitStack() as stack:
            archive = _zip(f, unit.path)
            members = _members(archive)
            streams = {}
            for name in columns:
                if name not in members:
                    raise BeamscoreError(f"{unit.path}: no array {name!r}; arrays: {', '.join(members) or 'none'}")
                where = f"{unit.path}: array {name!r}"
                verify(archive, members[name], where)
                stream = stack.enter_context(archive.open(members[name]))
                header = read_header(stream, where, self.allow_pickle)
                if header.rows < unit.stop:
                    raise BeamscoreError(
                        f"{where}: has {header.rows} rows, the plan has {unit.stop} (the file changed after planning)"
                    )
                streams[name] = (stream, header, where)
            starts = range(unit.start, unit.stop, batch_size) or range(unit.start, unit.start + 1)
            for start in starts:
                stop = min(start + batch_size, unit.stop)
                table = pa.table(
                    {
                        name: to_arrow(read_rows(stream, header, start, stop, where), where, start)
                        for name, (stream, header, where) in streams.items()
                    }
                )
                yield pad_table(table, self.pad)

    def _object_spec(self, url: str, name: str) -> ColumnSpec:
        """An object array's column: a list of values per row when its rows are arrays
        (ragged rows; their values' dtype from the first non-None row), else strings."""
        fs, path = bfs.filesystem(url)
        with fs.open(path, "rb") as f:
            archive = _zip(f, url)
            with archive.open(_members(archive)[name]) as stream:
                rows = np.lib.format.read_array(stream, allow_pickle=True)  # _headers checked --allow-pickle
        for row in rows.reshape(-1):
            if isinstance(row, np.ndarray | list | tuple):
                kind = np.asarray(row).dtype
                return ColumnSpec(name, STRING if kind.kind in "SUO" else kind.name, None)
            if row is not None:
                break
        return ColumnSpec(name, STRING, rows.shape[1:])

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
                    try:
                        headers[name] = read_header(stream, f"{url}: array {name!r}", self.allow_pickle)
                    except BeamscoreError:
                        # a scalar or a structured array no input reads is not a column; an
                        # object array is still refused without --allow-pickle (--keep may name it)
                        if not self._aside(name) or _pickled(archive, member):
                            raise
        lengths = {name: h.rows for name, h in headers.items()}
        if self.inputs is not None:  # the rows are the inputs' rows; another length is not a column
            rows = {n for name, n in lengths.items() if name in self.inputs}
            if len(rows) == 1:
                (n,) = rows
                headers = {name: h for name, h in headers.items() if h.rows == n or not self._aside(name)}
                lengths = {name: h.rows for name, h in headers.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise BeamscoreError(f"{url}: arrays disagree on their number of rows ({listed}); each array is a column")
        return headers

    def _aside(self, name: str) -> bool:
        """Whether array ``name`` may be left out of the columns when it cannot be one: only
        for a bound source (:meth:`bind`), and only when no input and no ``--pad`` reads it."""
        return self.inputs is not None and name not in self.inputs and name not in self.pad


def verify(archive: zipfile.ZipFile, member: str, where: str) -> None:
    """Read ``member`` to its end, so that zipfile checks its CRC; a mismatch (or a member
    that does not inflate) is a :class:`BeamscoreError` naming it.

    A member this process has verified is not read again for the file's next unit: it is
    known by its place, CRC and sizes in the zip directory, which a rewritten file changes."""
    info = archive.getinfo(member)
    key = (where, info.header_offset, info.CRC, info.compress_size, info.file_size)
    if key in _verified:
        return
    try:
        with archive.open(member) as stream:
            while stream.read(_VERIFY_CHUNK):
                pass
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise BeamscoreError(f"{where}: damaged: {first_line(str(exc))}") from None
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified.add(key)


def _pickled(archive: zipfile.ZipFile, member: str) -> bool:
    """Whether ``member``'s header says it holds Python objects (only pickle reads them)."""
    try:
        with archive.open(member) as stream:
            return read_header(stream, member, allow_pickle=True).dtype.hasobject
    except BeamscoreError:
        return False


def _zip(f, url: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BeamscoreError(f"{url}: not a readable .npz (zip) file: {exc}") from None


def _members(archive: zipfile.ZipFile) -> dict[str, str]:
    """Array name -> zip member name (``x`` -> ``x.npy``), in archive order."""
    return {name.removesuffix(".npy"): name for name in archive.namelist() if name.endswith(".npy")}
