"""Parquet source: read only the needed columns, stream by row group, split big files.

Work units are runs of consecutive row groups of about ``rows_per_unit`` rows, so a large
file spreads over several workers while a small file stays one unit. Reading uses
``ParquetFile.iter_batches`` one row group at a time, which streams and never loads the
file whole; the batches of row groups smaller than the batch size are joined (:class:`_Batches`).

Foreign files: a fixed-size list column with null rows, which pyarrow cannot read, is read
around (:mod:`beamscore.io.parquet_lists`); hive partition keys in the directory names are
columns (:mod:`beamscore.io.hive`); fields of struct columns are columns ``parent.field``
(:mod:`beamscore.io.structs`); ``--pad`` cuts or fills list columns to one length
(:mod:`beamscore.io.pad`).

Damage is detected, not scored: page checksums are verified when the writer stored them
(``page_checksum_verification``), and a row group that cannot be read (a page that fails
its CRC, a page header that does not parse) becomes one :class:`UnreadRows` for its unread
rows while the unit's other row groups are still read. A unit whose row groups no longer
hold the rows planned (the file was replaced after planning) is not read at all.

Footers are read once per request a file costs. Planning parses each footer from the
file's fetched tail. On an object store a file of at most :data:`WHOLE_FILE_BYTES` is read
whole by its worker in one request (footer included: no request of its own for it, and
pyarrow's 8 I/O threads are out of the way); a larger whole-file unit carries the footer's
bytes from planning (:attr:`~beamscore.io.base.WorkUnit.footer`, at most
:data:`FOOTER_CARRY`), so that its worker reads the row groups without reading the footer
again. On a local disk the footer is read again: a read from the page cache costs less than
carrying 700 bytes a file through Beam's pickled, bz2-compressed plan (measured: 0.05 ms
against 0.16 ms a file). A unit without a footer (past the plan's byte budget, a large
footer), or whose file has changed length since planning, reads the file's own. With
``--plan-on-workers`` the worker that planned a file hands its footer on the same way.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line
from beamscore.io import hive, structs
from beamscore.io.arrow import column_spec, without_views
from beamscore.io.base import FilePlan, Source, UnreadRows, WorkUnit
from beamscore.io.pad import pad_spec, pad_table, parse_pad
from beamscore.io.parquet_lists import INT96_UNIT, is_list_error, read_lenient
from beamscore.io.tails import OutsideTail, TailFile
from beamscore.model.binding import ColumnSpec

__all__ = ["ParquetSource"]

DEFAULT_ROWS_PER_UNIT = 1 << 20
#: pyarrow's first read of a file is its last 64 KiB: with those, most footers parse
#: without another request.
FOOTER_TAIL = 64 << 10
#: How many of a job's files :meth:`ParquetSource.column_types` reads for the type of a
#: column that the first file stores as Arrow's ``null`` type (all null).
NULL_TYPE_FILES = 64
#: A file on an object store of at most this many bytes is read whole in one request (:func:`_whole`).
WHOLE_FILE_BYTES = 8 << 20
#: A file on the local disk of at most this many bytes is read whole in one read (:func:`_whole`).
LOCAL_WHOLE_BYTES = 1 << 20
#: A whole-file unit carries its file's footer to the worker when it is at most this many bytes.
FOOTER_CARRY = 16 << 10


class ParquetSource(Source):
    """Reads ``.parquet`` files through fsspec."""

    format = "parquet"
    options = ("rows_per_unit", "pad")
    tail_bytes = FOOTER_TAIL

    def __init__(self, rows_per_unit: int = DEFAULT_ROWS_PER_UNIT, pad: Mapping[str, Any] | None = None) -> None:
        self.rows_per_unit = rows_per_unit
        self.pad = parse_pad(pad)
        self.partitions: dict[str, pa.DataType] = {}  # hive partition keys (with_files)
        self.first_files: tuple[str, ...] = ()  # where column_types looks past a null type

    def with_files(self, files: Sequence[str]) -> ParquetSource:
        planned = copy.copy(self)
        planned.partitions = hive.infer_partitions(files)
        planned.first_files = tuple(files[:NULL_TYPE_FILES])
        return planned

    def columns(self, path: str) -> dict[str, ColumnSpec]:
        return self._specs(path, self._file(path, lambda f: f.schema_arrow))

    def _specs(self, path: str, schema: pa.Schema) -> dict[str, ColumnSpec]:
        """The columns of a file with this schema: stored, then hive keys; ``--pad`` applied."""
        specs = {name: column_spec(name, t) for name, t in self._types(schema, path).items()}
        for name, pad in self.pad.items():
            if name not in specs:
                raise BeamscoreError(f"{path}: --pad {name}: no column {name!r}; columns: {', '.join(specs)}")
            specs[name] = pad_spec(specs[name], pad, path)
        return specs

    def column_types(self, path: str) -> dict[str, pa.DataType]:
        """The columns' types in ``path``; a column ``path`` stores as the ``null`` type (all
        null: polars and pandas write it so), or as lists or structs of it (polars' ``[[], []]``
        is ``list<null>``), takes its type from the next of the job's first files that has
        another, so that a kept column is not typed null for the whole job and every value
        of the other files a dead letter."""
        types = self._types(self._file(path, lambda f: f.schema_arrow), path)
        for other in self.first_files:
            unknown = [name for name, t in types.items() if _untyped(t)]
            if not unknown:
                break
            if other != path:
                found = self._types(self._file(other, lambda f: f.schema_arrow), other)
                types.update({n: found[n] for n in unknown if n in found and not _untyped(found[n])})
        for name, pad in self.pad.items():
            if name in types:
                leaf = types[name].value_type  # pad_spec (in columns) has refused any other type
                types[name] = pa.list_(leaf.value_type if pa.types.is_dictionary(leaf) else leaf, pad.length)
        return types

    def _types(self, schema: pa.Schema, path: str) -> dict[str, pa.DataType]:
        """The file's columns, then the partition keys it does not store, then the fields of
        its struct columns (``parent.field``).

        A file with two columns of one name (pyarrow writes them; polars, duckdb and Spark
        refuse to read them) is refused: no column name could say which one is meant."""
        counts = collections.Counter(schema.names)
        twice = next((name for name, n in counts.items() if n > 1), None)
        if twice is not None:
            raise BeamscoreError(
                f"{path}: column {twice!r} appears {counts[twice]} times; beamscore cannot tell them "
                "apart (rename them, e.g. with pyarrow's Table.rename_columns, and write the file again)"
            )
        types = {name: schema.field(name).type for name in schema.names}
        fields = {k: t for k, t in structs.field_types(schema).items() if k not in types}
        return {**{k: t for k, t in self.partitions.items() if k not in types}, **types, **fields}

    def units(self, path: str, shard: int) -> list[WorkUnit]:
        return self._units(path, shard, self._file(path, lambda f: f.metadata))

    def tail_suffices(self, tail: bytes | None) -> bool:
        return self.tail_bytes > 0 and _footer_in(tail) is not None

    def plan_file(self, path: str, shard: int, tail: bytes | None = None, size: int | None = None) -> FilePlan:
        """Columns and units from the footer: parsed from ``tail`` when it holds the whole
        footer, else read from the file (one more open for footers over 64 KiB)."""
        pf = None
        if tail is not None and size is not None:
            try:
                pf = self._open_file(TailFile(size, tail), path)
            except OutsideTail:
                pf = None
        if pf is None:
            return self._file(path, lambda f: self._plan(path, shard, f, None, size))
        return self._plan(path, shard, pf, _footer_in(tail), size)

    def _plan(self, path: str, shard: int, pf, footer: bytes | None, size: int | None) -> FilePlan:
        """The file's columns and units; a whole-file unit of a file on an object store
        larger than :data:`WHOLE_FILE_BYTES` carries the footer, so that its worker does not
        read it again (a smaller one is read whole, footer included, in one request)."""
        units = self._units(path, shard, pf.metadata)
        if (
            len(units) == 1
            and size is not None
            and size > WHOLE_FILE_BYTES
            and self.carries_footer
            and not _on_disk(path)
        ):
            if footer is None and isinstance(pf, pq.ParquetFile):
                footer = _serialized(pf.metadata)
            if footer is not None and len(footer) <= FOOTER_CARRY:
                units = [dataclasses.replace(units[0], footer=footer, size=size)]
        return FilePlan(self._planned_specs(path, pf.schema_arrow), units)

    def _planned_specs(self, path: str, schema: pa.Schema) -> dict[str, ColumnSpec]:
        """:meth:`_specs` of a file being planned: the files of a job mostly share one schema,
        so the last schema's columns are reused when this file's schema equals it (a cost of
        about 0.05 ms a file, in a job of thousands of small files)."""
        last = self.__dict__.get("_last_specs")
        if last is not None and last[0].equals(schema):
            return dict(last[1])
        specs = self._specs(path, schema)
        self._last_specs = (schema, specs)
        return dict(specs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_last_specs", None)  # planning's, not the workers'
        return state

    #: whether :meth:`read` can use a footer planning carried (a Parquet file's; the
    #: Feather and ORC subclasses read their own)
    carries_footer = True

    def _units(self, path: str, shard: int, meta: pq.FileMetaData) -> list[WorkUnit]:
        """Runs of row groups of about ``rows_per_unit`` rows. A footer whose row groups do not
        add up to its own row count is damaged (pyarrow reads what the row groups count, so
        rows would go missing unnoticed): refused."""
        counted = sum(meta.row_group(rg).num_rows for rg in range(meta.num_row_groups))
        if counted != meta.num_rows:
            raise BeamscoreError(
                f"{path}: damaged footer: it counts {meta.num_rows} rows, its {meta.num_row_groups} row groups "
                f"{counted}; write the file again"
            )
        units: list[WorkUnit] = []
        start, rows, first_row = 0, 0, 0
        for rg in range(meta.num_row_groups):
            rows += meta.row_group(rg).num_rows
            if rows >= self.rows_per_unit or rg == meta.num_row_groups - 1:
                units.append(WorkUnit(shard, len(units), path, start, rg + 1, rows, first_row))
                start, rows, first_row = rg + 1, 0, first_row + rows
        if not units:  # a file with no row groups still gets a unit (and an empty output)
            units.append(WorkUnit(shard, 0, path, 0, 0, 0))
        return units

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table | UnreadRows]:
        fs, path = bfs.filesystem(unit.path)
        # a local file through Arrow's own reader: no Python call per read (0.08 ms a small file)
        with pa.OSFile(path) if bfs.is_local(fs) else fs.open(path, "rb") as opened:
            f = _whole(opened, unit.path)
            pf = self._open_carried(f, unit) or self._open_file(f, unit.path)
            stored = pf.schema_arrow.names
            partitions = {k: t for k, t in self.partitions.items() if k in columns and k not in stored}
            nested = {c: structs.field_path(pf.schema_arrow, c) for c in columns if c not in stored}
            nested = {c: p for c, p in nested.items() if p is not None and c not in partitions}
            missing = [c for c in columns if c not in stored and c not in partitions and c not in nested]
            if missing:
                raise BeamscoreError(f"{unit.path}: no column {missing[0]!r}; columns: {', '.join(stored)}")
            # a struct's field is read with its whole struct column, then taken out (_finish)
            read = list(dict.fromkeys([*(c for c in columns if c in stored), *(p[0] for p in nested.values())]))
            meta = pf.metadata
            sizes = [meta.row_group(rg).num_rows for rg in range(unit.start, min(unit.stop, meta.num_row_groups))]
            if len(sizes) != unit.stop - unit.start or sum(sizes) != unit.rows:
                raise BeamscoreError(
                    f"{unit.path}: changed after planning: row groups {unit.start}-{unit.stop - 1} were planned "
                    f"with {unit.rows} rows, the file now has {meta.num_row_groups} row groups of {meta.num_rows} rows"
                )
            empty = True
            first = unit.file_row(0)
            batches = _Batches(batch_size)
            for rg, size in zip(range(unit.start, unit.stop), sizes, strict=True):
                done = 0
                try:
                    for table in self._row_group(f, pf, unit.path, rg, first, read, batch_size):
                        empty = False
                        done += table.num_rows
                        yield from batches.add(self._finish(table, unit.path, partitions, columns, nested))
                except (OSError, pa.ArrowException) as exc:
                    if not self.dead_letters:
                        raise BeamscoreError(f"{unit.path}: {self.part_name} {rg}: {first_line(str(exc))}") from None
                    reason = f"{self.part_name} {rg}: {type(exc).__name__}: {first_line(str(exc))}"
                    yield from batches.flush()
                    yield UnreadRows(first + done, first + size, reason)
                else:
                    if done < size:  # the footer counts rows its pages do not hold: here, not at the end
                        reason = f"row group {rg} holds {done} of the {size} rows its footer entry counts"
                        if not self.dead_letters:
                            raise BeamscoreError(f"{unit.path}: {reason}")
                        yield from batches.flush()
                        yield UnreadRows(first + done, first + size, reason)
                first += size
            yield from batches.flush()
            if empty:  # zero rows: one empty batch, so the unit still gets its (empty) output
                empty_table = pf.schema_arrow.empty_table().select(read)
                yield self._finish(empty_table, unit.path, partitions, columns, nested)

    def _row_group(
        self, f, pf: pq.ParquetFile, url: str, rg: int, first_row: int, columns: list[str], batch_size: int
    ) -> Iterator[pa.Table]:
        """One row group's batches; a fixed-size list column with null rows is read around."""
        done = 0
        try:
            if isinstance(pf, pq.ParquetFile) and pf.metadata.row_group(rg).num_rows <= batch_size:
                # one batch: read whole, without a streaming reader (a small file's cost)
                table = pf.read_row_group(rg, columns=columns, use_threads=False)
                done = table.num_rows
                yield table
                return
            for batch in pf.iter_batches(batch_size=batch_size, row_groups=[rg], columns=columns):
                done += batch.num_rows
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:
            if not is_list_error(exc):
                raise
            yield from read_lenient(f, url, pf.schema_arrow, [rg], first_row, columns, batch_size, done, exc)

    def _finish(
        self,
        table: pa.Table,
        path: str,
        partitions: dict[str, pa.DataType],
        columns: list[str],
        nested: Mapping[str, list[str]],
    ) -> pa.Table:
        """Take struct fields out, pad, add the partition columns, and put the columns in
        the order asked for."""
        for name, field in nested.items():
            table = table.append_column(name, structs.read_field(table, field))
        table = without_views(pad_table(table, self.pad))
        for name, array in hive.partition_arrays(path, partitions, table.num_rows).items():
            table = table.append_column(name, array)
        return table.select(columns)

    def _open_carried(self, f, unit: WorkUnit) -> pq.ParquetFile | None:
        """The file's reader from the footer planning carried in ``unit``, without reading
        the footer again; ``None`` when the unit carries none or the file's length is not
        the planned one (replaced since: its own footer tells, see :meth:`read`)."""
        if unit.footer is None or unit.size is None or not self.carries_footer:
            return None
        if _length(f) != unit.size:
            return None
        try:
            meta = _metadata(unit.footer)
        except (pa.ArrowException, OSError):
            return None
        return _open(lambda source, **kw: pq.ParquetFile(source, metadata=meta, **kw), f, unit.path)

    def _open_file(self, f, path: str):
        """The file's reader: a ``ParquetFile`` here; a subclass for another columnar format
        (:mod:`beamscore.io.arrow_files`) returns one that answers the same calls."""
        return _open(pq.ParquetFile, f, path)

    #: what a refusal or dead letter calls one of the file's row groups
    part_name = "row group"

    def _file(self, path: str, get):
        fs, local = bfs.filesystem(path)
        with fs.open(local, "rb") as f:
            return get(self._open_file(f, path))


