"""TFRecord source: files of ``tf.train.Example`` records, plain, GZIP or ZLIB, over fsspec.

Records are framed here, in Python, from an fsspec file (so ``gs://``, ``s3://`` and
``memory://`` work like local paths), with both CRCs checked; a bad CRC or a truncated
file is a :class:`BeamscoreError` naming the file and the byte offset. Parsing is
``tf.io.parse_example`` over whole batches of serialized records, never one record at a time.

Compression is ``--compression gzip|zlib|none``, or found from the first bytes of each file
(a plain file's first length CRC checks out; GZIP starts ``1f 8b``; ZLIB, as TensorFlow's
``compression_type="ZLIB"`` writes it, with a zlib header). Compressed streams are inflated
here too (:class:`_Inflate`), so a stream cut short or damaged part-way still yields every
record before the damage; the error then ends the file as a dead letter.

The schema is not in the file, so it comes from two places:

* :meth:`TFRecordSource.bind` (on the launcher) gives the signature's inputs: a feature
  that feeds an input with a fully known shape is parsed as a ``FixedLenFeature`` of that
  many values, and a record with another length is an error naming the feature, the record
  and both lengths (``--pad FEATURE=LENGTH[:VALUE]`` pads or truncates instead).
* :meth:`TFRecordSource.columns` reads the first :data:`SAMPLE_RECORDS` records of a file
  (fewer when they hold :data:`SAMPLE_BYTES`: the planner samples 32 files at once):
  each feature's kind (``float_list`` -> float32, ``int64_list`` -> int64, ``bytes_list``
  -> bytes) and length (one length: fixed, several: variable). The launcher's call fixes
  the kinds for every file of the job (they travel with the pickled source).

The column ``*`` is the serialized record itself. A signature that takes serialized
Examples (one string input of shape ``[None]`` or of unknown rank, as Estimator exports have) and whose input
name is not a feature gets the raw records under its input name, unparsed; ``--keep``
features are still parsed for the output. A file is one work unit (record counts are not
known without reading the file, so ``WorkUnit.rows`` is 0, ``counts_rows`` is False and
a job's ``rows_in`` is the records as read).
"""

from __future__ import annotations

import copy
import functools
import math
import re
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import google_crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line, summarise
from beamscore.io.arrow import from_numpy, pad_hint
from beamscore.io.base import BadRows, Source, WorkUnit
from beamscore.io.pad import pad_value as _pad_value
from beamscore.io.pad import parse_pad
from beamscore.model.binding import STRING, ColumnSpec, numpy_dtype
from beamscore.model.inspect import SignatureInfo, TensorSpec

__all__ = [
    "RAW",
    "SAMPLE_BYTES",
    "SAMPLE_RECORDS",
    "WBITS",
    "TFRecordSource",
    "detect_compression",
    "is_record_start",
    "parse_pad",
    "read_records",
]

#: The column that holds each serialized record, unparsed.
RAW = "*"
#: How many leading records of a file :meth:`TFRecordSource.columns` looks at.
SAMPLE_RECORDS = 64
#: ... or fewer, once they hold this many bytes (and one of them is an Example).
SAMPLE_BYTES = 64 << 20
_CHUNK = 8 << 20
_MAX_READ = 64 << 20  # the most one read asks for
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")
_KIND_DTYPE = {"float_list": "float32", "int64_list": "int64", "bytes_list": STRING}
_COMPRESSIONS = ("gzip", "zlib", "none")
#: zlib's ``wbits`` for each compression a TFRecord file may have
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "zlib": zlib.MAX_WBITS}
_RAW_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Feature:
    """What the sampled records say of one feature: its dtype and its length, if fixed."""

    dtype: str
    length: int | None


def read_records(
    f: BinaryIO, path: str, batch_size: int, limit: int | None = None, tolerant: bool = False
) -> Iterator[tuple[list[bytes], list[int]] | BadRows]:
    """Yield ``(records, byte_offsets)`` in batches of at most ``batch_size`` records.

    Both CRCs of every record are checked; a mismatch or a short read is a
    :class:`BeamscoreError` naming ``path`` and the record's byte offset (in the
    uncompressed stream for GZIP files). ``limit`` stops after that many records.

    ``tolerant`` (the dead-letter protocol, used when scoring): the records read so far are
    yielded, then the bad record as :class:`BadRows`; a record whose data CRC fails is
    skipped and reading goes on, while a bad length, a truncation or a read error (a
    compressed stream cut short, an I/O error) ends the file there (nothing after it can
    be framed).
    """
    buf, pos, base, eof = b"", 0, 0, False
    records: list[bytes] = []
    offsets: list[int] = []
    count = 0
    unpack_header, unpack_crc = _HEADER.unpack_from, _CRC.unpack_from
    while limit is None or count < limit:
        if len(buf) - pos < 12 and not eof:
            try:
                more = _read(f, path, _CHUNK, base + len(buf))
            except BeamscoreError as error:
                yield from _bad_record(error, tolerant, records, offsets, count, None)
                return
            eof = not more
            buf, base, pos = buf[pos:] + more, base + pos, 0
            continue
        if len(buf) - pos == 0:
            break
        if len(buf) - pos < 12:
            error = BeamscoreError(
                f"{path}: truncated record {count} at byte offset {base + pos}: "
                f"the data ends after {base + len(buf)} bytes, inside the record header"
            )
            yield from _bad_record(error, tolerant, records, offsets, count, None)
            return
        length, length_crc = unpack_header(buf, pos)
        if _masked_crc(buf[pos : pos + 8]) != length_crc:
            error = BeamscoreError(
                f"{path}: corrupt record {count} at byte offset {base + pos}: the length's CRC does not match "
                "(not a TFRecord file, a compressed file read as plain, or damaged data)"
            )
            yield from _bad_record(error, tolerant, records, offsets, count, None)
            return
        end = pos + 12 + length + 4
        if end > len(buf) and not eof:
            # read what the record needs in bounded steps, joined once: a length field that
            # claims more than the file holds (damage) ends in "truncated", not MemoryError
            parts, have = [buf[pos:]], len(buf) - pos
            buf, base, end, pos = b"", base + pos, end - pos, 0
            while have < end and not eof:
                try:
                    more = _read(f, path, min(max(_CHUNK, end - have), _MAX_READ), base + have)
                except BeamscoreError as error:
                    yield from _bad_record(error, tolerant, records, offsets, count, None)
                    return
                eof = not more
                parts.append(more)
                have += len(more)
            buf = b"".join(parts)
        if end > len(buf):
            error = BeamscoreError(
                f"{path}: truncated record {count} at byte offset {base + pos}: it needs {length + 16} bytes, "
                f"the data ends after {base + len(buf)} bytes"
            )
            yield from _bad_record(error, tolerant, records, offsets, count, None)
            return
        data = buf[pos + 12 : end - 4]
        if _masked_crc(data) != unpack_crc(buf, end - 4)[0]:
            error = BeamscoreError(
                f"{path}: corrupt record {count} at byte offset {base + pos}: the data's CRC does not match"
            )
            yield from _bad_record(error, tolerant, records, offsets, count, data)
            records, offsets = [], []
            count += 1
            pos = end
            continue
        records.append(data)
        offsets.append(base + pos)
        count += 1
        pos = end
        if len(records) >= batch_size:
            yield records, offsets
            records, offsets = [], []
    if records:
        yield records, offsets


