"""The scoring job's configuration: one validated object from a YAML file plus CLI flags.

YAML sections are ``model``, ``input``, ``output``, ``batch`` and ``pipeline_options``;
their keys have the names of the CLI flags (``tag_set`` for ``--tag-set``). Flags override
the file. ``pipeline_options`` pass through to Beam untouched.

A relative path in a config file (``model.path``, ``input.paths``, ``output.path``) is
relative to the directory of the config file, not to the working directory, so a config
works from wherever it is run; URLs (``gs://...``, ``file://...``) and absolute paths are
taken as they are. A flag's path is relative to the working directory, as usual.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from beamscore.errors import BeamscoreError

__all__ = ["PATH_KEYS", "SECTIONS", "ScoreConfig", "load_yaml"]

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

#: the config keys that hold paths, resolved against the config file's directory: field -> key
PATH_KEYS = {"model": "model.path", "inputs": "input.paths", "output": "output.path"}


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
    #: ``--date``: the day filled into ``{date}`` and ``%Y``-style fields of the input and
    #: output paths (``YYYY-MM-DD``, ``today``, ``yesterday``; default today in UTC)
    date: Any = None
    #: where path fields came from when a config file gave them: field -> ``model.path 'm' in
    #: FILE`` (refusals name the key and the path it resolved to)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def validate(self) -> ScoreConfig:
        """Check the required fields and value ranges; return self."""
        missing = [
            flag
            for flag, value in (("--model", self.model), ("--input", self.inputs), ("--output", self.output))
            if not value
        ]
        if missing:
            raise BeamscoreError(f"missing {', '.join(missing)} (give it as a flag or in --config)")
        for flag, value in (
            ("--batch-size", self.batch_size),
            ("--rows-per-unit", self.rows_per_unit),
            ("--model-copies", self.model_copies),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise BeamscoreError(f"{flag} must be a whole number of at least 1, got {value!r}")
        if self.output_format not in ("parquet", "npy"):
            raise BeamscoreError(f"--output-format {self.output_format!r} is not supported; choose parquet or npy")
        if self.max_failed_rows is not None and (not isinstance(self.max_failed_rows, int) or self.max_failed_rows < 0):
            raise BeamscoreError(
                f"--max-failed-rows must be a whole number of at least 0, got {self.max_failed_rows!r}"
            )
        fraction = self.max_failed_fraction
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1
        ):
            raise BeamscoreError(f"--max-failed-fraction must be a number from 0 to 1, got {fraction!r}")
        if not isinstance(self.imports, list) or not all(isinstance(m, str) and m for m in self.imports):
            raise BeamscoreError(f"--import / model.imports must be module names, got {self.imports!r}")
        if self.plan_on_workers is not None and not isinstance(self.plan_on_workers, bool):
            raise BeamscoreError(f"input.plan_on_workers must be true or false, got {self.plan_on_workers!r}")
        clash = sorted(set(self.keep) & set(self.outputs))
        if clash:
            raise BeamscoreError(f"--keep column(s) {', '.join(clash)} clash with --outputs of the same name")
        from beamscore.dates import parse_date

        parse_date(self.date)
        return self

    def with_date(self) -> ScoreConfig:
        """A copy whose ``--input`` and ``--output`` paths have the day of ``--date`` filled in
        (:func:`beamscore.dates.fill_date`) and whose ``date`` is that day as ``YYYY-MM-DD``."""
        from beamscore.dates import fill_date, parse_date

        day = parse_date(self.date)
        return dataclasses.replace(
            self,
            date=day.isoformat(),
            inputs=[fill_date(p, day, "--input") for p in self.inputs],
            output=fill_date(self.output, day, "--output"),
        )

    def check_config_paths(self) -> None:
        """Refuse a local model or input path that a config file gave and that does not exist,
        naming the key and the path it resolved to (it is relative to the config's directory,
        which may not be where the user looked)."""
        where = "a relative path in a config file is relative to the file's directory"
        model = self.origins.get("model")
        if model and _local(self.model) and not os.path.exists(_local_path(self.model)):
            raise BeamscoreError(f"{model} resolves to {self.model}, which does not exist ({where})")
        origin = self.origins.get("inputs")
        if origin:
            for pattern in self.inputs:
                path = _local_path(pattern)
                if _local(pattern) and not os.path.exists(path) and not glob.glob(path):
                    raise BeamscoreError(f"{origin} resolves to {pattern}, which matches no files ({where})")

    def merged(self, overrides: dict[str, Any]) -> ScoreConfig:
        """A copy with every non-``None`` override applied (flags over the file)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "pipeline_options" in values:
            values["pipeline_options"] = {**self.pipeline_options, **values["pipeline_options"]}
        if self.origins and "origins" not in values:  # a flag's path is not the config file's
            values["origins"] = {k: v for k, v in self.origins.items() if k not in values}
        return dataclasses.replace(self, **values)


def _local(path: str) -> bool:
    """Whether ``path`` is on the local disk (a plain path or a ``file://`` URL)."""
    return "://" not in path or path.startswith(("file://", "local://"))


def _local_path(path: str) -> str:
    return path.split("://", 1)[1] if "://" in path else path


def _resolve(path: Any, base: str) -> Any:
    """``path`` from a config file in directory ``base``: a relative local path joined to
    ``base``; a URL, an absolute path or anything not a string as it is."""
    if not isinstance(path, str) or not path or "://" in path:
        return path
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    if "://" in base:  # a config read from a URL: its relative paths are beside it there
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, path))}"
    return os.path.normpath(os.path.join(base, path))


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
    base = path.rsplit("/", 1)[0] if "://" in path else os.path.dirname(os.path.abspath(path))
    origins = {}
    for name, key in PATH_KEYS.items():
        if name in values:
            given = values[name]
            if isinstance(given, list):
                values[name] = [_resolve(p, base) for p in given]
            else:
                values[name] = _resolve(given, base)
            if values[name] != given:
                origins[name] = f"{path}: {key} {given!r}" if isinstance(given, str) else f"{path}: {key}"
    values["origins"] = origins
    try:
        return ScoreConfig(**values)
    except TypeError as exc:
        raise BeamscoreError(f"{path}: {exc}") from None
