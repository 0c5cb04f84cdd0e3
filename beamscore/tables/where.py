"""``--where`` on a table's partition columns: ``date = '2026-12-01' AND country IN ('JP', 'US')``.

Parsed by a small grammar, never evaluated as code: conditions ``COLUMN OP VALUE`` joined
by ``AND``, where ``OP`` is ``=``, ``!=``, ``<>``, ``<``, ``<=``, ``>``, ``>=`` or ``IN (...)``
and a value is a quoted string (``''`` is a quote), a number, ``true`` or ``false``. Only
partition columns may be named, so that every row of a kept file matches: the files are
pruned from the table's metadata (its log or manifests), no directory is listed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from beamscore.errors import BeamscoreError
from beamscore.wording import flag

__all__ = ["Condition", "check_columns", "matches", "parse_where"]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<op><=|>=|<>|!=|==|=|<|>)"
    r"|(?P<punct>[(),])|(?P<name>[A-Za-z_][A-Za-z0-9_.]*|\"[^\"]+\"|`[^`]+`))"
)


@dataclass(frozen=True)
class Condition:
    """``column op values`` (``values`` has one item except for ``IN``)."""

    column: str
    op: str
    values: tuple[Any, ...]


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise BeamscoreError(f"{flag('where')} {text!r}: cannot read it at {text[pos : pos + 20]!r}; {_FORM}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "str":
            out.append(("value", value[1:-1].replace("''", "'")))
        elif kind == "num":
            out.append(("value", float(value) if any(c in value for c in ".eE") else int(value)))
        elif kind == "name":
            low = value.lower()
            if low in ("and", "in"):
                out.append((low, low))
            elif low in ("true", "false"):
                out.append(("value", low == "true"))
            else:
                out.append(("name", value.strip('"`')))
        else:
            out.append((kind, "=" if value == "==" else "!=" if value == "<>" else value))
    return out


_FORM = "write COLUMN = 'VALUE' (=, !=, <, <=, >, >=, IN ('A', 'B')), joined by AND"


def parse_where(text: str) -> list[Condition]:
    """The conditions of ``text``; one line naming what cannot be read otherwise."""
    tokens = _tokens(text)
    conditions: list[Condition] = []
    i = 0

    def need(kind: str) -> Any:
        nonlocal i
        if i >= len(tokens) or tokens[i][0] != kind:
            got = tokens[i][1] if i < len(tokens) else "the end"
            raise BeamscoreError(f"{flag('where')} {text!r}: expected {kind} at {got!r}; {_FORM}")
        i += 1
        return tokens[i - 1][1]

    while True:
        column = need("name")
        if i < len(tokens) and tokens[i][0] == "in":
            i += 1
            need("punct")
            values = [need("value")]
            while i < len(tokens) and tokens[i] == ("punct", ","):
                i += 1
                values.append(need("value"))
            if need("punct") != ")":
                raise BeamscoreError(f"{flag('where')} {text!r}: IN (...) not closed; {_FORM}")
            conditions.append(Condition(column, "in", tuple(values)))
        else:
            op = need("op")
            conditions.append(Condition(column, op, (need("value"),)))
        if i == len(tokens):
            return conditions
        need("and")


def check_columns(conditions: Sequence[Condition], partitions: Mapping[str, pa.DataType], table: str) -> None:
    """Refuse a condition on a column that is not one of the table's partition columns."""
    for c in conditions:
        if c.column not in partitions:
            have = ", ".join(partitions) or "none"
            raise BeamscoreError(
                f"{flag('where')}: {c.column!r} is not a partition column of {table} (partition columns: {have}); "
                "--where prunes whole files by partition, so it names only those"
            )


def _typed(value: Any, type_: pa.DataType, column: str) -> Any:
    """A literal as a value of the column's type (``'2026-12-01'`` for a date column)."""
    try:
        return pa.scalar(value).cast(type_).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise BeamscoreError(
            f"{flag('where')}: {value!r} is no value of partition column {column!r} ({type_})"
        ) from None


def matches(values: Mapping[str, Any], conditions: Sequence[Condition], types: Mapping[str, pa.DataType]) -> bool:
    """Whether a file whose partition values are ``values`` holds rows ``conditions`` keep
    (a null partition value matches no condition, as in SQL)."""
    for c in conditions:
        have = values.get(c.column)
        if have is None:
            return False
        want = [_typed(v, types[c.column], c.column) for v in c.values]
        if c.op == "in":
            ok = have in want
        else:
            ok = bool(
                pc.call_function(
                    {
                        "=": "equal",
                        "!=": "not_equal",
                        "<": "less",
                        "<=": "less_equal",
                        ">": "greater",
                        ">=": "greater_equal",
                    }[c.op],
                    [pa.scalar(have, types[c.column]), pa.scalar(want[0], types[c.column])],
                ).as_py()
            )
        if not ok:
            return False
    return True
