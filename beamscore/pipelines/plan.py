"""Plan a scoring job on the launcher: everything that can fail, fails here.

:func:`plan_job` resolves the model version, reads the signature from ``saved_model.pb``,
expands the input globs, reads the first file's schema and binds every signature input to
a column, then splits the files into work units. The pipeline is built from the resulting
:class:`Plan` and nothing in it is decided again on the workers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from beamscore import fs as bfs
from beamscore.config import ScoreConfig
from beamscore.errors import BeamscoreError
from beamscore.io import sink_for, source_for
from beamscore.io.base import Sink, Source, WorkUnit, part_name
from beamscore.model.binding import InputBinding, bind_inputs, numpy_dtype
from beamscore.model.inspect import ModelInfo, SignatureInfo, inspect_model
from beamscore.model.loader import ModelSpec
from beamscore.paths import check_name_lengths, safe_component
from beamscore.transforms.read import plan_units

__all__ = ["PLACEHOLDERS", "Plan", "plan_job", "resolve_output"]

#: what ``{...}`` may stand for in an output path (for scheduled runs)
PLACEHOLDERS = ("date", "datetime", "model_version")

#: Aim for batches of about this many input bytes when --batch-size is not given.
TARGET_BATCH_BYTES = 16 << 20
MAX_DEFAULT_BATCH = 4096


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
                "signature": self.signature.key,
                "tag_set": self.config.tag_set,
                "copies": self.config.model_copies,
                "jit_compile": self.config.jit_compile,
            },
            "inputs": self.files,
            "input_format": self.source.format,
            "output_format": self.sink.format,
            "output_options": self.sink.describe(),
            "columns": {"outputs": self.outputs, "keep": list(self.config.keep)},
            "batch_size": self.batch_size,
            "output": self.config.output,
            "units_planned": len(self.units),
            "reject_nan": self.config.reject_nan,
            "failure_limits": {
                "max_failed_rows": self.config.max_failed_rows,
                "max_failed_fraction": self.config.max_failed_fraction,
            },
            "started": self.started,
        }

    def file_metadata(self) -> dict[str, str]:
        """What each output file records about the model that made it."""
        return {
            "model_path": self.model.path,
            "model_version": self.model.version or "",
            "fingerprint": self.model.fingerprint or "",
            "signature": self.signature.key,
        }


def plan_job(config: ScoreConfig) -> Plan:
    """Check ``config`` against the model and the data and return the job's plan."""
    config.validate()
    now = dt.datetime.now(dt.UTC)
    started = now.isoformat(timespec="seconds")
    info = inspect_model(config.model, config.version)
    config = dataclasses.replace(config, output=resolve_output(config.output, info, now))
    signature = info.signature(config.signature, config.tag_set)
    files = bfs.expand_globs(config.inputs)
    source = source_for(
        config.format,
        files[0],
        config.rows_per_unit,
        compression=config.compression,
        pad=config.pad,
        allow_pickle=config.allow_pickle,
    ).bind(signature, config.map)
    columns = source.columns(files[0])
    bindings = bind_inputs(signature, columns, config.map, config.cast, where=files[0])
    missing_keep = [k for k in config.keep if k not in columns]
    if missing_keep:
        raise BeamscoreError(
            f"{files[0]}: no column {missing_keep[0]!r} to --keep; columns: {', '.join(sorted(columns))}"
        )
    outputs = list(config.outputs) or sorted(signature.outputs)
    unknown = [o for o in outputs if o not in signature.outputs]
    if unknown:
        raise BeamscoreError(
            f"--outputs {', '.join(unknown)} not produced by signature {signature.key!r}; "
            f"its outputs: {', '.join(sorted(signature.outputs))}"
        )
    clash = sorted(set(outputs) & set(config.keep))
    if clash:
        raise BeamscoreError(
            f"--keep column(s) {', '.join(clash)} have the name of signature outputs; "
            "choose other outputs with --outputs"
        )
    if config.output_format == "npy":
        _check_npy_columns(columns, config.keep, files[0])
    units = plan_units(source, files)
    sink = sink_for(
        config.output_format,
        config.output,
        compression=config.output_compression,
        compression_level=config.output_compression_level,
    )
    _check_output_names(config.output, sink, outputs, config.keep)
    batch_size = config.batch_size or _default_batch_size(bindings)
    return Plan(
        config=config,
        model=info,
        spec=ModelSpec(
            path=info.path,
            tags=config.tag_set,
            fingerprint=info.fingerprint,
            copies=config.model_copies or 0,
            jit_compile=config.jit_compile,
            fixed_batch=batch_size if config.jit_compile else None,
        ),
        signature=signature,
        bindings=bindings,
        outputs=outputs,
        files=files,
        units=units,
        source=source,
        sink=sink,
        batch_size=batch_size,
        started=started,
    )


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
