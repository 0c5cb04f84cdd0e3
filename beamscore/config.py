"""The scoring job's configuration: one validated object from a YAML file plus CLI flags.

YAML sections are ``model``, ``input``, ``output``, ``batch`` and ``pipeline_options``;
their keys have the names of the CLI flags (``tag_set`` for ``--tag-set``). Flags override
the file. ``pipeline_options`` pass through to Beam untouched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from beamscore.errors import BeamscoreError
from beamscore.wording import flag

__all__ = ["SECTIONS", "ScoreConfig", "load_yaml"]

# section -> {yaml key: ScoreConfig field}
SECTIONS: dict[str, dict[str, str]] = {
    "model": {
        "path": "model",
        "signature": "signature",
        "tag_set": "tag_set",
        "version": "version",
        "copies": "model_copies",
        "jit_compile": "jit_compile",
        "imports": "imports",
    },
    "input": {
        "paths": "inputs",
        "format": "format",
        "map": "map",
        "keep": "keep",
        "cast": "cast",
        "rows_per_unit": "rows_per_unit",
        "compression": "compression",
        "pad": "pad",
        "allow_pickle": "allow_pickle",
        "reject_nan": "reject_nan",
        "plan_on_workers": "plan_on_workers",
    },
    "output": {
        "path": "output",
        "format": "output_format",
        "compression": "output_compression",
        "compression_level": "output_compression_level",
        "outputs": "outputs",
        "overwrite": "overwrite",
        "force": "force",
        "resume": "resume",
        "max_failed_rows": "max_failed_rows",
        "max_failed_fraction": "max_failed_fraction",
    },
    "batch": {"size": "batch_size"},
}


@dataclass
class ScoreConfig:
    """Everything ``beamscore score`` needs; see ``configs/local.yaml`` for a commented copy."""

    model: str = ""
    inputs: list[str] = field(default_factory=list)
    output: str = ""
    signature: str = "serving_default"
    tag_set: str = "serve"
    version: int | None = None
    format: str | None = None
    map: dict[str, str] = field(default_factory=dict)
    keep: list[str] = field(default_factory=list)
    cast: bool = False
    rows_per_unit: int | None = None
    compression: str | None = None
    pad: dict[str, Any] = field(default_factory=dict)
    allow_pickle: bool = False
    outputs: list[str] = field(default_factory=list)
    output_format: str = "parquet"
    output_compression: str | None = None
    output_compression_level: int | None = None
    overwrite: bool = False
    force: bool = False
    resume: bool = False
    reject_nan: bool = False
    max_failed_rows: int | None = None
    max_failed_fraction: float | None = None
    batch_size: int | None = None
    model_copies: int | None = None
    jit_compile: bool = False
    #: ``--import``: modules imported before the model loads (custom op libraries).
    imports: list[str] = field(default_factory=list)
    pipeline_options: dict[str, Any] = field(default_factory=dict)
    #: None: the workers plan the files when there are more than PLAN_ON_WORKERS_ABOVE
    plan_on_workers: bool | None = None

    def validate(self) -> ScoreConfig:
        """Check the required fields and value ranges; return self."""
        missing = [
            flag(name)
            for name, value in (("model", self.model), ("inputs", self.inputs), ("output", self.output))
            if not value
        ]
        if missing:
            raise BeamscoreError(f"missing {', '.join(missing)} (give it as a flag or in --config)")
        for name, value in (
            ("batch_size", self.batch_size),
            ("rows_per_unit", self.rows_per_unit),
            ("model_copies", self.model_copies),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise BeamscoreError(f"{flag(name)} must be a whole number of at least 1, got {value!r}")
        if self.output_format not in ("parquet", "npy"):
            raise BeamscoreError(
                f"{flag('output_format')} {self.output_format!r} is not supported; choose parquet or npy"
            )
        if self.max_failed_rows is not None and (not isinstance(self.max_failed_rows, int) or self.max_failed_rows < 0):
            raise BeamscoreError(
                f"{flag('max_failed_rows')} must be a whole number of at least 0, got {self.max_failed_rows!r}"
            )
        fraction = self.max_failed_fraction
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1
        ):
            raise BeamscoreError(f"{flag('max_failed_fraction')} must be a number from 0 to 1, got {fraction!r}")
        if not isinstance(self.imports, list) or not all(isinstance(m, str) and m for m in self.imports):
            raise BeamscoreError(f"--import / model.imports must be module names, got {self.imports!r}")
        if self.plan_on_workers is not None and not isinstance(self.plan_on_workers, bool):
            raise BeamscoreError(f"input.plan_on_workers must be true or false, got {self.plan_on_workers!r}")
        clash = sorted(set(self.keep) & set(self.outputs))
        if clash:
            raise BeamscoreError(
                f"{flag('keep')} column(s) {', '.join(clash)} clash with {flag('outputs')} of the same name"
            )
        return self

    def merged(self, overrides: dict[str, Any]) -> ScoreConfig:
        """A copy with every non-``None`` override applied (flags over the file)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "pipeline_options" in values:
            values["pipeline_options"] = {**self.pipeline_options, **values["pipeline_options"]}
        return dataclasses.replace(self, **values)


def load_yaml(path: str) -> ScoreConfig:
    """Read a YAML job config; unknown sections or keys are errors that list the valid ones."""
    import yaml

    from beamscore import fs as bfs

    fs, local = bfs.filesystem(path)
    if not fs.exists(local):
        raise BeamscoreError(f"config file {path!r} does not exist")
    with fs.open(local, "r") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise BeamscoreError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise BeamscoreError(f"{path}: expected a mapping with sections {', '.join([*SECTIONS, 'pipeline_options'])}")
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section == "pipeline_options":
            if not isinstance(body, dict):
                raise BeamscoreError(f"{path}: pipeline_options must be a mapping")
            values["pipeline_options"] = dict(body)
            continue
        if section not in SECTIONS:
            raise BeamscoreError(
                f"{path}: unknown section {section!r}; sections: {', '.join([*SECTIONS, 'pipeline_options'])}"
            )
        if not isinstance(body, dict):
            raise BeamscoreError(f"{path}: section {section!r} must be a mapping")
        for key, value in body.items():
            if key not in SECTIONS[section]:
                raise BeamscoreError(
                    f"{path}: unknown key {section}.{key}; keys of {section}: {', '.join(SECTIONS[section])}"
                )
            values[SECTIONS[section][key]] = value
    if isinstance(values.get("inputs"), str):
        values["inputs"] = [values["inputs"]]
    if isinstance(values.get("imports"), str):
        values["imports"] = [values["imports"]]
    try:
        return ScoreConfig(**values)
    except TypeError as exc:
        raise BeamscoreError(f"{path}: {exc}") from None
