"""Parquet sink: one file per work unit, written to a temporary name and renamed.

Batches are buffered into row groups of about ``row_group_rows`` rows (many small row
groups write several times slower and read slower too). The file's key-value metadata
records which model made it under the key ``beamscore``.

Three choices make writing about twice as fast (``make bench``): dictionary encoding is used
only for string and binary columns (on model outputs, floats, it costs a hash per value and
is then abandoned); min/max statistics are written only for top-level scalar columns (the
kept ids and labels a reader filters on), not for list and tensor columns, whose per-value
min/max no reader can use to skip a row of vectors (``tensor_statistics=True`` writes them);
and each row group is encoded on a background thread while the next one is gathered, so
writing overlaps scoring (pyarrow releases the GIL while it encodes). At most one row group
is in flight per open file.

Under zstd, float list and tensor columns are written ``BYTE_STREAM_SPLIT`` (the bytes of
each float grouped by position before compression): measured on the bench MLP's 266 float32
outputs a row, 596 instead of 607 bytes a row at the same CPU time. Under snappy and lz4 it
made files larger (849 instead of 713 bytes a row), so it is used with zstd only.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.io.base import Sink, UnitWriter, WorkUnit
from beamscore.transforms.temp import temp_path

__all__ = ["CODECS", "METADATA_KEY", "ParquetSink", "check_compression"]

METADATA_KEY = b"beamscore"
DEFAULT_ROW_GROUP_ROWS = 1 << 17


#: ``--output-compression`` codecs, and the ``--output-compression-level`` range of each
#: (``None``: the codec takes no level)
CODECS: dict[str, tuple[int, int] | None] = {
    "snappy": None,
    "zstd": (1, 22),
    "lz4": (1, 12),
    "gzip": (1, 9),
    "none": None,
}
DEFAULT_CODEC = "snappy"


def check_compression(codec: str, level: int | None) -> None:
    """Refuse a codec or level the writer would reject, on the launcher, in one line."""
    if codec not in CODECS:
        raise BeamscoreError(f"--output-compression {codec!r} is not supported; choose {', '.join(CODECS)}")
    if level is None:
        return
    bounds = CODECS[codec]
    if bounds is None:
        raise BeamscoreError(f"--output-compression-level: codec {codec!r} takes no level (zstd, lz4 and gzip do)")
    if isinstance(level, bool) or not isinstance(level, int) or not bounds[0] <= level <= bounds[1]:
        raise BeamscoreError(
            f"--output-compression-level for {codec} must be a whole number from {bounds[0]} to {bounds[1]}, "
            f"got {level!r}"
        )


class ParquetSink(Sink):
    """Writes ``DIR/part-SSSSS-UUUUU.parquet``, compressed with ``compression`` (``snappy``,
    ``zstd``, ``lz4``, ``gzip`` or ``none``) at ``compression_level`` (codec default if ``None``)."""

    format = "parquet"
    options = ("compression", "compression_level")

    def __init__(
        self,
        output: str | os.PathLike[str],
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        compression: str | None = None,
        compression_level: int | None = None,
        tensor_statistics: bool = False,
    ) -> None:
        """``tensor_statistics``: also write min/max statistics for list and tensor columns."""
        self.output = os.fspath(output)
        self.tensor_statistics = tensor_statistics
        self.row_group_rows = row_group_rows
        self.compression = compression or DEFAULT_CODEC
        self.compression_level = compression_level
        check_compression(self.compression, compression_level)

    def describe(self) -> dict[str, object]:
        return {"compression": self.compression, "compression_level": self.compression_level}

    def open(self, unit: WorkUnit, metadata: dict[str, str]) -> UnitWriter:
        return _ParquetUnitWriter(self, unit, metadata)


class _ParquetUnitWriter(UnitWriter):
    def __init__(self, sink: ParquetSink, unit: WorkUnit, metadata: dict[str, str]) -> None:
        self.fs, root = bfs.filesystem(sink.output)
        self.final = bfs.join(root, f"{unit.name}.parquet")
        self.temp = temp_path(root, unit.name, "parquet")
        self.metadata = {METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()}
        self.row_group_rows = sink.row_group_rows
        self.compression = getattr(sink, "compression", DEFAULT_CODEC)
        self.compression_level = getattr(sink, "compression_level", None)
        self.tensor_statistics = getattr(sink, "tensor_statistics", False)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.writer: pq.ParquetWriter | None = None
        self.file = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: Future | None = None

    def write(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        if self.pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        table = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        if self.writer is None:
            self.fs.makedirs(self.temp.rsplit("/", 1)[0], exist_ok=True)
            self.file = self.fs.open(self.temp, "wb")
            schema = table.schema.with_metadata({**(table.schema.metadata or {}), **self.metadata})
            self.writer = pq.ParquetWriter(
                self.file,
                schema,
                use_dictionary=_dictionary_columns(schema),
                write_statistics=True if self.tensor_statistics else _statistics_columns(schema),
                column_encoding=_byte_stream_split(schema) if self.compression == "zstd" else None,
                compression=self.compression,
                compression_level=self.compression_level,
            )
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beamscore-parquet")
        self._wait()
        self._inflight = self._pool.submit(self.writer.write_table, table, row_group_size=max(table.num_rows, 1))
        self.pending, self.pending_rows = [], 0

    def _wait(self) -> None:
        """Wait for the row group in flight; its error, if any, is raised here."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def close(self) -> list[str]:
        self._flush()
        if self.writer is None:  # a unit with no rows: still write a valid empty file
            return []
        try:
            self._wait()
        finally:
            self._shutdown()
        self.writer.close()
        self.file.close()
        bfs.move(self.fs, self.temp, self.final)
        return [bfs.unstrip(self.fs, self.final)]

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):  # aborting anyway: the file is dropped
                self._wait()
            self._shutdown()
            self.writer.close()
            self.file.close()
            self.fs.rm(self.temp)
            self.writer = None


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary encoding: top-level strings and binaries (ids, names, labels)."""
    kinds = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    return [f.name for f in schema if any(k(f.type) for k in kinds)]


def _statistics_columns(schema: pa.Schema) -> list[str]:
    """Columns whose min/max statistics are written: top-level scalars, not lists, tensors or
    structs (a reader filters rows on an id or a score, not on the min of a vector's values)."""
    return [f.name for f in schema if not pa.types.is_nested(_storage(f.type))]


def _byte_stream_split(schema: pa.Schema) -> dict[str, str] | None:
    """``BYTE_STREAM_SPLIT`` for the float leaves of list and tensor columns (see the module
    docstring); ``None`` when there are none."""
    leaves = {}
    for f in schema:
        t, path = _storage(f.type), f.name
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            continue
        while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            path, t = f"{path}.list.element", t.value_type  # the Parquet LIST layout pyarrow writes
        if pa.types.is_float32(t) or pa.types.is_float64(t):
            leaves[path] = "BYTE_STREAM_SPLIT"
    return leaves or None


def _storage(t: pa.DataType) -> pa.DataType:
    """An extension column's storage type (``fixed_shape_tensor`` is a fixed-size list)."""
    return t.storage_type if isinstance(t, pa.BaseExtensionType) else t
