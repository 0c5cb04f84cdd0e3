"""Plan a scoring job on the launcher: everything that can fail, fails here.

:func:`plan_job` resolves the model version, reads the signature from ``saved_model.pb``,
expands the input globs (one detailed listing per pattern: each file's size and version),
reads the first file's schema and binds every signature input to a column, then reads every
file's footer or header concurrently (:mod:`beamscore.pipelines.survey`), checks its schema
against the first file's and splits it into work units. The pipeline is built from the
resulting :class:`Plan` and nothing in it is decided again on the workers.

With ``--plan-on-workers`` (or automatically above :data:`PLAN_ON_WORKERS_ABOVE` files) the
launcher stops after the first file: the workers read the other footers, check each schema
and emit the units (see :mod:`beamscore.transforms.plan_files`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import posixpath
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from fsspec.utils import glob_translate

from beamscore import fs as bfs
from beamscore.config import ScoreConfig, model_configs
from beamscore.errors import BeamscoreError, TryLater
from beamscore.io import sink_for, source_for
from beamscore.io.base import Sink, Source, WorkUnit, part_name
from beamscore.io.keep import job_keep_types
from beamscore.io.pad import parse_pad
from beamscore.io.schemas import SameSchema
from beamscore.model.binding import InputBinding, bind_inputs, numpy_dtype
from beamscore.model.checks import check_jit_signature, check_model_files, check_outputs, import_modules
from beamscore.model.content import digest as content_digest
from beamscore.model.content import model_files
from beamscore.model.inspect import ModelInfo, SignatureInfo, default_tag_set, inspect_model, parse_tags
from beamscore.model.loader import ModelSpec, remember
from beamscore.model.scan import check_model_ops
from beamscore.paths import check_name_lengths, safe_component
from beamscore.pipelines.survey import PlanningProgress, survey
from beamscore.tables import TableSnapshot, resolve_input
from beamscore.tables.detect import refuse_stale_reads
from beamscore.transforms.read import schema_file
from beamscore.transforms.run_models import SEP as MODEL_COLUMN_SEP
from beamscore.transforms.run_models import column_name
from beamscore.wording import flag

__all__ = [
    "MODEL_COLUMN_SEP",
    "PLACEHOLDERS",
    "PLAN_ON_WORKERS_ABOVE",
    "STEPS",
    "ModelPlan",
    "Plan",
    "Planning",
    "Step",
    "column_name",
    "plan_job",
    "resolve_output",
    "resolved_output",
    "resolved_path",
]

log = logging.getLogger(__name__)

#: what ``{...}`` may stand for in an output path (for scheduled runs)
PLACEHOLDERS = ("date", "datetime", "model_version")

#: Aim for batches of about this many input bytes when --batch-size is not given.
TARGET_BATCH_BYTES = 16 << 20
MAX_DEFAULT_BATCH = 4096
#: Above this many input files the workers plan them, unless ``plan_on_workers`` says otherwise.
PLAN_ON_WORKERS_ABOVE = 100_000


@dataclass(frozen=True)
class ModelPlan:
    """One model of a job: its name (``""``: the one unnamed model), what was inspected,
    how it loads, the signature, its inputs bound to columns and the outputs it writes."""

    name: str
    model: ModelInfo
    spec: ModelSpec
    signature: SignatureInfo
    bindings: dict[str, InputBinding]
    #: the signature outputs this model writes (as the signature names them)
    outputs: list[str]
    tag_set: str = "serve"
    cast: bool = False
    #: routed (``--route-by``): its outputs are the job's columns, unprefixed
    routed: bool = False
    #: every model file's size and checksum (``--resume`` compares them, whatever ``fingerprint.pb`` says)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: flagged ops its signature uses that ``--allow-ops`` let through
    allowed_ops: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """The output columns it writes, in the order of ``outputs``."""
        return list(self.outputs) if self.routed else [column_name(self.name, key) for key in self.outputs]

    def header(self) -> dict[str, Any]:
        """The model's entry in the manifest's ``models``."""
        return {
            "name": self.name,
            "path": self.model.path,
            "given": self.model.given,
            "version": self.model.version,
            "fingerprint": self.model.fingerprint,
            "fingerprint_computed": self.model.fingerprint_computed,
            "signature": self.signature.key,
            "tag_set": self.tag_set,
            "outputs": list(self.outputs),
            "columns": self.columns,
            "files": self.files,
            "allowed_ops_used": list(self.allowed_ops),
        }

    def settings(self) -> dict[str, Any]:
        """What of this model decides what is written (part of ``--resume``'s identity)."""
        return {
            "name": self.name,
            "path": self.model.path,
            "fingerprint": self.model.fingerprint,
            "version": self.model.version,
            "signature": self.signature.key,
            "tag_set": ",".join(parse_tags(self.tag_set)),
            "map": {name: b.column for name, b in sorted(self.bindings.items())},
            "cast": bool(self.cast),
            "outputs": list(self.outputs),
            "files": self.files,  # by content: a resume refuses weights changed under an old fingerprint.pb
        }


@dataclass(frozen=True)
class Plan:
    """A checked job: model, signature, bindings, files, units and output layout."""

    config: ScoreConfig
    model: ModelInfo
    spec: ModelSpec
    signature: SignatureInfo
    bindings: dict[str, InputBinding]
    outputs: list[str]
    files: list[str]
    units: list[WorkUnit]
    source: Source
    sink: Sink
    batch_size: int
    started: str
    #: the output type of each --keep column, one for the whole job (:mod:`beamscore.io.keep`)
    keep_types: dict[str, pa.DataType] = field(default_factory=dict)
    #: size and version of every input file, from the listing (see :class:`~beamscore.fs.FileFacts`)
    facts: tuple[bfs.FileFacts, ...] = ()
    #: the workers split the files into units (``units`` is then empty) and check their schemas
    on_workers: bool = False
    #: the check every file's columns pass (run on the workers when ``on_workers``)
    schema_check: SameSchema | None = None
    #: seconds each planning step took, by name (:data:`STEPS`)
    planning_s: dict[str, float] = field(default_factory=dict)
    #: seconds of the trial call's parts: ``read`` (its rows), ``load`` and ``call`` (every
    #: model), ``process`` (its child process's whole life, when it ran in one)
    trial_s: dict[str, float] = field(default_factory=dict)
    #: the input table's snapshot, when the input is a table (:mod:`beamscore.tables`)
    table: TableSnapshot | None = None
    #: every model file's size and checksum (:func:`~beamscore.model.content.model_files`)
    model_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ops the op scan flags that the signature uses and ``allow_ops`` let through
    allowed_ops: tuple[str, ...] = ()
    #: the job's models, in order (``model``, ``spec``, ``signature``, ``bindings`` are the
    #: first's); empty or one unnamed model: today's one-model job
    models: tuple[ModelPlan, ...] = ()

    @property
    def several(self) -> bool:
        """Whether the job runs named models (``--model NAME=PATH``): every model over each
        row, outputs as ``NAME__output``; or, with ``--route-by``, one model per row."""
        return bool(self.models) and bool(self.models[0].name)

    @property
    def routed(self) -> bool:
        """Whether each row is scored by the one model its ``--route-by`` value names."""
        return self.several and bool(self.config.route_by)

    @property
    def read_columns(self) -> list[str]:
        """Columns the reader must read: the bound inputs (of every model), the route column,
        then ``--keep``."""
        bindings = [m.bindings for m in self.models] if self.several else [self.bindings]
        cols = [b.column for found in bindings for b in found.values()]
        route = [str(self.config.route_by)] if self.routed else []
        return list(dict.fromkeys([*cols, *route, *self.config.keep]))

    def header(self) -> dict[str, Any]:
        """The manifest's fixed part, known before the job runs. A job of named models adds
        ``models``: each one's path, version, fingerprint, signature and output columns (the
        ``model`` entry is the first's)."""
        header = self._header()
        if self.several:
            header["models"] = [m.header() for m in self.models]
        if self.routed:
            header["route_by"] = self.config.route_by
            header["max_models_per_worker"] = self.config.max_models_per_worker
        return header

    def _header(self) -> dict[str, Any]:
        return {
            "model": {
                "path": self.model.path,
                "given": self.model.given,
                "version": self.model.version,
                "fingerprint": self.model.fingerprint,
                "fingerprint_computed": self.model.fingerprint_computed,
                "signature": self.signature.key,
                "tag_set": ",".join(parse_tags(self.config.tag_set)),  # one spelling, as in settings
                "copies": self.config.model_copies,
                "jit_compile": self.config.jit_compile,
                "files": self.model_files,
                # --allow-ops as given, and the flagged ops the signature uses that it let through
                "allow_ops": list(self.config.allow_ops),
                "allowed_ops_used": list(self.allowed_ops),
            },
            "inputs": self.files,
            "input_format": self.source.format,
            "table": None if self.table is None else self.table.to_json(),
            "output_format": self.sink.format,
            # TFRecord files hold no row count: their rows_in is the records as read
            "rows_in_count": "planned" if self.source.counts_rows else "as read",
            "output_options": self.sink.describe(),
            "columns": {"outputs": self.outputs, "keep": list(self.config.keep)},
            "batch_size": self.batch_size,
            "output": resolved_output(self.config.output),
            "output_as_given": self.config.output,
            "units_planned": None if self.on_workers else len(self.units),
            "planned_on": "workers" if self.on_workers else "launcher",
            "reject_nan": self.config.reject_nan,
            "failure_limits": {
                "max_failed_rows": self.config.max_failed_rows,
                "max_failed_fraction": self.config.max_failed_fraction,
            },
            "started": self.started,
            "date": self.config.date,
            "settings": self.settings(),
        }

    def settings(self) -> dict[str, Any]:
        """The settings that decide what the job writes, under their config names: a
        ``--resume`` must find every one unchanged (:func:`~beamscore.pipelines.resume.job_identity`),
        and the manifest records them as ``settings``. ``fixed_batch_size`` is the batch size
        when it shapes the result (``--jit-compile`` compiles for it), else ``None``. A job of
        named models adds ``models``: every model's path, fingerprint and settings."""
        settings = self._settings()
        if self.several:
            settings["models"] = [m.settings() for m in self.models]
        if self.routed:
            settings["route_by"] = self.config.route_by
        return settings

    def _settings(self) -> dict[str, Any]:
        options = self.sink.describe()
        return {
            "version": self.model.version,
            "signature": self.signature.key,
            "tag_set": ",".join(parse_tags(self.config.tag_set)),
            "map": {name: b.column for name, b in sorted(self.bindings.items())},  # --map and the default
            "cast": bool(self.config.cast),
            "pad": {
                name: f"{p.length}:{p.value}" if p.value else str(p.length)
                for name, p in sorted(parse_pad(self.config.pad).items())
            },
            "keep": list(self.config.keep),
            "outputs": list(self.outputs),
            "output_format": self.sink.format,
            "output_compression": options.get("compression"),
            "output_compression_level": options.get("compression_level"),
            "reject_nan": bool(self.config.reject_nan),
            "jit_compile": bool(self.config.jit_compile),
            "fixed_batch_size": self.batch_size if self.spec.fixed_batch else None,
        }

    def file_metadata(self) -> dict[str, str]:
        """What each output file records about the model that made it."""
        return {
            "model_path": self.model.path,
            "model_version": self.model.version or "",
            "fingerprint": self.model.fingerprint or "",
            "signature": self.signature.key,
            "tag_set": ",".join(parse_tags(self.config.tag_set)),
        }


@dataclass
class Planning:
    """What the launcher's checks have found so far: each :data:`STEPS` function reads what
    earlier steps set and adds its own findings (``None`` until a step sets it)."""

    config: ScoreConfig
    now: dt.datetime
    started: str
    info: ModelInfo | None = None
    signature: SignatureInfo | None = None
    facts: list[bfs.FileFacts] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sink: Sink | None = None
    source: Source | None = None
    first: str = ""
    columns: dict[str, Any] = field(default_factory=dict)
    bindings: dict[str, InputBinding] = field(default_factory=dict)
    first_types: dict[str, pa.DataType] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    check: SameSchema | None = None
    on_workers: bool = False
    units: list[WorkUnit] = field(default_factory=list)
    keep_types: dict[str, pa.DataType] = field(default_factory=dict)
    batch_size: int = 0
    #: the input table's snapshot (``None``: the inputs are files)
    table: TableSnapshot | None = None
    #: the job's models, each planned (:func:`step_models`)
    models: list[ModelPlan] = field(default_factory=list)
    #: seconds each step took, by name (the manifest's ``metrics.planning``)
    timings: dict[str, float] = field(default_factory=dict)
    #: the trial call's parts, in seconds (:attr:`Plan.trial_s`)
    trial_s: dict[str, float] = field(default_factory=dict)
    model_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    allowed_ops: list[str] = field(default_factory=list)
    #: ``--output-format delta`` with ``--where``: the table's root and the partition the job
    #: replaces (:func:`~beamscore.io.delta_sink.output_partition`)
    table_output: str | None = None
    table_partition: dict[str, tuple[str, pa.DataType]] | None = None
    #: the trial call runs in a child process (:mod:`~beamscore.pipelines.trial_apart`): no
    #: worker of this job takes the launcher's copy of the model
    trial_apart: bool = False
    #: that child, started when planning starts so that it imports TensorFlow meanwhile
    trial_child: Any = field(default=None, repr=False, compare=False)

    def plan(self) -> Plan:
        """The finished :class:`Plan` (after every step has run)."""
        config, info = self.config, self.info
        assert info is not None and self.signature is not None and self.source is not None and self.sink
        spec = self.model_spec()
        models = [
            dataclasses.replace(m, spec=self.model_spec(m.model, config, m.tag_set, m.files)) for m in self.models
        ]
        if not models:  # the one unnamed model
            outputs = list(config.outputs) or sorted(self.signature.outputs)
            models = [ModelPlan("", info, spec, self.signature, self.bindings, outputs, config.tag_set, config.cast)]
        return Plan(
            config=config,
            model=info,
            spec=spec,
            models=tuple(models),
            signature=self.signature,
            bindings=self.bindings,
            outputs=self.outputs,
            files=self.files,
            units=self.units,
            source=self.source,
            sink=self.sink,
            batch_size=self.batch_size,
            started=self.started,
            keep_types=self.keep_types,
            facts=tuple(self.facts),
            on_workers=self.on_workers,
            schema_check=self.check,
            planning_s=dict(self.timings),
            trial_s=dict(self.trial_s),
            table=self.table,
            model_files=self.model_files,
            allowed_ops=tuple(self.allowed_ops),
        )

    def model_spec(
        self,
        info: ModelInfo | None = None,
        config: ScoreConfig | None = None,
        tag_set: str | None = None,
        files: dict[str, dict[str, Any]] | None = None,
    ) -> ModelSpec:
        """How the workers load ``info`` (default: the job's first model, its ``files`` by
        content) under ``config`` (default: the job's); known once the batch size is
        (``--jit-compile`` compiles for it)."""
        if info is None:
            info, files = self.info, self.model_files
        info, config = _found(info), config or self.config
        return ModelSpec(
            content=content_digest(files or {}),
            path=info.path,
            tags=config.tag_set if tag_set is None else tag_set,
            fingerprint=info.fingerprint,
            copies=config.model_copies or 0,
            jit_compile=config.jit_compile,
            fixed_batch=self.batch_size if config.jit_compile else None,
            imports=tuple(config.imports),
        )


#: One check of the launcher: a function of what earlier steps found (:class:`Planning`),
#: which adds its findings or raises :class:`~beamscore.errors.BeamscoreError` to refuse the job.
Step = Callable[[Planning], None]


def step_model(s: Planning) -> None:
    """Resolve the model version, read its signature from ``saved_model.pb`` (no weights), and
    fill ``{date}``/``{model_version}`` in the output path."""
    config = s.config
    import_modules(config.imports)  # custom op libraries register their ops before the checks
    s.info = remember(inspect_model(config.model, config.version))  # a local runner's load reuses it
    tag_set = ",".join(parse_tags(config.tag_set)) if config.tag_set else default_tag_set(s.info)
    s.config = dataclasses.replace(config, output=resolve_output(config.output, s.info, s.now), tag_set=tag_set)
    s.signature = s.info.signature(config.signature, tag_set)


def step_model_files(s: Planning) -> None:
    """The model's files are whole (variables, assets, custom ops) and ``--jit-compile`` can
    compile its signature."""
    config, info = s.config, _found(s.info)
    meta_graph = info.meta_graph(config.tag_set)
    check_model_files(info, meta_graph, config.imports)
    if config.jit_compile and not meta_graph.has_object_graph:
        raise BeamscoreError(
            f"--jit-compile needs a TF2 SavedModel; {info.path} [{meta_graph.tag_str}] is a TF1 graph "
            "(no object graph), run in a v1 Session"
        )
    if config.jit_compile:
        check_jit_signature(_found(s.signature))


def step_model_content(s: Planning) -> None:
    """Every model file's size and checksum, for a ``--resume`` to find the same weights
    whatever ``fingerprint.pb`` says (:mod:`beamscore.model.content`)."""
    fs, path = bfs.filesystem(_found(s.info).path)
    s.model_files = model_files(fs, path)


def step_model_ops(s: Planning) -> None:
    """What the signature can reach (:mod:`beamscore.model.scan`): file, Python, process and
    printing ops are refused unless ``--allow-ops`` allows them."""
    config = s.config
    s.allowed_ops = check_model_ops(_found(s.info), config.tag_set, _found(s.signature).key, config.allow_ops)


def step_inputs(s: Planning) -> None:
    """Resolve an input table to one snapshot (its live files), or expand the input globs: one
    detailed listing per pattern (each file's size and version)."""
    s.table = _table_input(s.config)
    if s.table is not None:
        s.facts = s.table.facts()
    else:
        s.facts = bfs.list_files(s.config.inputs)
    s.files = [f.url for f in s.facts]


def step_stale_reads(s: Planning) -> None:
    """No input file lies inside a Delta, Iceberg or Hudi table (it would be read with the
    files of the table's earlier versions), unless ``--raw-files`` says it is meant."""
    if s.table is None and not s.config.raw_files:
        refuse_stale_reads(s.config.inputs, s.files)


def _table_input(config: ScoreConfig) -> TableSnapshot | None:
    """The snapshot of the input table, or ``None`` for files. A ``--resume`` without a
    version reads the version its first run read, even if the table moved on since."""
    if config.raw_files:
        _refuse_table_options(config, f"{flag('raw_files')} reads files")
        return None
    tables = [(given, resolve_input) for given in config.inputs]
    version, as_of = config.table_version, config.table_as_of
    if config.resume and version is None and as_of is None:
        version = _resumed_version(config)
    found = None
    for given, resolve in tables:
        snapshot = resolve(given, version, as_of, config.where)
        if snapshot is not None and len(config.inputs) > 1:
            raise BeamscoreError(
                f"--input {given!r} is a {snapshot.format} table, read as one snapshot: give it as the job's only "
                "--input (one table per job)"
            )
        found = found or snapshot
    if found is None:
        _refuse_table_options(config, "the inputs are files")
    elif config.format not in (None, "parquet"):
        raise BeamscoreError(f"{flag('format')} {config.format}: a table's data files are Parquet")
    return found


def _refuse_table_options(config: ScoreConfig, why: str) -> None:
    """The table options need a table as the input."""
    for name in ("table_version", "table_as_of", "where"):
        if getattr(config, name) is not None:
            raise BeamscoreError(
                f"{flag(name)} reads a Delta Lake or Iceberg table, but {why}; give the table's root as --input"
            )


def _resumed_version(config: ScoreConfig) -> int | None:
    """The table version an unfinished output's first run read (its ``_units/_job.json``)."""
    import json

    try:
        fs, root = bfs.filesystem(config.output)
        path = bfs.join(root, "_units", "_job.json")
        if not fs.exists(path):
            return None
        table = json.loads(fs.cat_file(path)).get("table")
    except (OSError, ValueError, BeamscoreError):
        return None  # no readable job file: start_output says what is wrong with the output
    return table.get("version") if isinstance(table, dict) else None


def step_table_output(s: Planning) -> None:
    """``--output-format delta``: ``--output`` is a Delta table; the job writes into its own
    folder inside it (:func:`~beamscore.io.delta_sink.job_folder`, named from what the job is,
    so ``--resume`` finds it) and commits its files at the end. ``--overwrite`` is refused:
    it would remove files the table's log may name. A ``--where`` (on the input table) also
    names the output's partition the commit replaces: equalities on its partition columns."""
    config = s.config
    if config.output_format != "delta":
        return
    try:
        import deltalake  # noqa: F401
    except ImportError:
        raise BeamscoreError(
            f"{flag('output_format')} delta needs the deltalake package: pip install 'beamscore[delta]'"
        ) from None
    if config.overwrite:
        raise BeamscoreError(
            f"{flag('overwrite')} does not apply to a Delta table output (the table keeps every commit); "
            f"a job's files are committed once, {flag('resume')} finishes an interrupted job"
        )
    from beamscore.io.delta_sink import check_table_root, job_folder, output_partition, refuse_partitioned

    table = config.output if "://" in config.output else os.path.abspath(config.output)
    if config.where is not None:
        partitions = s.table.partitions if s.table is not None else {}
        s.table_partition = output_partition(table, config.where, partitions)
    else:
        refuse_partitioned(table)
    s.table_output = table
    check_table_root(table, s.table_partition)
    info, signature = _found(s.info), _found(s.signature)
    identity = {
        "model": [info.path, info.version, info.fingerprint, signature.key, config.tag_set],
        "inputs": s.files,
        "settings": [config.map, config.cast, config.pad, config.keep, config.outputs, config.reject_nan],
        "output": [config.output_compression, config.output_compression_level, config.jit_compile],
    }
    if s.table_partition is not None:
        identity["replace"] = config.where
    s.config = dataclasses.replace(config, output=job_folder(table, identity, s.table_partition))


def step_output(s: Planning) -> None:
    """The output's sink, apart from every input."""
    config = s.config
    s.sink = sink_for(
        config.output_format,
        config.output,
        compression=config.output_compression,
        compression_level=config.output_compression_level,
    )
    if s.table_output is not None:  # a Delta output: the table's root, the partition it replaces
        s.sink.table = s.table_output  # type: ignore[attr-defined]
        s.sink.partition = s.table_partition  # type: ignore[attr-defined]
    inputs = [s.table.root] if s.table is not None else config.inputs  # iceberg://... is no path
    _check_output_apart(config.output, inputs, s.sink.unit_files("part-00000-00000", ["x"])[0])


def step_first_file(s: Planning) -> None:
    """The input format, and the columns of the first file that holds rows."""
    config, files = s.config, s.files
    source = source_for(
        config.format,
        files[0],
        config.rows_per_unit,
        compression=config.compression,
        pad=config.pad,
        allow_pickle=config.allow_pickle,
    ).bind(_found(s.signature), config.map)
    if s.table is not None:  # the table's columns by field id, its partition values from its log
        from beamscore.tables.source import TableSource

        source = TableSource.of(source, s.table)
    s.source = source.with_files(files)  # hive partition keys (Parquet) are columns
    s.first = schema_file(s.source, files)  # the first file with rows: an empty shard may carry no types
    s.columns = s.source.columns(s.first)


def step_bindings(s: Planning) -> None:
    """Bind every signature input to a column (name, dtype, shape; ``--map``, ``--cast``)."""
    s.bindings = bind_inputs(_found(s.signature), s.columns, s.config.map, s.config.cast, where=s.first)


def step_keep(s: Planning) -> None:
    """Every ``--keep`` column exists; its type in the first file."""
    config, columns = s.config, s.columns
    missing_keep = [k for k in config.keep if k not in columns]
    if missing_keep:
        raise BeamscoreError(
            f"{s.first}: no column {missing_keep[0]!r} to --keep; columns: {', '.join(sorted(columns))}"
        )
    if config.keep:
        types = _found(s.source).column_types(s.first)
        s.first_types = {name: types[name] for name in config.keep}


def step_outputs(s: Planning) -> None:
    """The outputs to write exist, do not clash with ``--keep``, and fit the output format."""
    config, signature = s.config, _found(s.signature)
    s.outputs = list(config.outputs) or sorted(signature.outputs)
    check_outputs(_found(s.info).path, signature, s.outputs)
    if config.models:  # named models write NAME__output: checked by step_models
        return
    clash = sorted(set(s.outputs) & set(config.keep))
    if clash:
        raise BeamscoreError(
            f"--keep column(s) {', '.join(clash)} have the name of signature outputs; "
            "choose other outputs with --outputs"
        )
    if config.output_format == "npy":
        _check_npy_columns(s.columns, config.keep, s.first)
    _check_output_names(config.output, _found(s.sink), s.outputs, config.keep)


def step_models(s: Planning) -> None:
    """Several named models (``--model NAME=PATH``): each inspected, its files checked, its
    inputs bound to the first file's columns and its outputs checked, as the one model of a
    one-model job is by the steps before; the output columns (``NAME__output``) must be
    unique, clash with no ``--keep`` column and fit the output's filesystem. Without named
    models this step does nothing (the steps before planned the one model)."""
    config = s.config
    if not config.models:
        return
    if config.output_format == "npy":  # step_outputs leaves it to this step with named models
        _check_npy_columns(s.columns, config.keep, s.first)
    s.models = []
    planned = []
    for name, own in model_configs(config):
        sub = Planning(config=own, now=s.now, started=s.started, files=s.files, sink=s.sink)
        try:
            step_model(sub)
            step_model_files(sub)
            step_model_content(sub)
            step_model_ops(sub)  # each model is scanned: a model is code
        except BeamscoreError as exc:
            raise BeamscoreError(f"model {name!r}: {exc}") from None
        planned.append((name, own, sub))
    _bind_source_to_models(s, [(name, _found(sub.signature), own.map) for name, own, sub in planned])
    for name, own, sub in planned:
        sub.source, sub.first, sub.columns = s.source, s.first, s.columns
        try:
            step_bindings(sub)
            step_outputs(sub)
        except BeamscoreError as exc:
            raise BeamscoreError(f"model {name!r}: {exc}") from None
        info, signature = _found(sub.info), _found(sub.signature)
        s.models.append(
            ModelPlan(
                name,
                info,
                ModelSpec(path=info.path, tags=own.tag_set, fingerprint=info.fingerprint),
                signature,
                sub.bindings,
                sub.outputs,
                own.tag_set,
                own.cast,
                bool(config.route_by),
                files=sub.model_files,
                allowed_ops=tuple(sub.allowed_ops),
            )
        )
    if config.route_by:
        _check_routed(s)
        return
    columns = [c for m in s.models for c in m.columns]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise BeamscoreError(f"output column {twice[0]!r} would be written twice; give the models other names")
    clash = sorted(set(columns) & set(config.keep))
    if clash:
        raise BeamscoreError(
            f"--keep column(s) {', '.join(clash)} have the name of a model's output column; keep other columns"
        )
    s.outputs = columns
    _check_output_names(config.output, _found(s.sink), s.outputs, config.keep)


def _bind_source_to_models(s: Planning, models: list[tuple[str, SignatureInfo, dict[str, str]]]) -> None:
    """The source bound to every model's inputs (:meth:`~beamscore.io.base.Source.bind_models`),
    not only the first's, which ``step_first_file`` bound: a TFRecord file is parsed once,
    against the union of what the models read; an .npz archive's rows are those of the arrays
    any model reads; an .npy file's array is the column of each one-input model's input. The
    first file's columns (and the ``--keep`` columns' types) are read
    again through it."""
    config = s.config
    if _found(s.source).format not in ("tfrecord", "npz", "npy"):
        return  # the other sources' columns do not depend on the models' inputs
    s.source = source_for(
        config.format,
        s.files[0],
        config.rows_per_unit,
        compression=config.compression,
        pad=config.pad,
        allow_pickle=config.allow_pickle,
    ).bind_models(models)
    s.source = s.source.with_files(s.files)
    s.columns = s.source.columns(_found(s.first))
    step_keep(s)


def _check_routed(s: Planning) -> None:
    """``--route-by``: the route column exists (strings or integers), and every model writes
    the same outputs, of one dtype and row shape, which are the job's columns."""
    config, column = s.config, str(s.config.route_by)
    spec = s.columns.get(column)
    if spec is None:
        raise BeamscoreError(f"{s.first}: no column {column!r} to --route-by; columns: {', '.join(sorted(s.columns))}")
    if spec.dtype not in ("string", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        raise BeamscoreError(
            f"{s.first}: --route-by column {column!r} holds {spec.dtype}; route by strings or integers"
        )
    first = s.models[0]
    want = {k: (first.signature.outputs[k].dtype, first.signature.outputs[k].shape_str()) for k in first.outputs}
    for m in s.models[1:]:
        got = {k: (m.signature.outputs[k].dtype, m.signature.outputs[k].shape_str()) for k in m.outputs}
        if got != want:
            differ = sorted(set(got) ^ set(want)) or sorted(k for k in want if got.get(k) != want[k])
            raise BeamscoreError(
                f"routed models must write the same outputs of one dtype and shape; {m.name!r} and {first.name!r} "
                f"differ on {differ[0]!r} ({m.name}: {got.get(differ[0], 'none')}, {first.name}: "
                f"{want.get(differ[0], 'none')}); choose common outputs with models.NAME.outputs"
            )
    clash = sorted(set(first.outputs) & set(config.keep))
    if clash:
        raise BeamscoreError(
            f"--keep column(s) {', '.join(clash)} have the name of signature outputs; choose other outputs"
        )
    s.outputs = list(first.outputs)
    _check_output_names(config.output, _found(s.sink), s.outputs, config.keep)


def _bound_columns(s: Planning) -> list[str]:
    """The input columns some model reads (every model's bindings)."""
    found = [m.bindings for m in s.models] or [s.bindings]
    return list(dict.fromkeys(b.column for bindings in found for b in bindings.values()))


def step_units(s: Planning) -> None:
    """Every file's footer or header read concurrently, its schema checked against the first
    file's, and split into work units (or, on the workers, left to them)."""
    config, source = s.config, _found(s.source)
    s.check = SameSchema(
        s.first,
        s.columns,
        _bound_columns(s),
        config.keep,
        keep_required=source.format != "tfrecord",
    )
    on_workers = config.plan_on_workers
    s.on_workers = len(s.files) > PLAN_ON_WORKERS_ABOVE if on_workers is None else on_workers
    s.units = [] if s.on_workers else survey(source, s.facts, s.check, progress=PlanningProgress())
    # every file's schema seen (launcher planning): a numeric kept column all files agree on keeps its type
    s.keep_types = job_keep_types(s.first_types, None if s.on_workers else s.check.keep_specs)


def step_empty_input(s: Planning) -> None:
    """Inputs that hold no rows (an upstream partition written empty, or not filled yet) are
    refused with exit 75, try again later, unless ``--allow-empty``: an empty result with
    ``_SUCCESS`` would tell the scheduler the day was scored. Where the workers plan the
    files, their rows are not known here and the job runs."""
    config, source = s.config, _found(s.source)
    if config.allow_empty or s.on_workers:
        return
    sizes = [f.size for f in s.facts]
    empty = sum(u.rows for u in s.units) == 0 if source.counts_rows else all(size == 0 for size in sizes)
    if not empty:
        return
    files = len(s.files)
    raise TryLater(
        f"input {', '.join(config.inputs)} holds no rows ({files} file{'s' if files != 1 else ''}, 0 rows); "
        f"try again when the data has landed, or pass {flag('allow_empty')} to write an empty result"
    )


def step_batch_size(s: Planning) -> None:
    """``--batch-size``, or about :data:`TARGET_BATCH_BYTES` of input per batch."""
    bindings = {b.column: b for m in s.models for b in m.bindings.values()} or s.bindings  # a column once
    s.batch_size = s.config.batch_size or _default_batch_size(bindings)


def step_table_columns(s: Planning) -> None:
    """A Delta table output that exists already takes the job's columns: compared before the
    job runs (names and Delta types, as the part files will have them), so a job whose files
    the table would refuse at its commit is refused here instead, having done nothing."""
    config = s.config
    if config.output_format != "delta":
        return
    from beamscore.io.delta_sink import check_table_columns

    signature = _found(s.signature)
    outputs = {name: signature.outputs[name] for name in s.outputs}
    if any(spec.shape is None for spec in outputs.values()):
        return  # unknown rank: the column's type is known when it is written (checked at the commit)
    columns = {name: _written_type(spec.dtype, len(spec.shape)) for name, spec in outputs.items()}
    columns.update({name: s.keep_types[name] for name in config.keep if name in s.keep_types})
    check_table_columns(_found(s.sink), pa.schema(list(columns.items())))


def _written_type(tf_dtype: str, rank: int) -> pa.DataType:
    """The Arrow type an output of this dtype and rank is written as, in a Delta table's
    terms: (nested) lists of its values; strings as binary; bfloat16 widened."""
    from beamscore.model.binding import output_dtype

    dtype = output_dtype(tf_dtype)
    t = pa.binary() if dtype.kind == "O" else pa.from_numpy_dtype(dtype)
    for _ in range(max(rank - 1, 0)):
        t = pa.list_(t)
    return t


def step_trial(s: Planning) -> None:
    """A few rows of the first input through the signature on the launcher (``--no-trial``
    skips it): a model that cannot run here is refused before anything is written."""
    if not s.config.trial:
        return
    if s.trial_apart or s.config.model_copies:  # no worker takes the launcher's copy: load it elsewhere
        from beamscore.pipelines.trial_apart import trial_apart

        trial_apart(s)
    else:
        from beamscore.pipelines.trial import trial_call

        trial_call(s)


#: The launcher's checks, in order, by name: a new check is one function added here.
STEPS: list[tuple[str, Step]] = [
    ("model", step_model),
    ("model files", step_model_files),
    ("model content", step_model_content),
    ("model ops", step_model_ops),
    ("inputs", step_inputs),
    ("stale reads", step_stale_reads),
    ("table output", step_table_output),
    ("output", step_output),
    ("first file", step_first_file),
    ("bindings", step_bindings),
    ("keep", step_keep),
    ("outputs", step_outputs),
    ("models", step_models),
    ("units", step_units),
    ("empty input", step_empty_input),
    ("batch size", step_batch_size),
    ("table columns", step_table_columns),
    ("trial", step_trial),
]


#: the steps that plan one model: with several models, they plan the first (a refusal names it)
_MODEL_STEPS = ("model", "model files", "bindings", "outputs")


def plan_job(
    config: ScoreConfig,
    steps: Sequence[tuple[str, Step]] | None = None,
    *,
    trial_apart: bool = False,
    trial_child: Any = None,
) -> Plan:
    """Check ``config`` against the model and the data and return the job's plan: run each of
    ``steps`` (default :data:`STEPS`) in order; the first that refuses ends the planning.
    ``trial_apart``: the job's workers are other processes, so the trial call loads the
    model in a child process, not in this one (:mod:`~beamscore.pipelines.trial_apart`);
    ``trial_child``: that process, started already (``trial_apart.start_early``), which
    planning uses or ends."""
    config = config.validate().with_date()  # --date filled into the input and output paths
    if config.models:  # several models: the steps up to "models" plan the first as a one-model job would
        config = dataclasses.replace(model_configs(config)[0][1], models=config.models)
    config.check_config_paths()
    now = dt.datetime.now(dt.UTC)
    state = Planning(config=config, now=now, started=now.isoformat(timespec="seconds"), trial_apart=trial_apart)
    first = next(iter(config.models), "")
    steps = STEPS if steps is None else steps
    from beamscore.pipelines.trial_apart import start_child, stop_child

    if (trial_apart or config.model_copies) and config.trial and any(step is step_trial for _, step in steps):
        state.trial_child = trial_child or start_child()
    else:
        stop_child(trial_child)  # started on the flags' word, which planning did not take
    try:
        for name, step in steps:
            began = time.perf_counter()
            try:
                step(state)
            except BeamscoreError as exc:
                if first and name in _MODEL_STEPS:  # the first of several models, planned by these steps
                    raise BeamscoreError(f"model {first!r}: {exc}") from None
                raise
            state.timings[name] = round(time.perf_counter() - began, 4)
            log.debug("planning step %r took %.3f s", name, state.timings[name])
    finally:
        if state.trial_child is not None:  # a step refused before the trial call
            stop_child(state.trial_child)
    return state.plan()


def _found(value: Any) -> Any:
    """A finding an earlier step must have set (``None`` here is a bug in :data:`STEPS`' order)."""
    if value is None:
        raise AssertionError("a planning step ran before the step that sets what it needs")
    return value


def _check_output_apart(output: str, patterns: Sequence[str], example_part: str) -> None:
    """Refuse an output that an ``--input`` reads or holds, compared as real paths (symbolic
    links and ``..`` resolved locally, URLs normalised on object stores): the same directory,
    one inside an input directory (read recursively) or holding an input, or one an input glob
    matches, itself or its part files (``example_part``, e.g. ``part-00000-00000.parquet``).
    With or without ``--overwrite``: the job would write beside, or remove, its own inputs."""
    out_fs, out_path = bfs.filesystem(output)
    out_dir = resolved_path(out_fs, out_path)
    for pattern in patterns:
        fs, path = bfs.filesystem(pattern)
        if type(fs) is not type(out_fs):
            continue
        if any(c in path for c in "*?["):
            head, tail = _glob_head(path)
            base = resolved_path(fs, head)
            matcher = re.compile(glob_translate(f"{base.rstrip('/')}/{tail}"))
            hit = (
                matcher.fullmatch(out_dir)
                or matcher.fullmatch(f"{out_dir}/{example_part}")
                or out_dir == base
                or _inside(out_dir, base)  # the output holds the directory the glob reads
            )
        else:
            base = resolved_path(fs, path)
            hit = out_dir == base or _inside(out_dir, base) or (_inside(base, out_dir) and fs.isdir(path))
        if hit:
            raise BeamscoreError(
                f"output {output} overlaps --input {pattern} (as real paths: {out_dir} and {base}): the job would "
                "write among its inputs and the next run would read its part files; score into a directory "
                "apart from the inputs"
            )


def resolved_path(fs: Any, path: str) -> str:
    """A path as the filesystem means it: locally with symbolic links and ``..`` resolved
    (``os.path.realpath``), on object stores with ``.``, ``..`` and doubled slashes removed."""
    if bfs.is_local(fs):
        return os.path.realpath(path)
    bucket_path = posixpath.normpath("/" + path.strip("/"))
    return bucket_path.lstrip("/")


def resolved_output(output: str) -> str:
    """``output`` as the manifest records it: the real path, or the normalised URL."""
    fs, path = bfs.filesystem(output)
    return bfs.unstrip(fs, resolved_path(fs, path))


def _inside(parent: str, child: str) -> bool:
    """Whether ``child`` lies below ``parent`` (both resolved)."""
    return child.startswith(parent.rstrip("/") + "/")


def _glob_head(path: str) -> tuple[str, str]:
    """``/a/b/*/c.parquet`` -> ``("/a/b", "*/c.parquet")``: the directories before the first
    glob character, and the rest."""
    parts = path.split("/")
    first = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    head = "/".join(parts[:first])
    return (head or ("/" if path.startswith("/") else "")), "/".join(parts[first:])


def resolve_output(template: str, model: ModelInfo, now: dt.datetime) -> str:
    """Fill ``{date}`` (``YYYY-MM-DD``), ``{datetime}`` (``YYYY-MM-DDTHH-MM-SSZ``) and
    ``{model_version}`` in an output path; any other ``{...}`` is an error (no eval, no
    ``str.format``: only these names are replaced, each value a safe path component)."""

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name == "date":
            return now.strftime("%Y-%m-%d")
        if name == "datetime":
            return now.strftime("%Y-%m-%dT%H-%M-%SZ")
        if name == "model_version":
            if not model.version:
                raise BeamscoreError(
                    f"--output {template!r} uses {{model_version}}, but {model.given} is not a versioned base dir"
                )
            return safe_component(model.version)
        raise BeamscoreError(
            f"--output {template!r}: unknown placeholder {{{name}}}; known: "
            + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
        )

    return re.sub(r"\{([^{}]*)\}", fill, template)


def _check_npy_columns(columns: dict, keep: list[str], where: str) -> None:
    """.npy holds one fixed shape and a fixed-width dtype: refuse --keep columns that cannot be."""
    for name in keep:
        spec = columns[name]
        if spec.row_shape is None:
            raise BeamscoreError(
                f"{where}: --keep column {name!r} is a variable-length list; .npy needs one shape per file "
                "(use --output-format parquet)"
            )
        if spec.dtype != "string":
            try:
                numpy_dtype(spec.dtype)
            except BeamscoreError:
                raise BeamscoreError(
                    f"{where}: --keep column {name!r} has type {spec.dtype}, which .npy cannot hold without pickle "
                    "(use --output-format parquet)"
                ) from None


def _check_output_names(output: str, sink: Sink, outputs: list[str], keep: list[str]) -> None:
    """Refuse output or ``--keep`` names whose files the output's filesystem cannot hold."""
    fs, root = bfs.filesystem(output)
    sample = part_name(99999, 99999)
    names = {}
    for kind, columns in (("output", outputs), ("--keep column", keep)):
        for column in columns:
            for rel in sink.unit_files(sample, [column]):
                names[rel] = f"{kind} {column[:40]!r}{'...' if len(column) > 40 else ''} ({len(column)} characters)"
    names.setdefault(f"{sample}.parquet", "the part names")
    check_name_lengths(root, bfs.is_local(fs), names)


def _default_batch_size(bindings: dict[str, InputBinding]) -> int:
    """About ``TARGET_BATCH_BYTES`` of input per batch, at most ``MAX_DEFAULT_BATCH`` rows."""
    row_bytes = 0
    for b in bindings.values():
        dims = [d for d in (b.shape or (None, 1))[1:] if d is not None]
        row_bytes += 8 * math.prod(dims)
    if row_bytes == 0:
        return MAX_DEFAULT_BATCH
    return max(1, min(MAX_DEFAULT_BATCH, TARGET_BATCH_BYTES // row_bytes))
