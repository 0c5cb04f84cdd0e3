"""Sources and sinks, one module per format, behind :mod:`beamscore.io.base`."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from beamscore.config import INPUT_FORMATS
from beamscore.errors import BeamscoreError
from beamscore.io.base import Sink, Source, UnitWriter, WorkUnit
from beamscore.io.detect import compressed_head, format_of
from beamscore.wording import flag

if TYPE_CHECKING:  # served lazily by __getattr__ (a job imports only its own formats' modules)
    from beamscore.io.arrow_files import FeatherSource, OrcSource
    from beamscore.io.delta_sink import DeltaSink
    from beamscore.io.npy import NpySource
    from beamscore.io.npy_sink import NpySink
    from beamscore.io.npz import NpzSource
    from beamscore.io.parquet import ParquetSource
    from beamscore.io.parquet_sink import ParquetSink
    from beamscore.io.tfrecord import TFRecordSource

__all__ = [
    "DeltaSink",
    "FeatherSource",
    "NpySink",
    "NpySource",
    "NpzSource",
    "OrcSource",
    "ParquetSink",
    "ParquetSource",
    "Sink",
    "Source",
    "TFRecordSource",
    "UnitWriter",
    "WorkUnit",
    "sink_for",
    "source_for",
]

#: where each source and sink class lives: its module is imported when the class is first
#: asked for, so that a Parquet job does not import the TFRecord, npz or Delta modules
_CLASSES = {
    "ParquetSource": "beamscore.io.parquet",
    "TFRecordSource": "beamscore.io.tfrecord",
    "NpzSource": "beamscore.io.npz",
    "NpySource": "beamscore.io.npy",
    "FeatherSource": "beamscore.io.arrow_files",
    "OrcSource": "beamscore.io.arrow_files",
    "ParquetSink": "beamscore.io.parquet_sink",
    "NpySink": "beamscore.io.npy_sink",
    "DeltaSink": "beamscore.io.delta_sink",
}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Registry(Mapping[str, Any]):
    """Format name -> class, each imported on first use."""

    def __init__(self, classes: dict[str, str]) -> None:
        self._classes = classes

    def __getitem__(self, fmt: str) -> Any:
        return __getattr__(self._classes[fmt])

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


SOURCES: Mapping[str, type[Source]] = _Registry(
    {
        "parquet": "ParquetSource",
        "tfrecord": "TFRecordSource",
        "npz": "NpzSource",
        "npy": "NpySource",
        "feather": "FeatherSource",
        "orc": "OrcSource",
    }
)
SINKS: Mapping[str, type[Sink]] = _Registry({"parquet": "ParquetSink", "npy": "NpySink", "delta": "DeltaSink"})


def source_for(fmt: str | None, example_path: str, rows_per_unit: int | None = None, **options: Any) -> Source:
    """The source for ``fmt``, or for the format of ``example_path`` (its name, else its
    first bytes: :mod:`beamscore.io.detect`) when ``fmt`` is None.

    ``rows_per_unit`` sets how finely big files are split into work units (formats that read
    whole files ignore it). ``options`` are format options (``compression``, ``pad``,
    ``allow_pickle``); one that is set but that the format does not take is an error."""
    if fmt is None:
        fmt = format_of(example_path)
        if fmt is None and compressed_head(example_path):
            raise BeamscoreError(
                f"{example_path}: a {compressed_head(example_path)}-compressed file with no TFRecord inside; only "
                f"TFRecord inputs are read compressed: decompress it (then {flag('format')} can name its format)"
            )
        if fmt is None:
            raise BeamscoreError(
                f"cannot tell the format of {example_path} from its name or its first bytes; "
                f"pass {flag('format')} ({', '.join(INPUT_FORMATS)})"
            )
    if fmt not in SOURCES:
        raise BeamscoreError(f"input format {fmt!r} is not supported; formats: {', '.join(INPUT_FORMATS)}")
    cls = SOURCES[fmt]
    given = {k: v for k, v in options.items() if v not in (None, False, {}, [])}
    if rows_per_unit and "rows_per_unit" in cls.options:
        given["rows_per_unit"] = rows_per_unit
    for name in given:
        if name not in cls.options:
            raise BeamscoreError(f"--{name.replace('_', '-')} does not apply to {fmt} input")
    return cls(**given)


def sink_for(fmt: str, output: str, **options: Any) -> Sink:
    """The sink for output format ``fmt`` writing under ``output``; ``options`` not given
    (``None``) are left to the sink, others must be among the sink's ``options``."""
    if fmt not in SINKS:
        raise BeamscoreError(f"output format {fmt!r} is not supported; formats: {', '.join(SINKS)}")
    cls = SINKS[fmt]
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name not in cls.options:
            raise BeamscoreError(f"--output-{name.replace('_', '-')} does not apply to {fmt} output")
    return cls(output, **given)
