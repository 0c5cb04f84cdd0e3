""".npy source: one array per file, read in row slices, never whole.

A work unit is a range of rows (about ``rows_per_unit``). Local files are memory-mapped
(``np.load(mmap_mode="r")``) and copied batch by batch; remote files (``gs://``...) are read
with one seek and one read per batch from the fsspec file. Either way a 10 GB array never
sits in memory whole.

The file has no column name: the array is the column ``*`` (``--map INPUT=*``) and, when the
signature has a single input, also that input's name. Object arrays need pickle and are
refused unless ``--allow-pickle``. :func:`read_header` and :func:`read_rows` also serve the
``.npz`` source, whose members are ``.npy`` streams.
"""

from __future__ import annotations

import ast
import copy
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.io.arrow import from_numpy
from beamscore.io.base import FilePlan, Source, WorkUnit
from beamscore.model.binding import STRING, ColumnSpec
from beamscore.model.inspect import SignatureInfo

__all__ = ["ALL", "NpyHeader", "NpySource", "column_spec", "read_header", "read_rows", "row_units"]

#: The column name of a ``.npy`` file's one array.
ALL = "*"
DEFAULT_ROWS_PER_UNIT = 1 << 20
_MAX_HEADER = 1 << 16  # bytes of a version 3.0 header (numpy's own readers stop at 10,000)


@dataclass(frozen=True)
class NpyHeader:
    """A ``.npy`` stream's header: dtype, shape, memory order and where the data starts."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool
    offset: int

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape[1:])


def read_header(f: BinaryIO, where: str, allow_pickle: bool = False) -> NpyHeader:
    """Read and check the header at the current position of ``f`` (a ``.npy`` stream)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            shape, fortran, dtype = _read_header_3_0(f, version)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # zip: a damaged npz member
        raise BeamscoreError(f"{where}: not a .npy array: {exc}") from None
    if dtype.hasobject and not allow_pickle:
        raise BeamscoreError(
            f"{where}: holds Python objects (dtype {dtype}), which only pickle can read; "
            "pass --allow-pickle if you trust the file"
        )
    if dtype.names is not None:
        raise BeamscoreError(f"{where}: structured arrays (dtype {dtype}) are not supported; save one array per column")
    # Arrow has no complex or long double type: every row failed to convert, after planning
    if dtype.kind == "c":
        raise BeamscoreError(
            f"{where}: complex arrays (dtype {dtype}) are not supported; save the real and imaginary parts "
            "as two arrays (x.real, x.imag)"
        )
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise BeamscoreError(
            f"{where}: long double arrays (dtype {dtype}) are not supported; save them as float64 "
            "(x.astype(np.float64))"
        )
    if len(shape) == 0:
        raise BeamscoreError(f"{where}: is a scalar (shape ()); an array needs one row per entry of its first axis")
    if 0 in shape[1:]:  # a fixed-size list of 0 values, which Arrow cannot hold (every row failed)
        raise BeamscoreError(f"{where}: has rows of 0 values (shape {tuple(shape)}); nothing to feed or keep")
    return NpyHeader(dtype, tuple(shape), fortran, f.tell())