def _whole(f, path: str):
    """A small file read whole here and served from memory; any other file as it is.

    On an object store (up to :data:`WHOLE_FILE_BYTES`): one request, in this thread.
    pyarrow reads a Python file through its own pool of 8 I/O threads, so 64 threads reading
    a pack of small files at 40 ms a request read 8 at a time (measured: 640 files in 3.3 s,
    against 0.9 s read whole). On the local disk (up to :data:`LOCAL_WHOLE_BYTES`): one
    read instead of the footer's and each column chunk's, 0.20 -> 0.12 ms CPU to open and
    read a three-row file of two columns."""
    if _on_disk(path):
        if isinstance(f, pa.NativeFile) and f.size() <= LOCAL_WHOLE_BYTES:
            return pa.BufferReader(f.read_buffer())
        return f
    size = getattr(f, "size", None)
    if not isinstance(size, int) or size > WHOLE_FILE_BYTES:
        return f
    return pa.BufferReader(f.read())  # Arrow's own reader: no Python call per read (half BytesIO's CPU)


def _on_disk(path: str) -> bool:
    """Whether ``path`` is on the local disk, where reading a footer again costs a read from
    the page cache, less than carrying it in the plan (pickled and compressed by Beam)."""
    return "://" not in path or path.split("://", 1)[0] in ("file", "local")


