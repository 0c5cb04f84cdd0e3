"""Feather (Arrow IPC file) and ORC sources: the Parquet source's units, checks and dead
letters over another columnar file.

pyarrow reads both formats as record batches that play the part of Parquet's row groups:
an Arrow IPC file's record batches (``pyarrow.feather.write_feather(..., chunksize=N)``,
``pa.ipc.new_file``), an ORC file's stripes. Each source hands :class:`ParquetSource` a
reader that answers the calls it makes of a ``ParquetFile`` (``schema_arrow``, ``metadata``
with each part's row count, ``iter_batches``), so work units (runs of parts of about
``--rows-per-unit`` rows), hive partition keys, struct fields, ``--pad``, the "changed after
planning" check and the dead letter for a part that cannot be read are the Parquet source's own.

Counting an ORC file's stripes reads one column of each, and an IPC file's record batches
are read to be counted (pyarrow's API gives neither count from the footer), so planning reads
these files whole on the launcher, and a part that cannot be read refuses its file there, in
one line naming it, where a damaged Parquet row group would be a dead letter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from beamscore.errors import BeamscoreError, first_line
from beamscore.io.parquet import ParquetSource

__all__ = ["FeatherSource", "OrcSource"]


@dataclass(frozen=True)
class _Part:
    num_rows: int


class _Metadata:
    """The part of ``pq.FileMetaData`` the Parquet source reads: row counts per part."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        self.num_row_groups = len(self.sizes)
        self.num_rows = sum(self.sizes)

    def row_group(self, index: int) -> _Part:
        return _Part(self.sizes[index])


class _PartsFile:
    """A file of numbered record batches, read as a ``ParquetFile`` is."""

    schema_arrow: pa.Schema

    def _batch(self, index: int, columns: list[str]) -> pa.RecordBatch:
        raise NotImplementedError

    @property
    def metadata(self) -> _Metadata:
        raise NotImplementedError

    def iter_batches(self, batch_size: int, row_groups: Sequence[int], columns: list[str]) -> Iterator[pa.RecordBatch]:
        for index in row_groups:
            batch = self._batch(index, columns)
            for start in range(0, batch.num_rows, batch_size):
                yield batch.slice(start, batch_size)

    path: str
    part_name: str

    def _count(self, index: int) -> int:
        raise NotImplementedError

    def _counted(self, parts: int) -> _Metadata:
        """Each part's rows; a part that cannot even be counted refuses the file in one line
        (a Parquet footer that does not parse is refused so too)."""
        sizes = []
        for index in range(parts):
            try:
                sizes.append(self._count(index))
            except (OSError, pa.ArrowException) as exc:
                raise BeamscoreError(
                    f"{self.path}: {self.part_name} {index} cannot be read ({first_line(str(exc))}); "
                    "write the file again, or leave it out of --input"
                ) from None
        return _Metadata(sizes)


class _IpcFile(_PartsFile):
    part_name = "record batch"

    def __init__(self, f, path: str) -> None:
        self.reader = pa.ipc.open_file(f)
        self.schema_arrow = self.reader.schema
        self.path = path

    def _batch(self, index: int, columns: list[str]) -> pa.RecordBatch:
        return self.reader.get_batch(index).select(columns)

    def _count(self, index: int) -> int:
        return self.reader.get_batch(index).num_rows

    @property
    def metadata(self) -> _Metadata:
        return self._counted(self.reader.num_record_batches)


class _OrcFile(_PartsFile):
    part_name = "stripe"

    def __init__(self, f, path: str) -> None:
        import pyarrow.orc as orc

        self.reader = orc.ORCFile(f)
        self.schema_arrow = self.reader.schema
        self.path = path

    def _batch(self, index: int, columns: list[str]) -> pa.RecordBatch:
        return self.reader.read_stripe(index, columns=columns).select(columns)

    def _count(self, index: int) -> int:
        return self.reader.read_stripe(index, columns=self.schema_arrow.names[:1]).num_rows

    @property
    def metadata(self) -> _Metadata:
        if not self.schema_arrow.names:
            return _Metadata([self.reader.nrows] if self.reader.nstripes else [])
        return self._counted(self.reader.nstripes)


class FeatherSource(ParquetSource):
    """Reads Feather (V2) / Arrow IPC files (``.feather``, ``.arrow``, ``.ipc``); each record
    batch is a part, as a Parquet row group is."""

    format = "feather"
    part_name = "record batch"
    tail_bytes = 0  # its footer is parsed from the file, not from a fetched tail
    carries_footer = False

    def _open_file(self, f, path: str):
        return _opened(_IpcFile, f, path, "a Feather / Arrow IPC file", b"ARROW1")


class OrcSource(ParquetSource):
    """Reads ORC files (``.orc``, as Hive and Spark write them); each stripe is a part."""

    format = "orc"
    part_name = "stripe"
    tail_bytes = 0
    carries_footer = False

    def _open_file(self, f, path: str):
        return _opened(_OrcFile, f, path, "an ORC file", b"ORC")


def _opened(factory, f, path: str, label: str, magic: bytes):
    try:
        return factory(f, path)
    except (pa.ArrowInvalid, OSError) as exc:
        try:
            f.seek(0)
            head = bytes(f.read(len(magic)))
        except Exception:  # noqa: BLE001 - only its tail could be read: say what pyarrow said
            head = magic
        if head != magic:
            from beamscore.io.detect import format_from_bytes

            other = format_from_bytes(bytes(head) + bytes(f.read(4090)))
            what = f"a {other} file" if other else "another kind of file"
            raise BeamscoreError(f"{path}: {what}, not {label}; leave it out of --input") from None
        raise BeamscoreError(f"{path}: {label} that cannot be read: {first_line(str(exc))}") from None
