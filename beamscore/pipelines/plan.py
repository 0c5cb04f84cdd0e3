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
from beamscore.config import ScoreConfig
from beamscore.errors import BeamscoreError
from beamscore.io import sink_for, source_for
from beamscore.io.base import Sink, Source, WorkUnit, part_name
from beamscore.io.keep import job_keep_types
from beamscore.io.pad import parse_pad
from beamscore.io.schemas import SameSchema
from beamscore.model.binding import InputBinding, bind_inputs, numpy_dtype
from beamscore.model.checks import check_jit_signature, check_model_files, check_outputs, import_modules
from beamscore.model.inspect import ModelInfo, SignatureInfo, inspect_model, parse_tags
from beamscore.model.loader import ModelSpec, remember
from beamscore.paths import check_name_lengths, safe_component
from beamscore.pipelines.survey import PlanningProgress, survey
from beamscore.transforms.read import schema_file

__all__ = [
    "PLACEHOLDERS",
    "PLAN_ON_WORKERS_ABOVE",
    "STEPS",
    "Plan",
    "Planning",
    "Step",
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

    @property
    def read_columns(self) -> list[str]:
        """Columns the reader must read: the bound inputs, then ``--keep``."""
        cols = [b.column for b in self.bindings.values()]
        return list(dict.fromkeys([*cols, *self.config.keep]))

    def header(self) -> dict[str, Any]:
        """The manifest's fixed part, known before the job runs."""
        return {
            "model": {
                "path": self.model.path,
                "given": self.model.given,
                "version": self.model.version,
                "fingerprint": self.model.fingerprint,
                "fingerprint_computed": self.model.fingerprint_computed,
                "signature": self.signature.key,
                "tag_set": self.config.tag_set,
                "copies": self.config.model_copies,
                "jit_compile": self.config.jit_compile,
            },
            "inputs": self.files,
            "input_format": self.source.format,
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
        when it shapes the result (``--jit-compile`` compiles for it), else ``None``."""
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
    #: seconds each step took, by name (the manifest's ``metrics.planning``)
    timings: dict[str, float] = field(default_factory=dict)

    def model_spec(self) -> ModelSpec:
        """How workers load the model (after the "batch size" step: ``--jit-compile`` compiles for it)."""
        config, info = self.config, _found(self.info)
        return ModelSpec(
            path=info.path,
            tags=config.tag_set,
            fingerprint=info.fingerprint,
            copies=config.model_copies or 0,
            jit_compile=config.jit_compile,
            fixed_batch=self.batch_size if config.jit_compile else None,
            imports=tuple(config.imports),
        )

    def plan(self) -> Plan:
        """The finished :class:`Plan` (after every step has run)."""
        config, info = self.config, self.info
        assert info is not None and self.signature is not None and self.source is not None and self.sink
        return Plan(
            config=config,
            model=info,
            spec=self.model_spec(),
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
    s.config = dataclasses.replace(config, output=resolve_output(config.output, s.info, s.now))
    s.signature = s.info.signature(config.signature, config.tag_set)


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


def step_inputs(s: Planning) -> None:
    """Expand the input globs: one detailed listing per pattern (each file's size and version)."""
    s.facts = bfs.list_files(s.config.inputs)
    s.files = [f.url for f in s.facts]


def step_output(s: Planning) -> None:
    """The output's sink, apart from every input."""
    config = s.config
    s.sink = sink_for(
        config.output_format,
        config.output,
        compression=config.output_compression,
        compression_level=config.output_compression_level,
    )
    _check_output_apart(config.output, config.inputs, s.sink.unit_files("part-00000-00000", ["x"])[0])


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
    clash = sorted(set(s.outputs) & set(config.keep))
    if clash:
        raise BeamscoreError(
            f"--keep column(s) {', '.join(clash)} have the name of signature outputs; "
            "choose other outputs with --outputs"
        )
    if config.output_format == "npy":
        _check_npy_columns(s.columns, config.keep, s.first)
    _check_output_names(config.output, _found(s.sink), s.outputs, config.keep)


def step_units(s: Planning) -> None:
    """Every file's footer or header read concurrently, its schema checked against the first
    file's, and split into work units (or, on the workers, left to them)."""
    config, source = s.config, _found(s.source)
    s.check = SameSchema(
        s.first,
        s.columns,
        [b.column for b in s.bindings.values()],
        config.keep,
        keep_required=source.format != "tfrecord",
    )
    on_workers = config.plan_on_workers
    s.on_workers = len(s.files) > PLAN_ON_WORKERS_ABOVE if on_workers is None else on_workers
    s.units = [] if s.on_workers else survey(source, s.facts, s.check, progress=PlanningProgress())
    # every file's schema seen (launcher planning): a numeric kept column all files agree on keeps its type
    s.keep_types = job_keep_types(s.first_types, None if s.on_workers else s.check.keep_specs)


def step_batch_size(s: Planning) -> None:
    """``--batch-size``, or about :data:`TARGET_BATCH_BYTES` of input per batch."""
    s.batch_size = s.config.batch_size or _default_batch_size(s.bindings)


def step_trial(s: Planning) -> None:
    """A few rows of the first input through the signature on the launcher (``--no-trial``
    skips it): a model that cannot run here is refused before anything is written."""
    if s.config.trial:
        from beamscore.pipelines.trial import trial_call

        trial_call(s)


#: The launcher's checks, in order, by name: a new check is one function added here.
STEPS: list[tuple[str, Step]] = [
    ("model", step_model),
    ("model files", step_model_files),
    ("inputs", step_inputs),
    ("output", step_output),
    ("first file", step_first_file),
    ("bindings", step_bindings),
    ("keep", step_keep),
    ("outputs", step_outputs),
    ("units", step_units),
    ("batch size", step_batch_size),
    ("trial", step_trial),
]


def plan_job(config: ScoreConfig, steps: Sequence[tuple[str, Step]] | None = None) -> Plan:
    """Check ``config`` against the model and the data and return the job's plan: run each of
    ``steps`` (default :data:`STEPS`) in order; the first that refuses ends the planning."""
    config = config.validate().with_date()  # --date filled into the input and output paths
    config.check_config_paths()
    now = dt.datetime.now(dt.UTC)
    state = Planning(config=config, now=now, started=now.isoformat(timespec="seconds"))
    for name, step in STEPS if steps is None else steps:
        began = time.perf_counter()
        step(state)
        state.timings[name] = round(time.perf_counter() - began, 4)
        log.debug("planning step %r took %.3f s", name, state.timings[name])
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
