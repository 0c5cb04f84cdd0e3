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
from beamscore.wording import flag

__all__ = ["FIELD_TYPES", "MAX_CONFIG_BYTES", "PATH_KEYS", "SECTIONS", "ScoreConfig", "load_yaml"]

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
        "trial": "trial",
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
    "batch": {"size": "batch_size", "multiple": "batch_multiple"},
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
    #: ``--batch-multiple``: every signature call padded to a multiple of this many rows (a
    #: shape rule such as jax2tf's ``(2*b, 8)``); found by itself when a row fails alone
    batch_multiple: int | None = None
    #: ``--no-trial`` sets it False: no trial call of the signature on the launcher
    trial: bool = True
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
            flag(name)
            for name, value in (("model", self.model), ("inputs", self.inputs), ("output", self.output))
            if not value
        ]
        if missing:
            raise BeamscoreError(f"missing {', '.join(missing)} (give it as a flag or in --config)")
        for name, value in (
            ("batch_size", self.batch_size),
            ("batch_multiple", self.batch_multiple),
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


#: the longest job config read (a config is a page of settings; more is a mistake or an attack)
MAX_CONFIG_BYTES = 1 << 20

_STR, _INT, _BOOL, _NUMBER, _STRS, _STR_MAP, _PAD_MAP = (
    "a string",
    "a whole number",
    "true or false",
    "a number",
    "a string or a list of strings",
    "a mapping of names to strings",
    "a mapping of names to LENGTH[:VALUE]",
)
#: what each ScoreConfig field read from YAML must be (checked before the config is built)
FIELD_TYPES: dict[str, str] = {
    "model": _STR,
    "signature": _STR,
    "tag_set": _STR,
    "version": _INT,
    "model_copies": _INT,
    "jit_compile": _BOOL,
    "imports": _STRS,
    "inputs": _STRS,
    "format": _STR,
    "map": _STR_MAP,
    "keep": _STRS,
    "cast": _BOOL,
    "rows_per_unit": _INT,
    "compression": _STR,
    "pad": _PAD_MAP,
    "allow_pickle": _BOOL,
    "reject_nan": _BOOL,
    "plan_on_workers": _BOOL,
    "output": _STR,
    "output_format": _STR,
    "output_compression": _STR,
    "output_compression_level": _INT,
    "outputs": _STRS,
    "overwrite": _BOOL,
    "force": _BOOL,
    "resume": _BOOL,
    "max_failed_rows": _INT,
    "max_failed_fraction": _NUMBER,
    "batch_size": _INT,
    "batch_multiple": _INT,
    "trial": _BOOL,
}


def _fits(value: Any, kind: str) -> bool:
    scalar = (str, int, float)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _STRS:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if kind == _STR_MAP:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if kind == _PAD_MAP:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, scalar) and not isinstance(v, bool) for k, v in value.items()
        )
    return True


def _option_fits(value: Any) -> bool:
    """A Beam option from YAML: a scalar or a list of scalars (what a flag can say)."""
    scalar = (str, int, float, bool)
    return (
        value is None
        or isinstance(value, scalar)
        or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))
    )


def _describe(value: Any) -> str:
    kind = {dict: "a mapping", list: "a list", bool: "a boolean", str: "a string", type(None): "empty"}.get(
        type(value), type(value).__name__
    )
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _safe_loader(path: str) -> type:
    """PyYAML's SafeLoader without aliases: ``*name`` can repeat a node without bound (a
    "billion laughs" config of a few lines grows to gigabytes), and no job config needs one."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise BeamscoreError(
                    f"{path}: line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed "
                    "in job configs; write the value out"
                )
            return super().compose_node(parent, index)

    return NoAliases


def load_yaml(path: str) -> ScoreConfig:
    """Read a YAML job config; unknown sections or keys are errors that list the valid ones,
    a value of the wrong type is one line naming its key, and aliases are refused."""
    import yaml

    from beamscore import fs as bfs

    fs, local = bfs.filesystem(path)
    if not fs.exists(local):
        raise BeamscoreError(f"config file {path!r} does not exist")
    with fs.open(local, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise BeamscoreError(f"{path}: a job config is at most {MAX_CONFIG_BYTES:,} bytes; this one is larger")
    try:
        data = yaml.load(raw, Loader=_safe_loader(path)) or {}
    except yaml.YAMLError as exc:
        raise BeamscoreError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise BeamscoreError(f"{path}: expected a mapping with sections {', '.join([*SECTIONS, 'pipeline_options'])}")
    values: dict[str, Any] = {}
    for section, body in data.items():
        if section == "pipeline_options":
            if not isinstance(body, dict):
                raise BeamscoreError(f"{path}: pipeline_options must be a mapping")
            for key, value in body.items():
                if not isinstance(key, str) or not _option_fits(value):
                    raise BeamscoreError(
                        f"{path}: pipeline_options.{key} must be a value or a list of values, got {_describe(value)}"
                    )
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
            name = SECTIONS[section][key]
            if value is not None and not _fits(value, FIELD_TYPES.get(name, "")):
                raise BeamscoreError(f"{path}: {section}.{key} must be {FIELD_TYPES[name]}, got {_describe(value)}")
            if value is not None:
                values[name] = value
    for name in ("inputs", "imports", "keep", "outputs"):
        if isinstance(values.get(name), str):
            values[name] = [values[name]]
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
