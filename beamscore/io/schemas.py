"""Every input file must have the schema of the first one, for the columns a job reads.

The launcher binds the signature's inputs to the first file's columns; :class:`SameSchema`
then checks each other file's columns (from its footer or header, see
:mod:`beamscore.pipelines.survey`) against those, so that a float64 shard among float32 ones
is refused before the job with the file named, rather than turned into thousands of dead
letters. It is a small picklable object because ``--plan-on-workers`` runs the same check
on the workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from beamscore.errors import BeamscoreError
from beamscore.io.base import FilePlan, Source
from beamscore.model.binding import ColumnSpec

__all__ = ["SameSchema", "file_has_rows"]


class SameSchema:
    """Check a file's columns against the first file's.

    ``inputs`` are the columns bound to signature inputs: each must be present with the
    same dtype and, where both files fix it, the same row shape (a variable-length list is
    checked per batch). ``keep`` columns must be present when ``keep_required`` (formats
    with a schema; a TFRecord feature may be missing from a sample of records)."""

    def __init__(
        self,
        first: str,
        expected: Mapping[str, ColumnSpec],
        inputs: Sequence[str],
        keep: Sequence[str] = (),
        keep_required: bool = True,
    ) -> None:
        self.first = first
        self.expected = {name: expected[name] for name in inputs}
        self.keep = list(keep) if keep_required else []
        #: each kept column's (dtype, row shape) in every file checked: where all agree, the
        #: output keeps the files' own type (:func:`beamscore.io.keep.job_keep_types`)
        self.keep_specs: dict[str, set[tuple[str, tuple[int, ...] | None]]] = {name: set() for name in self.keep}

    def __call__(self, path: str, columns: Mapping[str, ColumnSpec]) -> None:
        for name, want in self.expected.items():
            got = columns.get(name)
            if got is None:
                raise BeamscoreError(
                    f"{path}: no column {name!r}, which the first input {self.first} has and the job reads; "
                    f"columns: {', '.join(sorted(columns)) or 'none'}"
                )
            same_shape = got.row_shape is None or want.row_shape is None or got.row_shape == want.row_shape
            if got.dtype != want.dtype or not same_shape:
                raise BeamscoreError(
                    f"{path}: column {name!r} is {_describe(got)}, expected {_describe(want)} as in the first "
                    f"input {self.first}; every input file needs the same schema for the columns the job reads"
                )
        for name in self.keep:
            if name not in columns:
                raise BeamscoreError(
                    f"{path}: no column {name!r} to --keep, which the first input {self.first} has; "
                    f"columns: {', '.join(sorted(columns)) or 'none'}"
                )
            self.keep_specs[name].add((columns[name].dtype, columns[name].row_shape))


def _describe(spec: ColumnSpec) -> str:
    if spec.row_shape is None:
        return f"a variable-length list of {spec.dtype}"
    if spec.row_shape == ():
        return spec.dtype
    return f"{spec.dtype} {list(spec.row_shape)}"


def file_has_rows(source: Source, plan: FilePlan) -> bool:
    """Whether a file's schema is worth checking: an empty shard (a zero-row Parquet file
    whose columns have no type, a zero-record TFRecord) is skipped, as it is when the
    launcher picks the file whose schema describes the job."""
    if source.counts_rows:
        return any(unit.rows for unit in plan.units)
    return bool(plan.columns)
