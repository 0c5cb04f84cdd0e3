"""The two seams of the IO side: a source reads one format, a sink writes one.

A :class:`Source` turns a file into deterministic :class:`WorkUnit` s (``units``) and a unit
into Arrow record batches (``read``); it also describes the file's columns for the launcher
(``columns``). A :class:`Sink` opens a :class:`UnitWriter` per unit that takes the unit's
batches in order and commits them to the unit's output file(s). Adding a
format is one new module with one class; nothing else changes.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, SupportsIndex

import numpy as np
import pyarrow as pa

from beamscore.io.arrow import arrow_type
from beamscore.model.binding import ColumnSpec
from beamscore.model.inspect import SignatureInfo

__all__ = [
    "PACK_AFTER",
    "PACK_BYTES",
    "PLAN_CARRY_BYTES",
    "BadRows",
    "FilePlan",
    "Sink",
    "Source",
    "UnitWriter",
    "UnreadRows",
    "WorkUnit",
    "carry_within",
    "pack_units",
    "part_name",
]

#: A packed unit (several whole small files) holds at most this many input bytes (as listed).
PACK_BYTES = 64 * 1024 * 1024
#: Files are packed only in jobs of more than this many whole-file units: below it, per-file
#: costs (about 5 ms a file and a part file each) are small, and every file keeps its own
#: unit and part file, named after it.
PACK_AFTER = 100
#: What planning read of the files and hands to the workers in their units (Parquet footers,
#: :attr:`WorkUnit.footer`) holds at most this many bytes in all, so that the plan of 20,000
#: files stays small; the units past it go without, and their workers read it again.
PLAN_CARRY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, order=True)
class WorkUnit:
    """A deterministic slice of one input file: ``[start, stop)`` in the source's own terms.

    For Parquet ``start``/``stop`` are row-group indices; other sources use row indices.
    ``shard`` is the file's position in the sorted input list and ``index`` the unit's
    position within the file; together they name the output file. ``first_row`` is the
    index within the file of the unit's first row when it differs from ``start`` (Parquet),
    so that a dead letter can name its row in the file.

    A *packed* unit (:func:`pack_units`) holds several whole small files: ``members`` are
    their own units, in order, and the packed unit's rows are theirs one after the other
    (``rows`` their sum); it is named after its first member, ``path`` is the first
    member's and ``start``/``stop`` span ``[0, rows)``. :meth:`locate` maps a position in
    the unit back to a file and a row in it.

    ``footer`` is what planning read of a whole file's metadata (a Parquet footer, its
    serialized bytes) and ``size`` the file's length when planned: the worker reads the
    file with it instead of reading the footer again, unless the file's length has changed
    since. Neither is part of the unit's identity (equality, order, name).
    """

    shard: int
    index: int
    path: str
    start: int
    stop: int
    rows: int
    first_row: int | None = None
    members: tuple[WorkUnit, ...] = ()
    footer: bytes | None = field(default=None, compare=False, repr=False)
    size: int | None = field(default=None, compare=False, repr=False)

    @property
    def carried(self) -> int:
        """Bytes of file metadata the unit carries (its members' in a packed unit)."""
        return sum(len(m.footer or b"") for m in (self.members or (self,)))

    def without_footer(self) -> WorkUnit:
        """The unit with no file metadata carried: its worker reads the file's own."""
        if self.members:
            return replace(self, members=tuple(m.without_footer() for m in self.members))
        return replace(self, footer=None, size=None) if self.footer is not None else self

    def file_row(self, position: int) -> int:
        """The row index within the file of the unit's row at ``position`` (a packed
        unit: within the file that row belongs to, see :meth:`locate`)."""
        if self.members:
            _paths, rows = self.locate(np.asarray([position], dtype=np.int64))
            return int(rows[0])
        return (self.start if self.first_row is None else self.first_row) + position

    def locate(self, positions: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The input file and the row within it of each unit position in ``positions``."""
        positions = np.asarray(positions, dtype=np.int64)
        if not self.members:
            return [self.path] * len(positions), self.file_row(0) + positions
        firsts = np.cumsum([0, *(m.rows for m in self.members[:-1])], dtype=np.int64)
        which = np.clip(np.searchsorted(firsts, positions, side="right") - 1, 0, len(self.members) - 1)
        members = [self.members[i] for i in which]
        rows = np.asarray(
            [m.file_row(int(p - firsts[i])) for m, p, i in zip(members, positions, which, strict=True)],
            dtype=np.int64,
        )
        return [m.path for m in members], rows

    @property
    def files(self) -> list[list]:
        """``[path, first row, stop row]`` of each file the unit reads (a packed unit's
        receipt lists them)."""
        return [[m.path, m.file_row(0), m.file_row(0) + m.rows] for m in (self.members or (self,))]

    @property
    def name(self) -> str:
        return part_name(self.shard, self.index)

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        """A packed unit pickles its members as columns, built once and kept: Beam encodes
        an element whenever it samples a PCollection's sizes, and a batch carries its unit,
        so a pack of 5,000 files was pickled member by member some twenty times a job
        (5 ms each) and unpickled as often as it crossed a stage."""
        if not self.members:
            return super().__reduce_ex__(protocol)
        packed = self.__dict__.get("_pickled")
        if packed is None:
            columns = tuple(tuple(getattr(m, f) for m in self.members) for f in _MEMBER_FIELDS)
            packed = (self.shard, self.index, self.path, self.start, self.stop, self.rows, self.first_row, columns)
            object.__setattr__(self, "_pickled", packed)
        return (_unpickle_pack, packed)


def _unpickle_pack(
    shard: int, index: int, path: str, start: int, stop: int, rows: int, first_row: int | None, columns: tuple
) -> WorkUnit:
    """A packed unit from :meth:`WorkUnit.__reduce_ex__`'s columns; its members are made as
    pickle makes an object (no ``__init__``), 1 µs each."""
    new = object.__new__
    members = []
    for values in zip(*columns, strict=True):
        member = new(WorkUnit)
        member.__dict__.update(zip(_MEMBER_FIELDS, values, strict=True))
        member.__dict__["members"] = ()
        members.append(member)
    return WorkUnit(shard, index, path, start, stop, rows, first_row, tuple(members))


_MEMBER_FIELDS = ("shard", "index", "path", "start", "stop", "rows", "first_row", "footer", "size")


def part_name(shard: int, index: int) -> str:
    """``part-SSSSS-UUUUU``: the stem of the output file(s) of a unit."""
    return f"part-{shard:05d}-{index:05d}"


def pack_units(
    units: Sequence[WorkUnit],
    rows_per_unit: int | None,
    sizes: Mapping[str, int | None] | None = None,
    max_bytes: int = PACK_BYTES,
) -> list[WorkUnit]:
    """Pack runs of consecutive whole small files into one unit each, so that a job over
    thousands of small files has about as many units (and part files) as one over a few
    large ones.

    A file is packable when it is one unit (a whole file) of known rows. Consecutive
    packable files join a pack while its rows stay within ``rows_per_unit`` and its listed
    bytes (``sizes``, by path) within ``max_bytes``; a pack of one file stays the file's own
    unit (its name unchanged). Deterministic: the same files and settings give the same
    packs and names (a pack is named after its first file's unit). ``rows_per_unit`` of
    ``None`` or less than 2, or no more than :data:`PACK_AFTER` whole files: nothing is
    packed."""
    if not rows_per_unit or rows_per_unit < 2:
        return list(units)
    sizes = sizes or {}
    whole: dict[str, int] = {}
    for unit in units:
        whole[unit.path] = whole.get(unit.path, 0) + 1
    if sum(1 for n in whole.values() if n == 1) <= PACK_AFTER:
        return list(units)
    out: list[WorkUnit] = []
    run: list[WorkUnit] = []
    run_rows = run_bytes = 0

    def close() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            first = run[0]
            out.append(WorkUnit(first.shard, first.index, first.path, 0, run_rows, run_rows, None, tuple(run)))
        run.clear()

    for unit in units:
        size = sizes.get(unit.path) or 0
        if whole[unit.path] != 1 or unit.members or unit.rows >= rows_per_unit:
            close()
            run_rows = run_bytes = 0
            out.append(unit)
            continue
        if run and (run_rows + unit.rows > rows_per_unit or run_bytes + size > max_bytes):
            close()
            run_rows = run_bytes = 0
        run.append(unit)
        run_rows += unit.rows
        run_bytes += size
    close()
    return out


def carry_within(units: Sequence[WorkUnit], budget: int = PLAN_CARRY_BYTES) -> list[WorkUnit]:
    """``units`` with the file metadata they carry (:attr:`WorkUnit.footer`) kept, in order,
    while it adds up to at most ``budget`` bytes, and dropped from the units after: those
    workers read it from the file, as they do with ``--plan-on-workers``."""
    out: list[WorkUnit] = []
    total = 0
    for unit in units:
        carried = unit.carried
        if carried and total + carried > budget:
            unit = unit.without_footer()
        else:
            total += carried
        out.append(unit)
    return out


@dataclass(frozen=True)
class FilePlan:
    """What planning learns of one input file: its columns (to check against the first
    file's) and its work units."""

    columns: dict[str, ColumnSpec]
    units: list[WorkUnit]


@dataclass(frozen=True)
class BadRows:
    """Rows a source could not decode (bad CRC, truncated record, unparsable row).

    A source whose ``dead_letters`` is set *yields* this between its tables instead of
    raising, so that the rest of the unit is still read: the dead-letter protocol. ``rows``
    are row (record) indices within the input file, ``raw`` the undecoded bytes of each row when they are small (else
    ``None``) and ``error`` says what was wrong. Each row counts once in ``rows_failed``.
    A source that cannot go on after the bad rows simply stops after yielding them.
    """

    rows: Sequence[int]
    error: str
    raw: Sequence[bytes | None] | None = None


@dataclass(frozen=True)
class UnreadRows:
    """Rows ``[start, stop)`` of a file (file row indices) that could not be read at all.

    Part of the dead-letter protocol, like :class:`BadRows`: a source yields it when a part
    of a unit cannot be read (a Parquet page that fails its checksum, a row group whose page
    header does not parse) and goes on with the next part it can read. The range becomes
    *one* dead letter (``rows A-B unread: <reason>``) that counts ``stop - start`` rows in
    ``rows_failed``, so ``rows_in`` stays the number of rows the file holds.
    """

    start: int
    stop: int
    reason: str

    @property
    def count(self) -> int:
        return self.stop - self.start


class Source(abc.ABC):
    """Reads one input format. Subclasses are small and stateless (they are pickled)."""

    format: str = ""
    #: keyword options of ``__init__`` a user may set (``--pad``, ``--compression``...);
    #: :func:`beamscore.io.source_for` refuses the others for this format.
    options: tuple[str, ...] = ()
    #: The dead-letter protocol: when True, :meth:`read` yields :class:`BadRows` for rows it
    #: cannot decode and goes on; when False (direct use) it raises
    #: :class:`~beamscore.errors.BeamscoreError`. The pipeline's reader turns it on
    #: (:meth:`with_dead_letters`).
    dead_letters: bool = False
    #: Whether :meth:`units` knows each unit's row count before reading (Parquet footer,
    #: npy/npz shape). When False (TFRecord), ``rows_in`` is the number of records as read,
    #: and the manifest says so.
    counts_rows: bool = True

    def with_dead_letters(self) -> Source:
        """A copy whose :meth:`read` reports bad rows as :class:`BadRows` instead of raising."""
        import copy

        clone = copy.copy(self)
        clone.dead_letters = True
        return clone

    def bind(self, signature: SignatureInfo, mapping: Mapping[str, str]) -> Source:
        """Optional hook, called on the launcher before :meth:`columns`: a source whose
        files carry no schema (TFRecord) or no column names (``.npy``) returns a copy that
        knows the signature's inputs and ``--map``. The default returns ``self``."""
        return self

    def bind_models(self, models: Sequence[tuple[str, SignatureInfo, Mapping[str, str]]]) -> Source:
        """Several models over one read: a copy that knows what every model's inputs need,
        each model as ``(name, signature, --map)``. The default binds the first model's
        (a source whose binding names no more than the columns to read); a source whose
        binding decides how a column is decoded (TFRecord) binds the union, refusing a
        column two models would decode differently."""
        _, signature, mapping = models[0]
        return self.bind(signature, mapping)

    def with_files(self, files: Sequence[str]) -> Source:
        """Optional hook, called on the launcher once the input globs are expanded, before
        :meth:`columns`: a source whose columns depend on every file's path (Parquet's hive
        partition keys) returns a copy that knows them. The default returns ``self``."""
        return self

    @abc.abstractmethod
    def columns(self, path: str) -> dict[str, ColumnSpec]:
        """The columns of one file, from its schema alone."""

    def column_types(self, path: str) -> dict[str, pa.DataType]:
        """The Arrow type of each column as :meth:`read` yields it, for the output schema
        of ``--keep`` columns. The default derives it from :meth:`columns`."""
        return {name: arrow_type(spec) for name, spec in self.columns(path).items()}

    def has_rows(self, path: str) -> bool:
        """Whether the file holds at least one row; an empty file is skipped when the
        launcher picks the file whose schema describes the job. The default asks
        :meth:`units`; sources that cannot count up front override it."""
        return any(unit.rows for unit in self.units(path, 0))

    @abc.abstractmethod
    def units(self, path: str, shard: int) -> list[WorkUnit]:
        """Split one file into work units (called on the launcher)."""

    #: How many trailing bytes of a file :meth:`plan_file` can usually plan it from (a
    #: Parquet footer); planning then fetches the tails of many files at once. 0: the source
    #: opens each file itself, and planning runs it in a pool of threads.
    tail_bytes: int = 0

    def tail_suffices(self, tail: bytes | None) -> bool:
        """Whether :meth:`plan_file` can plan a file from this fetched tail alone, without
        opening the file (planning then parses it in the calling thread). The default: no."""
        return False

    def plan_file(self, path: str, shard: int, tail: bytes | None = None, size: int | None = None) -> FilePlan:
        """The columns and work units of one file (on the launcher, or on a worker with
        ``--plan-on-workers``). ``tail`` holds the file's last bytes and ``size`` its
        length when :attr:`tail_bytes` is set.

        The default calls :meth:`columns` and :meth:`units` on a copy, because ``columns``
        may fix state on the source (TFRecord keeps the first file's feature kinds) that
        planning the other files must not change. The copy follows the dead-letter protocol:
        a damaged record in a TFRecord sample is skipped here and becomes a dead letter when
        the file is read, as it did before every file was sampled."""
        probe = copy.deepcopy(self).with_dead_letters()
        return FilePlan(probe.columns(path), probe.units(path, shard))

    @abc.abstractmethod
    def read(self, unit: WorkUnit, columns: list[str], batch_size: int) -> Iterator[pa.Table | BadRows]:
        """Yield the unit's rows, in order, as tables of at most ``batch_size`` rows.

        A unit with no rows yields one empty table, so that its output is still written.
        Rows that cannot be decoded are yielded as :class:`BadRows` in their place.
        """


class UnitWriter(abc.ABC):
    """An open output of one unit: batches go in, in order; ``close`` commits the file(s)."""

    @abc.abstractmethod
    def write(self, table: pa.Table) -> None:
        """Append one batch."""

    @abc.abstractmethod
    def close(self) -> list[str]:
        """Finish and move the file(s) into place (temp name + rename); return their URLs."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop whatever was written; nothing appears under the final names."""


class Sink(abc.ABC):
    """Writes one output format. Subclasses are small and stateless (they are pickled)."""

    format: str = ""
    #: keyword options of ``__init__`` a user may set (``--output-compression``...);
    #: :func:`beamscore.io.sink_for` refuses the others for this format.
    options: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        """The writer settings a manifest records (e.g. the Parquet codec); none by default."""
        return {}

    def finalize(self, manifest: Mapping[str, object]) -> dict[str, object] | None:
        """After the last unit and the manifest, on the launcher, once per successful job: what
        the output needs besides its files (a Delta table's commit); what it returns is added to
        the manifest. ``None`` by default: nothing to do."""
        return None

    @abc.abstractmethod
    def open(self, unit: WorkUnit, metadata: dict[str, str]) -> UnitWriter:
        """Start the output of ``unit``; ``metadata`` says which model made it."""

    def unit_files(self, unit: str, columns: Sequence[str]) -> list[str]:
        """The files, relative to the output directory, that the unit named ``unit`` writes
        when its columns are ``columns``. ``--overwrite`` removes exactly these (and no other
        file that merely looks like a part); the default is one ``UNIT.FORMAT`` file."""
        return [f"{unit}.{self.format}"]