def _bad_record(
    error: BeamscoreError, tolerant: bool, records: list[bytes], offsets: list[int], index: int, data: bytes | None
) -> Iterator[tuple[list[bytes], list[int]] | BadRows]:
    """Raise ``error``, or (``tolerant``) yield the good records so far, then the bad one."""
    if not tolerant:
        raise error
    if records:
        yield list(records), list(offsets)
    yield BadRows(rows=[index], error=str(error), raw=[data])


def _read(f: BinaryIO, path: str, n: int, offset: int) -> bytes:
    try:
        return f.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        raise BeamscoreError(f"{path}: cannot read past byte offset {offset}: {exc}") from None


class TFRecordSource(Source):
    """Reads ``.tfrecord`` / ``.tfrecord.gz`` files of ``tf.train.Example`` records."""

    format = "tfrecord"
    options = ("compression", "pad")
    counts_rows = False

    def __init__(self, compression: str | None = None, pad: Mapping[str, Any] | None = None) -> None:
        if compression is not None and compression not in _COMPRESSIONS:
            raise BeamscoreError(f"--compression {compression!r}: choose one of {', '.join(_COMPRESSIONS)}")
        self.compression = compression
        self.pad = parse_pad(pad)
        self.inputs: dict[str, TensorSpec] = {}  # column -> the signature input it feeds (bind)
        self.raw_candidate: str | None = None  # a serialized-Example input's name (bind)
        self.raw_columns: set[str] = {RAW}
        self.features: dict[str, _Feature] | None = None  # fixed by columns() on the launcher
        self.ragged: set[str] = set()  # features feeding ragged or sparse inputs (bind)

    # -- launcher side -------------------------------------------------------------------

    def bind(self, signature: SignatureInfo, mapping: Mapping[str, str]) -> TFRecordSource:
        bound = copy.copy(self)
        bound.raw_columns = set(self.raw_columns)
        parts = signature.component_keys()
        bound.inputs = {mapping.get(key, key): spec for key, spec in signature.inputs.items() if key not in parts}
        # a ragged or sparse input's feature is parsed as varying length, whatever the sample says
        bound.ragged = {mapping.get(key, key) for key in signature.composites}
        for key, composite in signature.composites.items():
            bound.inputs[mapping.get(key, key)] = TensorSpec(key, composite.dtype, (None, None), "")
        if len(signature.inputs) == 1:
            key, spec = next(iter(signature.inputs.items()))
            # [None] or unknown rank: TF1 Estimator / build_signature_def exports declare no shape.
            if spec.dtype == STRING and spec.shape in ((None,), None) and key not in mapping:
                bound.raw_candidate = key
        return bound

    def bind_models(self, models: Sequence[tuple[str, SignatureInfo, Mapping[str, str]]]) -> TFRecordSource:
        """Several models over one read: the records are parsed once, against the union of
        what every model's inputs need (each feature's kind, fixed length, scalar or list,
        ragged or not). A feature two models would parse differently (another dtype, length
        or shape) is refused, naming both models: a feature has one parse for all of them.
        A model that takes serialized Examples whole gets them under its input's name."""
        merged: TFRecordSource | None = None
        owner: dict[str, str] = {}  # feature -> the first model that reads it
        for name, signature, mapping in models:
            bound = self.bind(signature, mapping)
            if merged is None:
                merged, owner = bound, dict.fromkeys(bound.inputs, name)
                merged.inputs, merged.ragged = dict(bound.inputs), set(bound.ragged)
                continue
            for column, spec in bound.inputs.items():
                have = merged.inputs.get(column)
                if have is None:
                    merged.inputs[column], owner[column] = spec, name
                    continue
                mine, theirs = _parse_form(spec, column in bound.ragged), _parse_form(have, column in merged.ragged)
                if mine != theirs:
                    raise BeamscoreError(
                        f"TFRecord feature {column!r} is parsed once for every model, but model {owner[column]!r} "
                        f"reads it as {_said(have, column in merged.ragged)} and model {name!r} as "
                        f"{_said(spec, column in bound.ragged)}; give the models inputs of one dtype and shape, "
                        "or score them in separate jobs"
                    )
            merged.ragged |= bound.ragged
            if bound.raw_candidate and merged.raw_candidate not in (None, bound.raw_candidate):
                raise BeamscoreError(
                    f"models {owner.get(merged.raw_candidate, '?')!r} and {name!r} both take serialized Examples, as "
                    f"inputs {merged.raw_candidate!r} and {bound.raw_candidate!r}; map one model's input to the "
                    f"records with models.{name}.map: {{{bound.raw_candidate}: '{RAW}'}}"
                )
            if bound.raw_candidate:
                merged.raw_candidate = bound.raw_candidate
                owner.setdefault(bound.raw_candidate, name)
        assert merged is not None, "bind_models needs at least one model"
        return merged

    def columns(self, path: str) -> dict[str, ColumnSpec]:
        features = self._sample(path)
        self.features = dict(features)
        if not features:  # no records to look at: trust the signature
            for column, spec in self.inputs.items():
                if column != RAW and column != self.raw_candidate:
                    self.features[column] = _Feature(_kind_of(spec.dtype), _fixed_length(spec))
        out = {
            name: ColumnSpec(name, self._column_dtype(name, feat), self._row_shape(name, feat))
            for name, feat in self.features.items()
        }
        for name, pad in self.pad.items():  # a fill value of the wrong type is refused up front
            if name not in out and features and not self.dead_letters:  # the launcher's schema file
                raise BeamscoreError(
                    f"{path}: --pad {name}: no feature {name!r} in the first {SAMPLE_RECORDS} records; "
                    f"features: {', '.join(sorted(features))}"
                )
            if name in out:
                _pad_value(pad, self.features[name].dtype, name)
                _pad_value(pad, out[name].dtype, name)  # and one an int32 input cannot hold
        out[RAW] = ColumnSpec(RAW, STRING, ())
        if self.raw_candidate and self.raw_candidate not in out:
            self.raw_columns.add(self.raw_candidate)
            out[self.raw_candidate] = ColumnSpec(self.raw_candidate, STRING, ())
        return out

    def units(self, path: str, shard: int) -> list[WorkUnit]:
        return [WorkUnit(shard, 0, path, 0, 0, 0)]

    def has_rows(self, path: str) -> bool:
        with self._open(path) as f:  # a damaged first record: not the file to take the schema from
            return any(not isinstance(item, BadRows) and item[0] for item in read_records(f, path, 1, 1, tolerant=True))

    def parse(self, records: list[bytes], where: str = "records", first: int = 0) -> pa.Table:
        """Parse serialized Examples already in memory (``ReadFromTFRecord``'s elements)
        into the columns of the bound signature's inputs, one batch call. A bad record is
        named by its index (``first`` is the first record's) in ``where``: no byte offset.

        Needs :meth:`bind`; feature kinds and lengths come from the signature (there is no
        file to sample). A signature that takes serialized Examples gets them unparsed."""
        import tensorflow as tf

        if self.raw_candidate and self.features is None:
            self._settle_raw_candidate(records)
        if self.raw_candidate:
            return pa.table({self.raw_candidate: pa.array(records, type=pa.binary())})
        if self.features is None:
            self.features = {
                column: _Feature(_kind_of(spec.dtype), _fixed_length(spec)) for column, spec in self.inputs.items()
            }
        columns = list(self.features)
        spec = {c: self._feature_spec(c, tf) for c in columns}
        return self._table(records, [None] * len(records), first, columns, spec, where, tf)

    def _settle_raw_candidate(self, records: list[bytes]) -> None:
        """Whether the one string input takes the records whole, from the first records
        :meth:`parse` is given, as :meth:`columns` decides from a file's: it does unless they
        are Examples that hold a feature of its name (a text model's ``text`` [None] input
        was fed whole serialized Examples, silently). Decided once: ``features`` is then set."""
        from google.protobuf.message import DecodeError
        from tensorflow.core.example import example_pb2

        for record in records[:SAMPLE_RECORDS]:
            try:
                example = example_pb2.Example.FromString(record)
            except DecodeError:
                continue
            if self.raw_candidate in example.features.feature:
                self.raw_candidate = None
                return
        self.features = {}

    # -- worker side ---------------------------------------------------------------------

    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table | BadRows]:
        import tensorflow as tf

        if self.features is None:  # used outside a plan: take the schema from this file
            self.columns(unit.path)
        parsed = [c for c in columns if c not in self.raw_columns]
        spec = {c: self._feature_spec(c, tf) for c in parsed}
        empty = True
        index = 0
        for item in self._records(unit.path, batch_size, spec):
            if isinstance(item, BadRows):
                yield item
                index += len(item.rows)
                continue
            records, offsets = item
            empty = False
            yield from self._tables(records, offsets, index, columns, spec, unit.path, tf)
            index += len(records)
        if empty:
            yield self._table([], [], 0, columns, spec, unit.path, tf)

    def _records(
        self, url: str, batch_size: int, spec: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Sequence[bytes], list[int]] | BadRows]:
        """The file's records as :func:`read_records` yields them, framed and checked by
        TensorFlow's C++ reader where it can read the file (:func:`cpp_path`), else, and
        from the first record it cannot read on (a bad CRC, a truncation, padding after a
        GZIP member, a store TensorFlow cannot reach), by the Python reader, which reports
        damage record by record (the dead-letter protocol) and reads on where it can."""
        done = 0
        local = cpp_path(url)
        if local is not None and (self.compression or detect_compression(self._first_bytes(url))) != "none":
            local = None  # compressed: no cheap frame walk (see frames_fit), the Python reader inflates
        if local is not None and frames_fit(local):
            compression = "none"
            try:
                for records, offsets in cpp_records(local, compression, batch_size, spec):
                    yield records, offsets
                    done += len(records)
                return
            except Exception:  # noqa: BLE001 - whatever TensorFlow raised, the Python reader says it better
                pass
        skip = done  # records the C++ reader already gave
        with self._open(url) as f:
            for item in read_records(f, url, batch_size, tolerant=self.dead_letters):
                if skip:
                    if isinstance(item, BadRows):  # not met: the C++ reader checked the same CRCs
                        skip = max(0, skip - len(item.rows))
                        continue
                    records, offsets = item
                    if len(records) <= skip:
                        skip -= len(records)
                        continue
                    item, skip = (records[skip:], offsets[skip:]), 0
                yield item

    def _first_bytes(self, url: str) -> bytes:
        try:
            return self._head(url)[:12]
        except OSError:
            return b""  # the reader says what is wrong with the file

    def _tables(self, records, offsets, first, columns, spec, path, tf) -> Iterator[pa.Table | BadRows]:
        """One table for the batch; if it does not parse, the records that do not become
        :class:`BadRows` in their place and the runs of good ones tables (failure path only).

        Any other error (a bug's, not the data's) makes the batch's records dead letters that
        name it: they were read, so they count (raised, they were lost from ``rows_in``)."""
        try:
            table = self._table(records, offsets, first, columns, spec, path, tf)
        except BeamscoreError:
            if not spec or not self.dead_letters:
                raise
        except Exception as exc:
            if not self.dead_letters:
                raise
            where = f"{path}: records {first}-{first + len(records) - 1}"
            yield BadRows(
                rows=list(range(first, first + len(records))),
                error=f"{where}: {type(exc).__name__}: {first_line(str(exc))}",
                raw=list(records),
            )
            return
        else:
            yield table
            return
        start = 0
        for i, record in enumerate(records):
            try:  # the batch's own check on this record alone (_table explains what is wrong)
                self._table([record], [offsets[i]], first + i, columns, spec, path, tf)
                continue
            except BeamscoreError as exc:
                error = exc
            if i > start:
                yield self._table(records[start:i], offsets[start:i], first + start, columns, spec, path, tf)
            yield BadRows(rows=[first + i], error=str(error), raw=[record])
            start = i + 1
        if start < len(records):
            yield self._table(records[start:], offsets[start:], first + start, columns, spec, path, tf)

    def _table(self, records, offsets, first, columns, spec, path, tf) -> pa.Table:
        values: dict[str, Any] = {}
        if spec:
            if isinstance(records, TensorRecords):  # from the C++ reader: no copy through Python
                serialized = records.tensor
            else:
                serialized = tf.constant(records, dtype=tf.string, shape=[len(records)])
            try:
                parsed = getattr(records, "parsed", None)
                values = (
                    parsed if parsed is not None and set(spec) <= set(parsed) else tf.io.parse_example(serialized, spec)
                )
            except (tf.errors.InvalidArgumentError, ValueError) as exc:
                raise self._explain(records, offsets, first, spec, path, tf, exc) from None
        out = {}
        for name in columns:
            if name in self.raw_columns:
                out[name] = pa.array(list(records), type=pa.binary())
                continue
            value = values[name]
            narrow = self._narrowed(name)
            if self._kept_only(name):  # null where a record lacks the feature
                out[name] = self._kept_column(name, value, first, offsets, path)
            elif isinstance(value, tf.RaggedTensor):
                pad = self.pad.get(name)
                if pad is not None:
                    default = _pad_value(pad, self.features[name].dtype, name)
                    dense = value.to_tensor(default_value=default, shape=[None, pad.length]).numpy()
                    out[name] = from_numpy(self._narrow(name, narrow, dense, None, first, offsets, path))
                else:  # narrowed value by value, each bad one named by its record (row splits)
                    check = functools.partial(self._narrow, name, narrow, first=first, offsets=offsets, path=path)
                    out[name] = _list_array(value, check)
            else:
                out[name] = from_numpy(self._narrow(name, narrow, value.numpy(), None, first, offsets, path))
        return pa.table(out)

    def _narrowed(self, name: str) -> np.dtype | None:
        """The dtype an ``int64_list`` feature is narrowed to: the integer or bool input it
        feeds, when that is narrower than int64 (TFRecord has no other integer kind, so an
        int32 input could never be fed without ``--cast``, which wraps values that do not
        fit). Each value is checked (:meth:`_narrow`); ``None`` when the feature is not one."""
        spec = self.inputs.get(name)
        feat = self.features.get(name) if self.features else None
        if spec is None or feat is None or feat.dtype != "int64" or spec.dtype == STRING:
            return None
        try:
            want = numpy_dtype(spec.dtype)
        except BeamscoreError:
            return None
        if want is None or want.kind not in "iub" or want == np.dtype(np.int64):
            return None
        return want

    def _column_dtype(self, name: str, feat: _Feature) -> str:
        narrow = self._narrowed(name)
        return feat.dtype if narrow is None else narrow.name

    def _narrow(self, name, dtype, values: np.ndarray, splits, first, offsets, path) -> np.ndarray:
        """``values`` (int64) as ``dtype``; a value outside its range (not 0 or 1 for bool)
        is a :class:`BeamscoreError` naming the record, feature, value and input. ``splits``
        (row splits) give each value's record for a flat (ragged) array, else the first axis
        does; they are searched only when a value does not fit."""
        if dtype is None:
            return values
        if dtype.kind == "b":
            bad = (values != 0) & (values != 1)
        else:
            info = np.iinfo(dtype)
            bad = (values < info.min) | (values > min(info.max, np.iinfo(np.int64).max))
        if bad.any():
            flat = np.flatnonzero(bad.reshape(-1))[0]
            if splits is not None:
                i = int(np.searchsorted(splits, flat, side="right")) - 1
            else:
                i = int(flat // max(1, values[:1].size))
            value = int(values.reshape(-1)[flat])
            spec = self.inputs[name]
            allowed = "0 or 1" if dtype.kind == "b" else f"{np.iinfo(dtype).min}..{np.iinfo(dtype).max}"
            raise BeamscoreError(
                f"{_record(path, first + i, offsets[i])}: feature {name!r} holds {value}, "
                f"which does not fit input {spec.key!r} of dtype {spec.dtype} ({allowed})"
            )
        return values.astype(dtype)

    def _feature_spec(self, name: str, tf):
        feat = self.features.get(name)
        if feat is None:
            known = ", ".join(sorted(self.features)) or "none"
            raise BeamscoreError(f"no feature {name!r} in the sampled records; features: {known}")
        dtype = {"float32": tf.float32, "int64": tf.int64, STRING: tf.string}[feat.dtype]
        if name in self.pad:
            return tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64)
        shape = self._parse_shape(name, feat)
        if shape is None or self._kept_only(name):  # kept-only: see _kept_column
            return tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64)
        return tf.io.FixedLenFeature(shape, dtype)

    def _kept_only(self, name: str) -> bool:
        """A fixed-length feature only ``--keep`` reads: a record may lack it (as a Parquet
        row may hold a null there) and is still scored; its kept value is null. Only a source
        bound to a signature (:meth:`bind`) knows which features are inputs."""
        feat = self.features.get(name) if self.features else None
        known = bool(self.inputs) and feat is not None and feat.length is not None
        return known and name not in self.inputs and name not in self.pad

    def _kept_column(self, name: str, value, first: int, offsets: list[int], path: str) -> pa.Array:
        """A kept-only feature (parsed ragged) as its fixed-shape column, null where a record
        lacks it; a record with another number of values is refused, naming it."""
        shape = self._parse_shape(name, self.features[name])
        width = math.prod(shape)
        lengths = value.row_lengths().numpy()
        wrong = np.flatnonzero((lengths != width) & (lengths != 0))
        if len(wrong):
            i = int(wrong[0])
            raise BeamscoreError(
                f"{_record(path, first + i, offsets[i])}: feature {name!r} has {lengths[i]} values, "
                f"expected {width} (or none: a kept feature a record lacks is written as null)"
            )
        present = lengths == width
        flat = value.flat_values.numpy()
        values = np.zeros((len(lengths), *shape), dtype=flat.dtype if flat.dtype != object else object)
        if flat.dtype == object:
            values[:] = b""
        values[present] = flat.reshape((-1, *shape))
        column = from_numpy(values)
        if present.all():
            return column
        return pc.if_else(pa.array(present), column, pa.nulls(len(column), column.type))

    def _parse_shape(self, name: str, feat: _Feature) -> list[int] | None:
        """``[k]`` or ``[]`` (a scalar) for a fixed-length feature; ``None`` for a ragged one."""
        if name in self.ragged:
            return None
        spec = self.inputs.get(name)
        length = _fixed_length(spec) if spec is not None else None
        if length is None:
            length = feat.length
        if length is None:
            return None
        scalar = spec.shape is not None and len(spec.shape) == 1 if spec is not None else length == 1
        return [] if scalar and length == 1 else [length]

    def _row_shape(self, name: str, feat: _Feature) -> tuple[int, ...] | None:
        if name in self.pad:
            return (self.pad[name].length,)
        if feat.length is None:
            return None
        shape = self._parse_shape(name, feat)
        return tuple(shape) if shape is not None else None

    def _sample(self, path: str) -> dict[str, _Feature]:
        """The features of the file's first records (see the module docstring), after checking
        that they are ``tf.train.Example`` s: every file of a job is sampled before it runs, so a
        file that is not (another format, a ``Dataset.save`` snapshot, SequenceExamples, other
        protos) is refused there in one line (:func:`check_payload`), not scored as empty rows."""
        from tensorflow.core.example import example_pb2

        kinds: dict[str, dict[str, int]] = {}  # feature -> kind -> records, in order of first sight
        lengths: dict[tuple[str, str], set[int]] = {}
        garbled: BeamscoreError | None = None  # the first record that is not an Example
        damaged: BadRows | None = None  # the first record that cannot be framed or fails a CRC
        index, sampled = 0, 0  # the next record's index; the bytes of the records sampled
        parsed, featured, first = 0, 0, None  # Examples parsed, those with a feature, the first record
        with self._open(path) as f:
            # one record at a time, up to SAMPLE_RECORDS or SAMPLE_BYTES: 64 records of video
            # frames held at once, in each of the planner's 32 threads, can exhaust its memory
            for item in read_records(f, path, 1, limit=SAMPLE_RECORDS, tolerant=True):
                if isinstance(item, BadRows):  # damaged: a dead letter when the file is read
                    if index == 0 and _UNFRAMED in item.error:  # not even its first header: not a TFRecord
                        raise BeamscoreError(not_tfrecord(path, self._head(path), self.compression))
                    damaged = damaged or item
                    index = item.rows[-1] + 1
                    continue
                (record,), (offset,) = item
                index, sampled = index + 1, sampled + len(record)
                first = record if first is None else first
                try:
                    example = _decode(example_pb2, record, f"{path}: record {index - 1} (byte offset {offset})")
                except BeamscoreError as exc:
                    # one garbled record among Examples is a dead letter when the file is
                    # read; a file none of whose sampled records is one is not Examples
                    garbled = garbled or exc
                else:
                    parsed += 1
                    featured += bool(example.features.feature)
                    for name, feature in example.features.feature.items():
                        kind = feature.WhichOneof("kind")
                        if kind is None:
                            continue
                        seen = kinds.setdefault(name, {})
                        seen[kind] = seen.get(kind, 0) + 1
                        lengths.setdefault((name, kind), set()).add(len(getattr(feature, kind).value))
                if sampled >= SAMPLE_BYTES and kinds:
                    break
        if garbled is not None and not kinds:
            raise BeamscoreError(f"{garbled}{_other_payload(path)}")
        check_payload(path, first, parsed, featured)
        if damaged is not None and not kinds and not self.dead_letters:
            # the launcher's schema file has no readable record to describe the job: refuse it
            # (a damaged record after a good one is a dead letter, wherever the sample ends)
            raise BeamscoreError(damaged.error)
        features = {}
        for name, seen in kinds.items():
            # the kind most sampled records hold (the first seen on a tie): a record with
            # another kind is one dead letter when the file is read, not a refusal of the job
            kind = max(seen, key=seen.__getitem__)
            found = lengths[(name, kind)]
            # always 0 values (an empty list in every sampled record): a list column, as Arrow
            # has no fixed-size list of 0 values
            fixed = next(iter(found)) if len(found) == 1 and found != {0} else None
            features[name] = _Feature(_KIND_DTYPE[kind], fixed)
        return features

    def _head(self, url: str) -> bytes:
        """The first bytes of a file as stored (not inflated), to say what it is."""
        fs, path = bfs.filesystem(url)
        with fs.open(path, "rb") as f:
            return f.read(_HEAD_BYTES)

    def _open(self, url: str):
        fs, path = bfs.filesystem(url)
        try:
            raw = fs.open(path, "rb")
        except FileNotFoundError:
            raise BeamscoreError(f"{url}: no such file") from None
        compression = self.compression
        if compression is None:
            compression = detect_compression(raw.read(12))
            raw.seek(0)
        if compression in WBITS:
            return _Inflate(raw, WBITS[compression])
        return raw

    def _explain(self, records, offsets, first, spec, path, tf, exc) -> BeamscoreError:
        """Find the first record the batch's parse failed on and say what is wrong with it."""
        from tensorflow.core.example import example_pb2

        for i, record in enumerate(records):
            try:
                tf.io.parse_example(tf.constant([record]), spec)
            except (tf.errors.InvalidArgumentError, ValueError):
                where = _record(path, first + i, offsets[i])
                example = _decode(example_pb2, record, where)
                return BeamscoreError(f"{where}: {self._mismatch(example, spec, tf)}")
        return BeamscoreError(f"{path}: records {first}-{first + len(records) - 1}: {first_line(str(exc))}")

    def _mismatch(self, example, spec, tf) -> str:
        for name, feature_spec in spec.items():
            feature = example.features.feature.get(name)
            kind = feature.WhichOneof("kind") if feature is not None else None
            if feature is None:
                return f"feature {name!r} is missing; features: {', '.join(sorted(example.features.feature))}"
            if kind is None:  # tf.train.Feature() with no list set: no values of any kind
                expected = f", expected {math.prod(feature_spec.shape)}" if hasattr(feature_spec, "shape") else ""
                return f"feature {name!r} is empty (a tf.train.Feature with no value list set: 0 values{expected})"
            want = self.features[name].dtype
            if _KIND_DTYPE[kind] != want:
                return f"feature {name!r} holds {_KIND_DTYPE[kind]} values ({kind}), expected {want}"
            if isinstance(feature_spec, tf.io.FixedLenFeature):
                have, expected = len(getattr(feature, kind).value), math.prod(feature_spec.shape)
                if have != expected:
                    fed = self.inputs.get(name)
                    target = f" for input {fed.key!r} of shape {fed.shape_str()}" if fed is not None else ""
                    return f"feature {name!r} has {have} values, expected {expected}{target}; {pad_hint(name)}"
        return "not parseable with the features' specs"