def _footer_in(tail: bytes | None) -> bytes | None:
    """The serialized footer (Thrift ``FileMetaData``) at the end of ``tail``: ``None`` when
    the tail does not hold all of it or the footer is encrypted (``PARE``)."""
    if tail is None or len(tail) < 12 or tail[-4:] != b"PAR1":
        return None
    length = int.from_bytes(tail[-8:-4], "little")
    return bytes(tail[-8 - length : -8]) if length + 8 <= len(tail) else None


def _serialized(meta: pq.FileMetaData) -> bytes:
    """``meta`` as the footer bytes :func:`_metadata` reads back."""
    out = io.BytesIO()
    meta.write_metadata_file(out)
    return out.getvalue()[4:-8]


def _metadata(footer: bytes) -> pq.FileMetaData:
    """A file's metadata from its serialized footer, parsed in memory."""
    framed = b"PAR1" + footer + len(footer).to_bytes(4, "little") + b"PAR1"
    return pq.read_metadata(pa.BufferReader(framed))


def _length(f) -> int | None:
    """The length of an open file: fsspec's ``size`` (known from the open), else by seeking."""
    size = getattr(f, "size", None)
    if isinstance(size, int):
        return size
    try:
        here = f.tell()
        end = f.seek(0, 2)
        f.seek(here)
        return end
    except (OSError, ValueError):
        return None


