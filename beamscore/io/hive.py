"""Hive-style partition directories: ``date=2026-11-25/region=eu/part-0.parquet``.

Spark, pyarrow.dataset and duckdb write a table's partition keys into directory names
instead of the files. Each ``KEY=VALUE`` directory segment of an input file's path is a
column ``KEY`` whose value is the same for every row of that file, so ``--keep`` can name
it. Types follow pyarrow.dataset's hive partitioning: a key is ``int32`` when every value
it takes in the job's files parses as a 32-bit integer, ``int64`` when they are integers
and one overflows int32 (pyarrow would make them strings, which no integer input takes, even
with ``--cast``), otherwise ``string``; values are
URI-decoded (``us%2Fw`` is ``us/w``) and ``__HIVE_DEFAULT_PARTITION__`` (Spark's null), or
a key missing from a file's path, is null. A column stored in the file itself wins over a
partition key of the same name.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence

import pyarrow as pa

__all__ = ["HIVE_NULL", "infer_partitions", "partition_arrays", "partition_values"]

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_SEGMENT = re.compile(r"^([^=]+)=(.*)$")
_INT = re.compile(r"^[+-]?\d+$")


def partition_values(path: str) -> dict[str, str | None]:
    """``KEY -> VALUE`` of the ``KEY=VALUE`` directory segments of ``path``, outermost first."""
    directories = path.split("://", 1)[-1].split("/")[:-1]
    out: dict[str, str | None] = {}
    for segment in directories:
        match = _SEGMENT.match(segment)
        if match:
            value = urllib.parse.unquote(match.group(2))
            out[urllib.parse.unquote(match.group(1))] = None if value == HIVE_NULL else value
    return out


def infer_partitions(files: Sequence[str]) -> dict[str, pa.DataType]:
    """The partition columns of a job and their types (``int32``, ``int64`` or ``string``, see above)."""
    seen: dict[str, list[str]] = {}
    for path in files:
        for key, value in partition_values(path).items():
            seen.setdefault(key, [])
            if value is not None:
                seen[key].append(value)
    return {key: _key_type(values) for key, values in seen.items()}


def _key_type(values: list[str]) -> pa.DataType:
    if not values or not all(_INT.match(v) for v in values):
        return pa.string()
    numbers = [int(v) for v in values]
    if all(-(2**31) <= n < 2**31 for n in numbers):
        return pa.int32()
    return pa.int64() if all(-(2**63) <= n < 2**63 for n in numbers) else pa.string()


def partition_arrays(path: str, partitions: dict[str, pa.DataType], rows: int) -> dict[str, pa.Array]:
    """One constant column per partition key for a batch of ``rows`` rows of ``path``."""
    if not partitions:  # no keys: the path is not parsed (a cost per file of a pack of small files)
        return {}
    values = partition_values(path)
    out = {}
    for key, type_ in partitions.items():
        value = values.get(key)
        typed = None if value is None else int(value) if pa.types.is_integer(type_) else value
        scalar = pa.scalar(typed, type=type_)
        out[key] = pa.repeat(scalar, rows)
    return out
