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
import re
from dataclasses import dataclass, field
from typing import Any

from beamscore.errors import BeamscoreError, TryLater
from beamscore.wording import flag

__all__ = [
    "FIELD_TYPES",
    "INPUT_FORMATS",
    "MAX_CONFIG_BYTES",
    "MODEL_KEYS",
    "MODEL_NAME",
    "OUTPUT_FORMATS",
    "PATH_KEYS",
    "SECTIONS",
    "ScoreConfig",
    "load_yaml",
    "model_configs",
]

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
        "allow_ops": "allow_ops",
        "route_by": "route_by",
        "max_models_per_worker": "max_models_per_worker",
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
        "table_version": "table_version",
        "table_as_of": "table_as_of",
        "where": "where",
        "raw_files": "raw_files",
        "allow_empty": "allow_empty",
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

#: the keys of one model of a ``models:`` mapping (several models over one read): key -> ScoreConfig field
MODEL_KEYS: dict[str, str] = {
    "path": "model",
    "signature": "signature",
    "tag_set": "tag_set",
    "model_version": "version",
    "version": "version",
    "map": "map",
    "outputs": "outputs",
    "cast": "cast",
}
#: what a model's name may be: it prefixes its output columns (``NAME__output``)
MODEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: what a routed model's name may be: a value of the ``--route-by`` column (not a column prefix)
ROUTE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

#: the config keys that hold paths, resolved against the config file's directory: field -> key
#: the input formats ``--format`` takes (one source each, beamscore.io.SOURCES); the only ones a hint names
INPUT_FORMATS = ("parquet", "tfrecord", "npz", "npy", "feather", "orc")
#: the output formats ``--output-format`` takes (one sink each, beamscore.io.SINKS)
OUTPUT_FORMATS = ("parquet", "npy", "delta")

PATH_KEYS = {"model": "model.path", "inputs": "input.paths", "output": "output.path"}


