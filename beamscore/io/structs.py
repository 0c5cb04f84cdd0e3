"""Fields of struct columns as columns of their own: ``features.x`` names field ``x`` of the
struct column ``features``.

BigQuery and Spark exports, and pandas frames of dicts, nest the features a model takes in
struct columns. Each field of a struct (at any depth) is offered as a column named by its
dotted path, for signature inputs (by name or ``--map x=features.x``) and ``--keep`` alike;
a column whose own name has a dot in it wins over a field path that spells the same. A row
whose struct is null has a null field, so it is a dead letter like any other null row.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["field_path", "field_types", "read_field", "with_fields"]


def field_types(schema: pa.Schema) -> dict[str, pa.DataType]:
    """Dotted path -> type of every field of every struct column of ``schema``, at any depth."""
    out: dict[str, pa.DataType] = {}
    for field in schema:
        _walk(field.name, field.type, out)
    return out


def _walk(prefix: str, type_: pa.DataType, out: dict[str, pa.DataType]) -> None:
    if pa.types.is_struct(type_):
        for child in type_:  # a StructType iterates over its fields
            name = f"{prefix}.{child.name}"
            out[name] = child.type
            _walk(name, child.type, out)


def field_path(schema: pa.Schema, name: str) -> list[str] | None:
    """``["features", "x"]`` for ``features.x`` when that is a field of a struct column of
    ``schema``; ``None`` when it is not (a plain column's name is not a path)."""
    return _path(list(schema), name, top=True)


def _path(fields: list[pa.Field], name: str, top: bool = False) -> list[str] | None:
    for field in fields:
        if not top and name == field.name:
            return [field.name]
        if name.startswith(field.name + ".") and pa.types.is_struct(field.type):
            rest = _path(list(field.type), name[len(field.name) + 1 :])
            if rest is not None:
                return [field.name, *rest]
    return None


def read_field(table: pa.Table, path: list[str]) -> pa.ChunkedArray:
    """The field at ``path`` (``["features", "x"]``) of ``table``'s struct column ``path[0]``;
    null where the struct (or a struct between) is null."""
    return pc.struct_field(table[path[0]], path[1:])


def with_fields(table: pa.Table, names: Iterable[str]) -> pa.Table:
    """``table`` with a column for each of ``names`` that is a struct field path, not a column."""
    for name in names:
        if name not in table.column_names:
            path = field_path(table.schema, name)
            if path is not None:
                table = table.append_column(name, read_field(table, path))
    return table