#: What :func:`read_records` says when a file's first 12 bytes are no record header.
_UNFRAMED = "the length's CRC does not match"
_HEAD_BYTES = 512
#: The way out for a file that is not Examples, in every such refusal.
_WAY_OUT = "load it with tf.data and write tf.train.Example records or Parquet, or leave it out of --input"
_SNAPSHOT_WAY_OUT = "load it with tf.data.Dataset.load(DIR) and write tf.train.Example records or Parquet"
_SNAPSHOT = re.compile(r"(^|/)(\d+\.shard/\d+\.snapshot|snapshot\.metadata|dataset_spec\.pb)$")


def check_payload(path: str, first: bytes | None, parsed: int, featured: int) -> None:
    """Refuse a TFRecord file whose first records are not ``tf.train.Example`` s with features:
    a ``tf.data.Dataset.save`` snapshot (its records parse as empty Examples: each element
    became two dead-letter rows), a ``tf.train.SequenceExample`` file (its ``feature_lists``
    were dropped and its context read as features). ``first`` is the first record, ``parsed``
    how many sampled records parsed as Examples and ``featured`` how many of them had a feature;
    an empty file passes."""
    if first is None or not parsed:
        return
    if _SNAPSHOT.search(path):
        raise BeamscoreError(
            f"{path}: a tf.data.Dataset.save snapshot file, not tf.train.Examples; {_SNAPSHOT_WAY_OUT}"
        )
    if not featured:
        raise BeamscoreError(
            f"{path}: its first {parsed} record(s) parse as tf.train.Example with no features: not Examples "
            f"(a tf.data snapshot or other protos?); {_SNAPSHOT_WAY_OUT}"
        )
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    try:
        lists = example_pb2.SequenceExample.FromString(first).feature_lists.feature_list
    except DecodeError:
        return
    if lists:
        names = summarise(sorted(lists), "feature lists")
        raise BeamscoreError(
            f"{path}: record 0 is a tf.train.SequenceExample ({names}), not a tf.train.Example; beamscore reads "
            "Examples, one row each: write the sequences as Example features or Parquet list columns"
        )