@dataclass
class ScoreConfig:
    """Everything ``beamscore score`` needs; see ``configs/local.yaml`` for a commented copy."""

    model: str = ""
    inputs: list[str] = field(default_factory=list)
    output: str = ""
    signature: str = "serving_default"
    #: ``None``: the model's only tag set, else ``serve`` (as ``beamscore run`` picks it)
    tag_set: str | None = None
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
    #: ``--allow-ops``: op types the model may use although the op scan flags them
    #: (:mod:`beamscore.model.scan`): file, Python, process and printing ops
    allow_ops: list[str] = field(default_factory=list)
    pipeline_options: dict[str, Any] = field(default_factory=dict)
    #: None: the workers plan the files when there are more than PLAN_ON_WORKERS_ABOVE
    plan_on_workers: bool | None = None
    #: ``--allow-empty``: inputs that hold no rows are scored (an empty result, exit 0) rather
    #: than refused with exit 75 (an upstream partition that has not landed yet)
    allow_empty: bool = False
    #: ``--date``: the day filled into ``{date}`` and ``%Y``-style fields of the input and
    #: output paths (``YYYY-MM-DD``, ``today``, ``yesterday``; default today in UTC)
    date: Any = None
    #: ``--table-version``: a Delta table's version or an Iceberg table's snapshot id to read
    #: (default: the latest; :mod:`beamscore.tables`)
    table_version: int | None = None
    #: ``--table-as-of``: read the table as it was at this ISO 8601 time
    table_as_of: str | None = None
    #: ``--where``: conditions on the input table's partition columns (``{date}`` filled)
    where: str | None = None
    #: ``--raw-files``: read files inside a table as plain files, on purpose
    raw_files: bool = False
    #: several models over one read (``--model NAME=PATH`` repeated, or a config's ``models:``):
    #: name -> {``path``, and optionally ``signature``, ``tag_set``, ``version``, ``map``,
    #: ``outputs``, ``cast``}; a key left out takes the job's value. Empty: one unnamed model
    #: (``model``), today's job. See :func:`model_configs`.
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``--route-by COLUMN``: each row is scored only by the model its value names (``models``
    #: named by the values; ``default`` takes the rows whose value names none)
    route_by: str | None = None
    #: ``--max-models-per-worker K``: routed models loaded at once per worker (least recently
    #: used released); ``None``: no bound
    max_models_per_worker: int | None = None
    #: where path fields came from when a config file gave them: field -> ``model.path 'm' in
    #: FILE`` (refusals name the key and the path it resolved to)
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def check_models(self) -> None:
        """Check ``models`` (names, paths, keys), as :meth:`validate` does first; ``show``
        checks only this, since it needs no inputs or output."""
        if self.models:
            _check_models(self.models, self.model, routed=bool(self.route_by))

    def validate(self) -> ScoreConfig:
        """Check the required fields and value ranges; return self."""
        self.check_models()
        if self.route_by is not None and (not isinstance(self.route_by, str) or not self.models):
            raise BeamscoreError(
                f"{flag('route_by')} needs the models it routes to, each as --model VALUE=PATH (a config's models:)"
            )
        if self.max_models_per_worker is not None:
            k = self.max_models_per_worker
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise BeamscoreError(f"{flag('max_models_per_worker')} must be a whole number of at least 1, got {k!r}")
            if not self.route_by:
                raise BeamscoreError(f"{flag('max_models_per_worker')} bounds routed models; give {flag('route_by')}")
        missing = [
            flag(name)
            for name, value in (
                ("model", self.model or self.models),
                ("inputs", self.inputs),
                ("output", self.output),
            )
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
        if self.output_format not in OUTPUT_FORMATS:
            raise BeamscoreError(
                f"{flag('output_format')} {self.output_format!r} is not supported; choose {', '.join(OUTPUT_FORMATS)}"
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
        if not isinstance(self.allow_ops, list):
            raise BeamscoreError(f"{flag('allow_ops')} must be op names, got {self.allow_ops!r}")
        from beamscore.model.scan import check_allow_ops

        check_allow_ops(self.allow_ops, flag("allow_ops"))
        if self.plan_on_workers is not None and not isinstance(self.plan_on_workers, bool):
            raise BeamscoreError(f"input.plan_on_workers must be true or false, got {self.plan_on_workers!r}")
        clash = sorted(set(self.keep) & set(self.outputs))
        if clash:
            raise BeamscoreError(
                f"{flag('keep')} column(s) {', '.join(clash)} clash with {flag('outputs')} of the same name"
            )
        version = self.table_version
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
            raise BeamscoreError(f"{flag('table_version')} must be a whole number of at least 0, got {version!r}")
        if version is not None and self.table_as_of is not None:
            raise BeamscoreError(f"give {flag('table_version')} or {flag('table_as_of')}, not both")
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
            where=None if self.where is None else fill_date(self.where, day, flag("where")),
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
                    raise TryLater(f"{origin} resolves to {pattern}, which matches no files ({where})")

    def merged(self, overrides: dict[str, Any]) -> ScoreConfig:
        """A copy with every non-``None`` override applied (flags over the file)."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if "pipeline_options" in values:
            values["pipeline_options"] = {**self.pipeline_options, **values["pipeline_options"]}
        if self.origins and "origins" not in values:  # a flag's path is not the config file's
            values["origins"] = {k: v for k, v in self.origins.items() if k not in values}
        return dataclasses.replace(self, **values)


def _check_models(models: Any, model: str, routed: bool = False) -> None:
    """Several models: each named (``NAME`` prefixes its output columns), each with a path and
    only the keys of :data:`MODEL_KEYS`; not together with one unnamed model."""
    if not isinstance(models, dict):
        raise BeamscoreError(f"models must be a mapping of NAME to a model, got {models!r}")
    if model:
        raise BeamscoreError(
            f"give the model once: either one unnamed {flag('model')} PATH, or several as NAME=PATH (got {model!r} "
            f"and {', '.join(models)})"
        )
    for name, spec in models.items():
        if routed and isinstance(name, str) and ROUTE_VALUE.fullmatch(name):
            pass  # a value of the route column: it names no column
        elif not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or "__" in name:
            raise BeamscoreError(
                f"model name {name!r}: a name is a letter then letters, digits or single underscores (at most 64); "
                "it prefixes the model's output columns as NAME__output"
            )
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or not spec["path"]:
            raise BeamscoreError(f"model {name!r} needs a path (models.{name}.path, or --model {name}=PATH)")
        unknown = sorted(set(spec) - set(MODEL_KEYS))
        if unknown:
            keys = ", ".join(k for k in MODEL_KEYS if k != "version")
            raise BeamscoreError(f"unknown key models.{name}.{unknown[0]}; keys of a model: {keys}")
        for key, value in spec.items():
            kind = FIELD_TYPES.get(MODEL_KEYS[key], "")
            if value is not None and not _fits(value, kind):
                raise BeamscoreError(f"models.{name}.{key} must be {kind}, got {_describe(value)}")


def model_configs(config: ScoreConfig) -> list[tuple[str, ScoreConfig]]:
    """The job's models, in order, each as ``(name, config)``: the config the one-model job
    of that model would have (``model``, ``signature``, ``tag_set``, ``version``, ``map``,
    ``outputs``, ``cast`` from the model where it gives them, else the job's). One unnamed
    model (no ``models``) is ``[("", config)]``: today's job."""
    if not config.models:
        return [("", config)]
    found = []
    for name, spec in config.models.items():
        values: dict[str, Any] = {"models": {}}
        for key, value in spec.items():
            if value is not None:
                values[MODEL_KEYS[key]] = [value] if key == "outputs" and isinstance(value, str) else value
        found.append((name, dataclasses.replace(config, **values)))
    return found


def _local(path: str) -> bool:
    """Whether ``path`` is on the local disk (a plain path or a ``file://`` URL)."""
    return "://" not in path or path.startswith(("file://", "local://"))


def _local_path(path: str) -> str:
    return path.split("://", 1)[1] if "://" in path else path


def _config_dir(path: str) -> str:
    """The directory of a config file, which its relative paths are relative to."""
    return path.rsplit("/", 1)[0] if "://" in path else os.path.dirname(os.path.abspath(path))


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
    "allow_ops": _STRS,
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
    "table_version": _INT,
    "table_as_of": _STR,
    "where": _STR,
    "raw_files": _BOOL,
    "allow_empty": _BOOL,
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
    "route_by": _STR,
    "max_models_per_worker": _INT,
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
        if section == "models":
            if not isinstance(body, dict) or not body:
                raise BeamscoreError(f"{path}: models must be a mapping of NAME to a model (path, signature, ...)")
            models = {}
            for name, spec in body.items():
                if isinstance(spec, str):  # NAME: PATH
                    spec = {"path": spec}
                if not isinstance(spec, dict):
                    raise BeamscoreError(f"{path}: models.{name} must be a path or a mapping with a path")
                spec = dict(spec)
                if isinstance(spec.get("path"), str):
                    spec["path"] = _resolve(spec["path"], _config_dir(path))
                models[str(name)] = spec
            values["models"] = models  # checked by validate(), which knows route_by
            continue
        if section not in SECTIONS:
            raise BeamscoreError(
                f"{path}: unknown section {section!r}; sections: {', '.join([*SECTIONS, 'models', 'pipeline_options'])}"
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
    for name in ("inputs", "imports", "keep", "outputs", "allow_ops"):
        if isinstance(values.get(name), str):
            values[name] = [values[name]]
    base = _config_dir(path)
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