def _untyped(t: pa.DataType) -> bool:
    """Whether ``t`` is Arrow's ``null`` type or holds it (``list<null>``, a struct field)."""
    if pa.types.is_null(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _untyped(t.value_type)
    if pa.types.is_struct(t):
        return any(_untyped(t.field(i).type) for i in range(t.num_fields))
    return False


class _Batches:
    """Joins the batches of small row groups into batches of ``batch_size`` rows.

    A row group's batches never span row groups (each is read on its own, so that a damaged
    one costs only its rows), so a file of many small row groups (a streaming writer's, one
    per flush) gave the model as many small batches: one call per row for row groups of one
    row. Batches of ``batch_size`` rows pass through; smaller ones are held and joined, and
    :meth:`flush` yields what is held (before a dead letter, so rows keep their order)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.held: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> Iterator[pa.Table]:
        if self.held and table.schema != self.held[0].schema:  # a lenient read's list column
            yield from self.flush()
        if table.num_rows >= self.batch_size and not self.held:
            yield table
            return
        self.held.append(table)
        self.rows += table.num_rows
        if self.rows >= self.batch_size:
            joined = pa.concat_tables(self.held)
            whole = joined.num_rows - joined.num_rows % self.batch_size
            for start in range(0, whole, self.batch_size):
                yield joined.slice(start, self.batch_size)
            rest = joined.slice(whole)
            self.held, self.rows = ([rest] if rest.num_rows else []), rest.num_rows

    def flush(self) -> Iterator[pa.Table]:
        if self.held:
            yield self.held[0] if len(self.held) == 1 else pa.concat_tables(self.held)
        self.held, self.rows = [], 0


def _open(factory, f, path: str):
    try:
        return factory(f, page_checksum_verification=True, coerce_int96_timestamp_unit=INT96_UNIT)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BeamscoreError(_not_parquet(f, path) or f"{path}: not a readable Parquet file: {exc}") from None


#: how a refusal names the formats other than Parquet
_LABELS = {"tfrecord": "TFRecord", "npz": ".npz", "npy": ".npy", "feather": "Feather / Arrow IPC", "orc": "ORC"}


def _not_parquet(f, path: str) -> str | None:
    """The refusal for a file that is no Parquet at all (its first bytes are not ``PAR1``):
    what it is, from its first bytes or name, and the way out (a directory given as
    ``--input`` that also holds other files: a model's ``fingerprint.pb``, a CSV). ``None``
    for a damaged Parquet file, or when its first bytes cannot be read (only its footer was
    fetched)."""
    from beamscore.io.detect import format_from_bytes, format_from_name, looks_like_text

    try:
        f.seek(0)
        head = bytes(f.read(4096))
    except Exception:  # noqa: BLE001 - a tail of the file only, or an unreadable start: say nothing more
        return None
    if not head or head.startswith(b"PAR1"):
        return None
    named = format_from_name(path)
    other = format_from_bytes(head) or (named if named != "parquet" else None)
    if other is not None:
        what = f"a {_LABELS.get(other, other)} file, not Parquet"
    elif looks_like_text(head):
        what = "a text file (CSV, JSON?), not Parquet"
    else:
        what = "not Parquet, nor any format beamscore reads (TFRecord, .npz, .npy, Feather, ORC)"
    return f"{path}: {what}; leave it out of --input"
