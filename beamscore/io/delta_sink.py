"""Delta Lake output: the job's Parquet part files, committed to a Delta table in one commit.

``--output TABLE --output-format delta``: the job writes exactly what a Parquet job writes
(part files, receipts, dead letters, ``_manifest.json``, ``_SUCCESS``) into its own folder
inside the table, ``TABLE/beamscore-<job key>/`` (:func:`job_folder`: the key is a hash of what
the job is, so a ``--resume`` finds the same folder and another job never shares it). Delta
readers read only the files its log names, so nothing appears in the table while the job runs.
After the last unit, :meth:`DeltaSink.finalize` adds every part file of the folder to the
table in **one** commit (creating the table if there is none): readers see all of the job or
none of it.

Idempotent: the commit carries a Delta app transaction (``txn``) whose id is the job's folder;
a commit is skipped when the table already has it, so a ``--resume`` after the commit (or a
rerun of the commit after a failure) never adds the files twice. Two jobs committing into one
table at once: appends do not conflict in Delta's optimistic concurrency, so both land
(delta-rs retries on a newer version); a commit that still fails is one line, exit 2, and the
job's files stay in its folder for a ``--resume`` to commit.

A table whose schema differs from the job's output schema is refused (delta-rs would commit
the files under the table's old schema).

Replacing a partition (``--where "day = '{date}'"`` with a Delta output: :func:`output_partition`):
the job's folder is ``TABLE/day=2026-12-01/beamscore-<key>/`` (hive-style, as Spark writes a
partitioned table, so readers that take partition values from paths, polars, read it too),
every add carries the partition values, and the commit is delta-rs's overwrite with partition
filters: **one** commit that removes the table's files of that partition and adds the job's
(Delta's ``replaceWhere``). The files of other partitions stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line
from beamscore.io.base import UnitWriter, WorkUnit
from beamscore.io.parquet_sink import ParquetSink

__all__ = [
    "JOB_PREFIX",
    "DeltaSink",
    "check_table_root",
    "commit",
    "job_folder",
    "output_partition",
    "partition_path",
    "refuse_partitioned",
    "storage_options",
]

#: the start of a job folder's name inside the table
JOB_PREFIX = "beamscore-"
_PART = re.compile(r"^part-\d+-\d+\.parquet$")


#: a partition the job replaces: column -> (its value as the log writes it, its Arrow type)
Partition = Mapping[str, tuple[str, pa.DataType]]


def job_folder(table: str, identity: Mapping[str, Any], partition: Partition | None = None) -> str:
    """``TABLE/beamscore-<16 hex digits>``: the job's folder, from a hash of ``identity``;
    under the partition's path (:func:`partition_path`) when the job replaces one."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    under = f"/{partition_path(partition)}" if partition else ""
    return f"{table.rstrip('/')}{under}/{JOB_PREFIX}{key}"


def partition_path(partition: Partition) -> str:
    """``day=2026-12-01/country=JP``: the hive-style folders of a partition, each value quoted
    (``/`` and every other character a path could misread as ``%XX``), so no value leaves the table."""
    return "/".join(
        f"{urllib.parse.quote(c, safe='')}={urllib.parse.quote(v, safe='')}" for c, (v, _t) in partition.items()
    )