def not_tfrecord(path: str, head: bytes, compression: str | None = None) -> str:
    """What a file that is no TFRecord is (from its name and first bytes as stored), and the
    way out. ``compression`` is the one given (``--compression``; ``None``: found from the
    first bytes, so a compressed file was inflated and what is inside is named)."""
    if _SNAPSHOT.search(path):
        return f"{path}: part of a tf.data.Dataset.save snapshot, not a TFRecord of Examples; {_SNAPSHOT_WAY_OUT}"
    codec = detect_compression(head)
    if codec in WBITS and compression == "none":
        what = f"a {codec.upper()}-compressed file read as plain (drop --compression none)"
    elif codec in WBITS:
        try:
            inner = zlib.decompressobj(WBITS[codec]).decompress(head, _HEAD_BYTES)
        except zlib.error:
            inner = b""
        what = f"a {codec.upper()}-compressed file holding {_what(inner) if inner else 'damaged data'}"
    else:
        what = _what(head)
    return f"{path}: {what}, not a TFRecord file (no record header at byte 0); leave it out of --input"


def _what(head: bytes) -> str:
    """What a file is, from its first (uncompressed) bytes, for :func:`not_tfrecord`."""
    from beamscore.io.detect import looks_like_text  # (detect imports this module)

    if head.startswith(b"PAR1"):
        return "a Parquet file"
    if head.startswith(b"\x93NUMPY"):
        return "a .npy file"
    if head.startswith(b"PK"):
        return "a zip or .npz file"
    if looks_like_text(head):
        return "a text file (CSV, JSON?)"
    return "not TFRecord-framed data"