def _read_header_3_0(f: BinaryIO, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The header of a version 3.0 ``.npy`` stream (``write_array(..., version=(3, 0))``, or
    numpy's choice for a header with non-latin-1 field names): a version 2.0 header, UTF-8.

    numpy has no public reader for it (its private one moved in numpy 2), so it is read here:
    a little-endian uint32 length, then a Python dict literal. Any other version is refused.
    """
    if version != (3, 0):
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]} (this reads 1.0, 2.0 and 3.0)")
    raw = f.read(4)
    if len(raw) != 4:
        raise EOFError("the header ends before its length")
    (length,) = struct.unpack("<I", raw)
    if length > _MAX_HEADER:  # numpy too refuses to literal_eval a huge header (a damaged length)
        raise ValueError(f"the header claims {length} bytes (at most {_MAX_HEADER})")
    text = f.read(length)
    if len(text) != length:
        raise EOFError(f"the header ends after {len(text)} of its {length} bytes")
    try:
        fields = ast.literal_eval(text.decode("utf-8"))
    except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse the header {text[:80]!r}: {exc}") from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise ValueError(f"the header is not a dict of descr, fortran_order and shape: {text[:80]!r}")
    shape, fortran = fields["shape"], fields["fortran_order"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"shape is not a tuple of sizes: {shape!r}")
    if not isinstance(fortran, bool):
        raise ValueError(f"fortran_order is not a bool: {fortran!r}")
    try:
        dtype = np.lib.format.descr_to_dtype(fields["descr"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"descr is not a dtype: {fields['descr']!r} ({exc})") from None
    return shape, fortran, dtype


def column_spec(name: str, header: NpyHeader) -> ColumnSpec:
    """The :class:`ColumnSpec` of an array: its dtype and the shape of one row."""
    dtype = STRING if header.dtype.kind in "SUO" else header.dtype.name
    return ColumnSpec(name, dtype, header.shape[1:])


def read_rows(f: BinaryIO, header: NpyHeader, start: int, stop: int, where: str) -> np.ndarray:
    """Rows ``[start, stop)`` of the array whose header is ``header``: one seek, one read."""
    if header.fortran or header.dtype.hasobject:  # not row-contiguous: read it whole (small by nature)
        f.seek(0)
        whole = np.lib.format.read_array(f, allow_pickle=header.dtype.hasobject)
        return whole[start:stop]
    n = stop - start
    want = n * header.row_bytes
    try:
        f.seek(header.offset + start * header.row_bytes)
        data = f.read(want)
    except (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile) as exc:
        raise BeamscoreError(f"{where}: cannot read rows {start}-{stop - 1}: {exc}") from None
    if len(data) != want:
        first = header.offset + start * header.row_bytes
        raise BeamscoreError(
            f"{where}: truncated: rows {start}-{stop - 1} end at byte offset {first + want}, "
            f"the data ends at {first + len(data)}"
        )
    values = np.frombuffer(data, dtype=header.dtype).reshape((n, *header.shape[1:]))
    return _native(values)


def _native(values: np.ndarray) -> np.ndarray:
    if values.dtype.byteorder not in ("=", "|") and not values.dtype.isnative:
        return values.astype(values.dtype.newbyteorder("="))
    return values


def row_units(path: str, shard: int, rows: int, rows_per_unit: int) -> list[WorkUnit]:
    """Work units of at most ``rows_per_unit`` rows; one empty unit for an empty array."""
    starts = range(0, rows, rows_per_unit) or range(1)
    return [
        WorkUnit(shard, i, path, start, min(start + rows_per_unit, rows), min(rows_per_unit, rows - start))
        for i, start in enumerate(starts)
    ]


def to_arrow(values: np.ndarray, where: str = "array", first: int = 0) -> pa.Array:
    """A numpy slice as an Arrow column; unicode strings become UTF-8 bytes, and an object
    array of arrays (ragged rows, as only pickle stores them) a list column. Any other object
    array is strings (:func:`_object_strings`); ``where`` and ``first`` (the slice's first
    row) name a value that is not one."""
    if values.dtype.kind == "U":
        values = np.char.encode(values, "utf-8")
    if values.dtype == object:
        if values.ndim == 1 and any(isinstance(v, np.ndarray | list | tuple) for v in values):
            return _ragged(values)
        values = _object_strings(values, where, first)
    return from_numpy(values)


def _object_strings(values: np.ndarray, where: str, first: int) -> np.ndarray:
    """An object array of strings as pandas leaves one (``df["name"].to_numpy()``): ``str``
    (UTF-8 encoded) or ``bytes``, and ``None`` or a float NaN where a value is missing, which
    becomes a null (that row a dead letter, the others scored; a NaN failed the whole unit).
    Any other value is refused, naming its row."""
    flat = values.reshape(-1)
    out = np.empty(len(flat), dtype=object)
    per_row = max(1, math.prod(values.shape[1:]))
    for i, value in enumerate(flat.tolist()):
        if isinstance(value, bytes):
            out[i] = value
        elif isinstance(value, str):
            out[i] = value.encode("utf-8")
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            out[i] = None
        else:
            raise BeamscoreError(
                f"{where}: row {first + i // per_row} holds {value!r} ({type(value).__name__}); "
                "an object array is read as strings (str or bytes; None or NaN for a missing value)"
            )
    return out.reshape(values.shape)


def _ragged(values: np.ndarray) -> pa.Array:
    """An object array of 1-d arrays (or ``None``) as a list column: one row per array."""
    rows = [None if v is None else np.asarray(v).reshape(-1) for v in values]
    present = [r for r in rows if r is not None]
    flat = np.concatenate(present) if present else np.empty(0)
    lengths = np.array([0 if r is None else len(r) for r in rows], dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), type=pa.int64())
    mask = pa.array([r is None for r in rows], type=pa.bool_())
    return pa.LargeListArray.from_arrays(offsets, to_arrow(flat), mask=mask)


class NpySource(Source):
    """Reads ``.npy`` files (one array, one column) through fsspec."""

    format = "npy"
    options = ("allow_pickle", "rows_per_unit")

    def __init__(self, rows_per_unit: int = DEFAULT_ROWS_PER_UNIT, allow_pickle: bool = False) -> None:
        self.rows_per_unit = rows_per_unit
        self.allow_pickle = allow_pickle
        self.alias: str | None = None
        #: with several models, each one-input model's input name (:meth:`bind_models`)
        self.aliases: tuple[str, ...] = ()

    def bind(self, signature: SignatureInfo, mapping: Mapping[str, str]) -> NpySource:
        bound = copy.copy(self)
        if len(signature.inputs) == 1 and not mapping:
            bound.alias = next(iter(signature.inputs))
        return bound

    def bind_models(self, models: Sequence[tuple[str, SignatureInfo, Mapping[str, str]]]) -> NpySource:
        """Several models: the array is also the column of each one-input model's input name
        (``x`` for one model, ``features`` for another), as it is for one model."""
        bound = copy.copy(self)
        names = [next(iter(sig.inputs)) for _, sig, mapping in models if len(sig.inputs) == 1 and not mapping]
        bound.alias = names[0] if names else None
        bound.aliases = tuple(dict.fromkeys(names[1:]))
        return bound

    def _names(self) -> list[str]:
        """The file's columns: ``*`` and the input names it feeds whole."""
        return list(dict.fromkeys([ALL, *([self.alias] if self.alias else []), *self.aliases]))

    def columns(self, path: str) -> dict[str, ColumnSpec]:
        header = self._header(path)
        return {name: column_spec(name, header) for name in self._names()}

    def units(self, path: str, shard: int) -> list[WorkUnit]:
        return row_units(path, shard, self._header(path).rows, self.rows_per_unit)

    def plan_file(self, path: str, shard: int, tail: bytes | None = None, size: int | None = None) -> FilePlan:
        """Columns and units from one read of the header (``columns`` + ``units`` read it twice)."""
        header = self._header(path)
        columns = {name: column_spec(name, header) for name in self._names()}
        return FilePlan(columns, row_units(path, shard, header.rows, self.rows_per_unit))

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table]:
        wrong = [c for c in columns if c not in self._names()]
        if wrong:
            raise BeamscoreError(
                f"{unit.path}: a .npy file has one array, the column '*' (--map INPUT=*), not {wrong[0]!r}"
            )
        fs, path = bfs.filesystem(unit.path)
        with fs.open(path, "rb") as f:
            header = read_header(f, unit.path, self.allow_pickle)
            if header.rows < unit.stop:
                raise BeamscoreError(
                    f"{unit.path}: has {header.rows} rows, the plan has {unit.stop} (the file changed after planning)"
                )
            mapped = None
            whole = header.offset + header.rows * header.row_bytes
            plain = header.rows and not header.dtype.hasobject and not header.fortran
            # a file cut short is not mapped: it is read batch by batch, up to the cut
            if bfs.is_local(fs) and plain and fs.size(path) >= whole:
                mapped = np.load(path, mmap_mode="r", allow_pickle=False)
            starts = range(unit.start, unit.stop, batch_size) or range(unit.start, unit.start + 1)
            for start in starts:
                stop = min(start + batch_size, unit.stop)
                if mapped is not None:
                    values = _native(np.ascontiguousarray(mapped[start:stop]))
                else:
                    values = read_rows(f, header, start, stop, unit.path)
                column = to_arrow(values, unit.path, start)
                yield pa.table({name: column for name in columns})

    def _header(self, url: str) -> NpyHeader:
        fs, path = bfs.filesystem(url)
        try:
            with fs.open(path, "rb") as f:
                header = read_header(f, url, self.allow_pickle)
                size = f.size if hasattr(f, "size") else fs.size(path)
        except FileNotFoundError:
            raise BeamscoreError(f"{url}: no such file") from None
        need = header.offset + header.rows * header.row_bytes
        if not header.dtype.hasobject and size is not None and size < need:
            raise BeamscoreError(
                f"{url}: truncated: {header.rows} rows of shape {header.shape[1:]} end at byte offset {need}, "
                f"the file ends at {size}"
            )
        return header