def output_partition(
    table: str, where: str, input_partitions: Mapping[str, pa.DataType]
) -> dict[str, tuple[str, pa.DataType]]:
    """The partition a ``--where`` names in the Delta output ``table``: the equalities'
    columns and values, typed as the table's partition columns (as the input table's, for a
    table not made yet). Refused in one line: a condition that is no equality, and, for a
    table that exists, columns that are not exactly its partition columns."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from beamscore.tables import where as wh
    from beamscore.wording import flag

    conditions = wh.parse_where(where)
    why = (
        f"with {flag('output_format')} delta, {flag('where')} also names the output's partition that the job "
        "replaces, so it is COLUMN = 'VALUE' on the table's partition columns, joined by AND"
    )
    wrong = [c for c in conditions if c.op != "="]
    if wrong or len({c.column for c in conditions}) != len(conditions):
        said = f"{wrong[0].column} {wrong[0].op.upper()} is no equality" if wrong else "a column is named twice"
        raise BeamscoreError(f"{flag('where')} {where!r}: {said}; {why}")
    try:
        existing = DeltaTable(table, storage_options=storage_options(table))
    except TableNotFoundError:
        existing = None
    if existing is not None:
        columns = list(existing.metadata().partition_columns)
        if sorted(columns) != sorted(c.column for c in conditions):
            raise BeamscoreError(
                f"{flag('where')} {where!r}: {table} is partitioned by {', '.join(columns) or 'no column'}; {why}"
            )
        schema = pa.schema(existing.schema().to_arrow())
        types = {c: schema.field(c).type for c in columns}
        order = columns
    else:
        types, order = dict(input_partitions), [c.column for c in conditions]
    values = {c.column: c.values[0] for c in conditions}
    return {c: (_log_value(wh._typed(values[c], types[c], c)), types[c]) for c in order}


def refuse_partitioned(table: str) -> None:
    """A job with no ``--where`` appends files with no partition values: refused, in one line,
    for a table that is partitioned (its readers would see the rows in no partition)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from beamscore.wording import flag

    try:
        columns = list(DeltaTable(table, storage_options=storage_options(table)).metadata().partition_columns)
    except TableNotFoundError:
        return
    if columns:
        said = " AND ".join(f"{c} = 'VALUE'" for c in columns)
        raise BeamscoreError(
            f'{table} is partitioned by {", ".join(columns)}: give {flag("where")} "{said}" (the input table\'s '
            "partition the job reads and the output's it replaces); a job appends only to an unpartitioned table"
        )