def _other_payload(path: str) -> str:
    """The hint after "not a tf.train.Example" when no sampled record is one."""
    if _SNAPSHOT.search(path):
        return f" (a tf.data.Dataset.save snapshot); {_SNAPSHOT_WAY_OUT}"
    return f" (records of another proto or format); {_WAY_OUT}"


#: TensorFlow's names of the compressions
_TF_COMPRESSION = {"gzip": "GZIP", "zlib": "ZLIB", "none": ""}
#: files smaller than this are read by the Python reader (a tf.data pipeline costs ms to set up)
CPP_MIN_BYTES = 1 << 20


def cpp_path(url: str) -> str | None:
    """The local path TensorFlow's C++ TFRecord reader opens ``url`` by, or ``None`` where
    the Python reader reads it: other stores (fsspec; ``gs://`` too, where no frame walk is
    cheap, see :func:`frames_fit`) and small files."""
    import os

    if "://" in url and not url.startswith("file://"):
        return None
    path = url.removeprefix("file://")
    try:
        return path if os.path.getsize(path) >= CPP_MIN_BYTES else None
    except OSError:
        return None


def frames_fit(path: str) -> bool:
    """Whether every record frame of the plain TFRecord file at ``path`` lies within it, the
    last ending at its end: read from its length fields alone (memory-mapped, no CRC), about
    a tenth of the Python reader's time. TensorFlow's reader must never see a length field
    that claims more than memory holds (a damaged length whose CRC still matches): it ends
    the process (SIGSEGV, reproduced with 2**60) where the Python reader makes one dead
    letter. A file that fails the walk is read by the Python reader, which names the damage."""
    import mmap

    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            size, pos, unpack = len(mm), 0, _LENGTH.unpack_from
            while pos + 12 <= size:
                pos += unpack(mm, pos)[0] + 16
            return pos == size
    except (OSError, ValueError):
        return False


