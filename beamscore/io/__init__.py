"""Sources and sinks, one module per format, behind :mod:`beamscore.io.base`."""

from __future__ import annotations

from beamscore.errors import BeamscoreError
from beamscore.io.base import Sink, Source, UnitWriter, WorkUnit
from beamscore.io.npy_sink import NpySink
from beamscore.io.parquet import ParquetSource
from beamscore.io.parquet_sink import ParquetSink

__all__ = [
    "NpySink",
    "ParquetSink",
    "ParquetSource",
    "Sink",
    "Source",
    "UnitWriter",
    "WorkUnit",
    "sink_for",
    "source_for",
]

#: file suffix -> format name
SUFFIXES = {".parquet": "parquet", ".pq": "parquet"}
SOURCES: dict[str, type[Source]] = {"parquet": ParquetSource}
SINKS: dict[str, type[Sink]] = {"parquet": ParquetSink, "npy": NpySink}


def source_for(fmt: str | None, example_path: str, rows_per_unit: int | None = None) -> Source:
    """The source for ``fmt``, or for the suffix of ``example_path`` when ``fmt`` is None.

    ``rows_per_unit`` sets how finely big files are split into work units."""
    if fmt is None:
        for suffix, name in SUFFIXES.items():
            if example_path.endswith(suffix):
                fmt = name
                break
        else:
            raise BeamscoreError(
                f"cannot tell the format of {example_path} from its name; pass --format ({', '.join(SOURCES)})"
            )
    if fmt not in SOURCES:
        raise BeamscoreError(f"input format {fmt!r} is not supported; formats: {', '.join(SOURCES)}")
    return SOURCES[fmt](**({"rows_per_unit": rows_per_unit} if rows_per_unit else {}))


def sink_for(fmt: str, output: str) -> Sink:
    """The sink for output format ``fmt`` writing under ``output``."""
    if fmt not in SINKS:
        raise BeamscoreError(f"output format {fmt!r} is not supported; formats: {', '.join(SINKS)}")
    return SINKS[fmt](output)