def _log_value(value: Any) -> str:
    """A partition value as a Delta log writes it (``true``, ``2026-12-01``, ``7``)."""
    if isinstance(value, bool):
        return str(value).lower()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def storage_options(url: str) -> dict[str, str]:
    """delta-rs storage options for ``url``: on S3, the endpoint fsspec uses
    (``FSSPEC_S3_ENDPOINT_URL`` or fsspec's config, as for every other file of the job), plain
    HTTP when that endpoint is ``http://``, and conditional writes (``If-None-Match``) for the
    log, which S3 and S3-compatible stores honour, so no locking provider is needed."""
    if not url.startswith(("s3://", "s3a://")):
        return {}
    import fsspec

    options: dict[str, str] = {"conditional_put": "etag"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("FSSPEC_S3_ENDPOINT_URL")
    endpoint = endpoint or fsspec.config.conf.get("s3", {}).get("endpoint_url")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if not os.environ.get("AWS_REGION") and os.environ.get("AWS_DEFAULT_REGION"):
        options["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    return options


def check_table_root(table: str, partition: Partition | None = None) -> None:
    """Refuse a ``--output`` that is a directory of other files and no Delta table (a Parquet
    job's output, a data folder): a table made there would sit among files its log never names.
    A job replacing a partition keeps its folder under the partition's first folder."""
    fs, root = bfs.filesystem(table)
    try:
        names = [n.rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)] if fs.isdir(root) else []
    except (FileNotFoundError, NotADirectoryError):
        return
    if not names or "_delta_log" in names:
        return
    # the folders of jobs that replace partitions (resumed before their table's first commit)
    ours = partition_path(partition).split("=", 1)[0] + "=" if partition else JOB_PREFIX
    others = sorted(n for n in names if not n.startswith((JOB_PREFIX, ours)))
    if others:
        raise BeamscoreError(
            f"{table} holds files and no Delta table (no _delta_log; {', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}): give --output-format delta a new directory or a Delta table"
        )


def check_table_columns(sink: Any, schema: pa.Schema) -> None:
    """Before the job: refuse columns no Delta type holds, and, when the sink's table exists,
    columns that are not the table's (``schema`` as :func:`delta_type` writes it)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    partition = getattr(sink, "partition", None) or {}
    fields = [(f.name, delta_type(f.type)) for f in schema]
    fields += [(c, t) for c, (_v, t) in partition.items() if c not in schema.names]
    want = _delta_schema(pa.schema(fields))
    try:
        existing = DeltaTable(sink.table, storage_options=storage_options(sink.table))
    except TableNotFoundError:
        return
    _check_schema(sink.table, existing, want, before=True)


def _delta_schema(schema: pa.Schema) -> Any:
    """The Delta schema of the files' columns, or a refusal naming what Delta cannot hold."""
    from deltalake import Schema

    try:
        return Schema.from_arrow(schema)
    except Exception as exc:  # noqa: BLE001 - a type Delta has no counterpart for
        said = first_line(str(exc)).removeprefix("External error: ").removeprefix("Schema error: ")
        raise BeamscoreError(
            f"the output's columns cannot be a Delta table's ({said}); use --output-format parquet, or leave "
            "the column out with --outputs / --keep"
        ) from None


class DeltaSink(ParquetSink):
    """Writes the Parquet sink's part files into the job's folder inside a Delta table
    (``output`` is that folder; ``table`` the table's root) and commits them at the end."""

    format = "delta"

    def __init__(self, output: str, table: str | None = None, **options: Any) -> None:
        super().__init__(output, **options)
        self.table = table or output.rstrip("/").rsplit("/", 1)[0]
        #: the partition the commit replaces (:func:`output_partition`), or ``None``: append
        self.partition: Partition | None = None

    def unit_files(self, unit: str, columns: Sequence[str]) -> list[str]:
        return [f"{unit}.parquet"]

    def open(self, unit: WorkUnit, metadata: dict[str, str]) -> UnitWriter:
        return _DeltaUnitWriter(super().open(unit, metadata))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "table": self.table}

    def finalize(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Commit the folder's part files to the table (once: see the module docstring);
        return what the manifest records: table, version, files and rows committed."""
        rows = int(manifest.get("rows_out", 0))  # type: ignore[call-overload]
        done = commit(self.table, self.output, rows, self.partition)
        recorded = manifest.get("table_commit")
        return dict(recorded) if done.get("already_committed") and isinstance(recorded, Mapping) else done


class _DeltaUnitWriter(UnitWriter):
    """The Parquet writer, fed tables in types a Delta schema has: Delta has no fixed-size
    list or tensor type, so those columns are written as the (nested) lists the table's
    schema says (readers that check the file against the schema, polars, refuse otherwise)."""

    def __init__(self, inner: UnitWriter) -> None:
        self.inner = inner

    def write(self, table: pa.Table) -> None:
        self.inner.write(delta_table(table))

    def close(self) -> list[str]:
        return self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


def delta_table(table: pa.Table) -> pa.Table:
    """``table`` with fixed-size list and tensor columns as plain lists (see above)."""
    for i, field in enumerate(table.schema):
        plain = delta_type(field.type)
        if plain != field.type:
            column = table.column(i)
            if isinstance(field.type, pa.FixedShapeTensorType):
                column = pa.chunked_array([_nested_tensor(c) for c in column.chunks], _tensor_lists(field.type))
            elif isinstance(field.type, pa.BaseExtensionType):
                column = pa.chunked_array([c.storage for c in column.chunks], field.type.storage_type)
            table = table.set_column(i, field.name, column.cast(plain))
    return table


def _tensor_lists(t: pa.FixedShapeTensorType) -> pa.DataType:
    """A tensor column's type as fixed-size lists nested by its shape (its storage is flat)."""
    nested = t.value_type
    for size in reversed(t.shape):
        nested = pa.list_(nested, size)
    return nested


def _nested_tensor(chunk: pa.Array) -> pa.Array:
    """One chunk of a tensor column as nested fixed-size lists of its rows' shape (beamscore
    writes tensors in row-major order, with no permutation)."""
    values = chunk.storage.flatten()
    for size in reversed(chunk.type.shape):
        values = pa.FixedSizeListArray.from_arrays(values, size)
    return values


#: types Delta has no counterpart for, written as the next type that holds every value
#: (Delta's integers are signed: delta-rs would call uint32 "integer", and 3e9 would not fit)
_WIDER = {
    pa.float16(): pa.float32(),
    pa.uint8(): pa.int16(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
}


def delta_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a Delta schema round-trips for ``t``: lists for fixed-size lists and
    ``fixed_shape_tensor`` (its storage), at any depth; dictionary columns as their values;
    float16 and unsigned integers widened (:data:`_WIDER`); other types as they are."""
    if isinstance(t, pa.FixedShapeTensorType):
        return delta_type(_tensor_lists(t))
    if isinstance(t, pa.BaseExtensionType):
        return delta_type(t.storage_type)
    if pa.types.is_dictionary(t):
        return delta_type(t.value_type)
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(delta_type(t.value_type))
    return _WIDER.get(t, t)


def commit(
    table: str, folder: str, rows_expected: int | None = None, partition: Partition | None = None
) -> dict[str, Any]:
    """Add every part file of ``folder`` (inside ``table``) to the table in one commit; with a
    ``partition``, the same commit removes the table's files of that partition (replaces it)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError
    from deltalake.transaction import CommitProperties, Transaction, create_table_with_add_actions

    app_id = folder.rstrip("/").rsplit("/", 1)[-1]
    options = storage_options(table)
    try:
        existing: Any = DeltaTable(table, storage_options=options)
    except TableNotFoundError:
        existing = None
    except Exception as exc:  # noqa: BLE001 - delta-rs raises its own errors for an unreadable log
        raise BeamscoreError(f"{table}: cannot open the Delta table: {first_line(str(exc))}") from None
    if existing is not None and existing.transaction_version(app_id) is not None:
        return {"table": table, "version": _version_of(table, app_id), "already_committed": True}
    adds, schema, rows = _adds(folder, table, partition or {})
    if rows_expected is not None and rows != rows_expected:
        raise BeamscoreError(
            f"{folder}: its part files hold {rows} rows, the manifest {rows_expected}; nothing was committed to {table}"
        )
    for column, (_value, type_) in (partition or {}).items():
        if column not in schema.names:  # the value is the log's (the files may not hold it)
            schema = schema.append(pa.field(column, type_))
    delta_schema = _delta_schema(schema)
    partition_by = list(partition or {})
    replace = [(c, "=", v) for c, (v, _t) in (partition or {}).items()]
    props = CommitProperties(
        custom_metadata={"beamscore.job": app_id, "beamscore.rows": rows},
        app_transactions=[Transaction(app_id=app_id, version=1)],
    )
    # a create that loses the race for version 0 must fail, not retry as version 1 (delta-rs
    # would then commit a second CREATE TABLE over the first, whose new metadata fails every
    # concurrent append): it appends instead
    create = CommitProperties(
        custom_metadata=props.custom_metadata, app_transactions=props.app_transactions, max_commit_retries=0
    )
    try:
        if existing is None:
            try:
                create_table_with_add_actions(
                    table,
                    delta_schema,
                    adds,
                    mode="error",
                    partition_by=partition_by or None,
                    storage_options=options,
                    commit_properties=create,
                )
            except Exception:  # another job created the table first ("already exists", or its
                # version 0 won the race: "Metadata changed"): append to it
                try:
                    existing = DeltaTable(table, storage_options=options)
                except TableNotFoundError:
                    existing = None
                if existing is None:
                    raise
        if existing is not None:
            _check_schema(table, existing, delta_schema)
            if replace:  # one commit: delta-rs removes the partition's files, adds the job's
                existing.create_write_transaction(
                    adds,
                    "overwrite",
                    delta_schema,
                    partition_by=partition_by,
                    partition_filters=replace,
                    commit_properties=props,
                )
            else:
                existing.create_write_transaction(adds, "append", delta_schema, commit_properties=props)
    except BeamscoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - delta-rs: a conflicting commit, a store error
        raise BeamscoreError(
            f"{table}: the Delta commit of {len(adds)} files failed ({type(exc).__name__}: {first_line(str(exc))}); "
            f"the job's files stay in {folder}: rerun with --resume to commit them"
        ) from None
    done = {"table": table, "version": _version_of(table, app_id), "files": len(adds), "rows": rows}
    if partition:
        done["replaced"] = {c: v for c, (v, _t) in partition.items()}
    return done


def _adds(folder: str, table: str, partition: Partition) -> tuple[list[Any], pa.Schema, int]:
    """The add actions of the folder's part files (paths relative to the table, each with
    the partition's values), the files' common schema and their rows."""
    from deltalake.transaction import AddAction

    fs, root = bfs.filesystem(folder)
    fs.invalidate_cache(root)
    found = sorted(
        (info for info in fs.ls(root, detail=True) if _PART.match(info["name"].rstrip("/").rsplit("/", 1)[-1])),
        key=lambda info: info["name"],
    )
    relative = folder.rstrip("/").removeprefix(table.rstrip("/") + "/")
    adds, schema, rows = [], None, 0
    for info in found:
        name = info["name"].rstrip("/").rsplit("/", 1)[-1]
        with fs.open(info["name"], "rb") as f:
            meta = pq.ParquetFile(f).metadata
            file_schema = meta.schema.to_arrow_schema().remove_metadata()
        schema = schema or file_schema
        rows += meta.num_rows
        mtime = info.get("mtime") or info.get("LastModified") or info.get("updated")
        adds.append(
            AddAction(
                path=urllib.parse.quote(f"{relative}/{name}", safe="/="),  # the log holds URIs
                size=int(info["size"]),
                partition_values={c: v for c, (v, _t) in partition.items()},
                modification_time=_millis(mtime),
                data_change=True,
                stats=json.dumps({"numRecords": meta.num_rows}),
            )
        )
    if schema is None:
        raise BeamscoreError(f"{folder}: no part files to commit")
    return adds, schema, rows


def _millis(mtime: Any) -> int:
    if mtime is None:
        import time

        return int(time.time() * 1000)
    if hasattr(mtime, "timestamp"):
        return int(mtime.timestamp() * 1000)
    return int(float(mtime) * 1000)


def _check_schema(table: str, existing: Any, schema: Any, before: bool = False) -> None:
    """Refuse files whose columns are not the table's (delta-rs would commit them anyway)."""
    have, want = _columns(existing.schema()), _columns(schema)
    if have != want:
        differ = sorted({*have, *want} - {k for k in have if have.get(k) == want.get(k)})
        raise BeamscoreError(
            f"{table}: the table's columns ({', '.join(have)}) are not the job's ({', '.join(want)}); they differ in "
            f"{', '.join(differ)}; {'the job did not start' if before else 'nothing was committed'}: score into "
            "another table, or give the job the table's columns"
        )


def _columns(schema: Any) -> dict[str, str]:
    """Column name -> Delta type (as JSON), nullability and metadata aside."""
    return {f["name"]: json.dumps(f["type"], sort_keys=True) for f in json.loads(schema.to_json())["fields"]}


def _version_of(table: str, app_id: str) -> int | None:
    """The table version whose commit carries the job's app transaction, read from the log's
    commit files, newest first (``DeltaTable.history`` numbers commits from the snapshot it
    loaded, which concurrent commits can overtake)."""
    fs, root = bfs.filesystem(table)
    log = bfs.join(root, "_delta_log")
    fs.invalidate_cache(log)
    commits = sorted((n for n in fs.ls(log, detail=False) if re.search(r"/\d{20}\.json$", n)), reverse=True)
    needle = json.dumps({"appId": app_id})[1:-1].replace(" ", "")
    for name in commits:
        with fs.open(name, "rb") as f:
            if needle.encode() in f.read().replace(b" ", b""):
                return int(name.rsplit("/", 1)[-1][:20])
    return None