def cpp_records(
    path: str, compression: str, batch_size: int, spec: Mapping[str, Any] | None = None
) -> Iterator[tuple[TensorRecords, list[int]]]:
    """``(records, byte_offsets)`` in batches, read by ``tf.data.TFRecordDataset`` (framing,
    CRCs and inflating in C++, without the GIL), and parsed there with ``spec`` when given.
    The offsets (in the uncompressed stream,
    as :func:`read_records` gives them) follow from the record lengths: every record before
    the one that fails is whole. Raises TensorFlow's error at the first record it cannot read."""
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset(path, compression_type=_TF_COMPRESSION.get(compression, ""))
    if spec:  # parsed in TensorFlow's threads too; a batch that does not parse raises here
        dataset = dataset.batch(batch_size).map(lambda r: (r, tf.strings.length(r), tf.io.parse_example(r, spec)))
    else:
        dataset = dataset.batch(batch_size).map(lambda r: (r, tf.strings.length(r), {}))
    offset = 0
    for batch, lengths, parsed in dataset.prefetch(1):
        ends = np.cumsum(lengths.numpy().astype(np.int64) + 16) + offset
        yield TensorRecords(batch, parsed if spec else None), np.concatenate(([offset], ends[:-1])).tolist()
        offset = int(ends[-1])


class TensorRecords(Sequence):
    """A batch of serialized records as TensorFlow's reader gave it (a string tensor): it
    goes to ``tf.io.parse_example`` as it is, and becomes Python ``bytes`` only where they
    are asked for (raw columns, a record that does not parse)."""

    def __init__(self, tensor: Any, parsed: Mapping[str, Any] | None = None) -> None:
        self.tensor = tensor
        #: ``tf.io.parse_example`` of the records with the reader's spec, when it was given
        self.parsed = parsed
        self._list: list[bytes] | None = None

    def _bytes(self) -> list[bytes]:
        if self._list is None:
            self._list = self.tensor.numpy().tolist()
        return self._list

    def __len__(self) -> int:
        return int(self.tensor.shape[0])

    def __getitem__(self, index):  # type: ignore[override]
        return self._bytes()[index]

    def __iter__(self):
        return iter(self._bytes())


def _record(path: str, index: int, offset: int | None) -> str:
    """Where a record is: its index, and its byte offset in a file (none for records in memory)."""
    return f"{path}: record {index}" if offset is None else f"{path}: record {index} (byte offset {offset})"


def is_record_start(head: bytes) -> bool:
    """Whether ``head`` starts with a TFRecord header: a length and its masked CRC32C."""
    if len(head) < 12:
        return False
    return _masked_crc(head[:8]) == _CRC.unpack_from(head, 8)[0]


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``, as stored after a record's length and data."""
    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def detect_compression(head: bytes) -> str:
    """``none``, ``gzip`` or ``zlib`` from a TFRecord file's first 12 bytes.

    A plain file starts with a record length whose masked CRC follows it, which settles it
    (a ZLIB header alone could also be the first bytes of a length). An empty file is plain.
    """
    if is_record_start(head):
        return "none"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and ((head[0] << 8) | head[1]) % 31 == 0:
        return "zlib"
    return "none"


class _Inflate:
    """A GZIP or ZLIB stream inflated on read, that gives up every byte before damage.

    :class:`gzip.GzipFile` drops what one ``read`` call had inflated when that call meets
    the end of a stream cut short or a damaged block. Here the error is held back until the
    bytes before it have been read, then raised once: a TFRecord file cut in half still
    yields its first half. Concatenated GZIP members are read one after the other. Closing
    it closes the fsspec file under it.
    """

    def __init__(self, raw: BinaryIO, wbits: int) -> None:
        self.raw, self.wbits = raw, wbits
        self.inflater = zlib.decompressobj(wbits)
        self.buf = bytearray()
        self.error: BaseException | None = None
        self.done = False
        self.padded = False  # a GZIP member ended, then zero bytes (block padding) so far

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buf) < n) and not self.done and self.error is None:
            self._inflate(self.raw.read(_RAW_CHUNK))
        if not self.buf and self.error is not None:
            error, self.error = self.error, None
            raise error
        n = len(self.buf) if n < 0 else min(n, len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _inflate(self, chunk: bytes) -> None:
        if not chunk:
            self.done = True
            if not self.inflater.eof:
                self.error = EOFError("the compressed stream ends before its end-of-stream marker (cut short)")
            return
        saved, padded = self.inflater.copy(), self.padded
        try:
            self.buf += self._feed(chunk)
        except zlib.error:  # salvage what precedes the damage: feed the chunk again in small steps
            self.inflater, self.padded = saved, padded
            for i in range(0, len(chunk), 16):
                try:
                    self.buf += self._feed(chunk[i : i + 16])
                except zlib.error as exc:
                    self.error = exc
                    return

    def _feed(self, chunk: bytes) -> bytes:
        if self.padded:  # zero bytes after a GZIP member are padding (gzip and Python's gzip skip them)
            chunk = chunk.lstrip(b"\0")
            if not chunk:
                return b""
            self.padded = False
            self.inflater = zlib.decompressobj(self.wbits)
        out = self.inflater.decompress(chunk)
        while self.inflater.eof and self.inflater.unused_data:  # the next GZIP member
            rest = self.inflater.unused_data
            if self.wbits > zlib.MAX_WBITS:
                rest = rest.lstrip(b"\0")
                if not rest:
                    self.padded = True
                    break
            self.inflater = zlib.decompressobj(self.wbits)
            out += self.inflater.decompress(rest)
        return out

    def __enter__(self) -> _Inflate:
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()


def _decode(example_pb2, record: bytes, where: str):
    from google.protobuf.message import DecodeError

    try:
        return example_pb2.Example.FromString(record)
    except DecodeError:
        raise BeamscoreError(f"{where}: not a tf.train.Example") from None


def _kind_of(tf_dtype: str) -> str:
    if tf_dtype == STRING:
        return STRING
    return "float32" if tf_dtype.startswith(("float", "bfloat")) else "int64"


def _parse_form(spec: TensorSpec, ragged: bool) -> tuple:
    """What decides how a feature is parsed for an input: its kind and the integer dtype it is
    narrowed to (the input's dtype), ragged or not, its fixed length and whether it is a scalar."""
    rank = None if spec.shape is None else len(spec.shape)
    return spec.dtype, ragged, _fixed_length(spec), rank


def _said(spec: TensorSpec, ragged: bool) -> str:
    """An input as a refusal names it: ``float32 (-1, 4)``, ``ragged int64``."""
    return f"ragged {spec.dtype}" if ragged else f"{spec.dtype} {spec.shape_str()}"


def _fixed_length(spec: TensorSpec | None) -> int | None:
    """Values per record a signature input takes, when its shape is fully known."""
    if spec is None or spec.shape is None or len(spec.shape) == 0 or any(d is None for d in spec.shape[1:]):
        return None
    return math.prod(spec.shape[1:])


def _list_array(value, convert=None) -> pa.Array:
    """A ragged parse result as an Arrow list column (no per-row Python); ``convert(flat,
    splits)`` turns the flat values into what is written (a narrowing, checked)."""
    splits = value.row_splits.numpy().astype(np.int64)
    flat = value.flat_values.numpy()
    if convert is not None:
        flat = convert(flat, splits)
    return pa.LargeListArray.from_arrays(pa.array(splits), from_numpy(flat))
