"""Explicit keyword parameters, and a misspelt one refused with its likely name.

Public constructors and :func:`beamscore.score` declare every keyword they take, so that
mypy, pyright and editors flag ``SignatureModelHandler(m, kep=["id"])`` before anything
runs. At run time Python's own message (``got an unexpected keyword argument 'kep'``) names
no alternative; :func:`strict_keywords` wraps a function so that an unknown keyword is a
:class:`KeywordError` (a ``TypeError``, as Python raises, and a
:class:`~beamscore.errors.BeamscoreError`, so the CLI-style one-line handling applies) that
says which keyword was probably meant. The wrapper keeps the function's type for checkers.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from beamscore.errors import BeamscoreError

__all__ = ["KeywordError", "keyword_names", "strict_keywords", "strict_keywords_with", "unknown_keywords"]

F = TypeVar("F", bound=Callable[..., Any])


class KeywordError(BeamscoreError, TypeError):
    """A keyword argument the callee does not take (``TypeError``, as Python's own)."""


def keyword_names(fn: Callable[..., Any]) -> list[str]:
    """The names ``fn`` takes as keywords (``self`` and ``*args``/``**kwargs`` left out)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n != "self"]


def unknown_keywords(
    callee: str, unknown: Iterable[str], known: Iterable[str], hints: Mapping[str, str] | None = None
) -> str:
    """One line: each unknown keyword with the likely one (``hints`` give fixed advice for
    names that are no misspelling, such as ``pipeline_args``), then the valid ones."""
    names = sorted(known)
    said = []
    for name in unknown:
        if hints and name in hints:
            said.append(f"{name} ({hints[name]})")
            continue
        close = difflib.get_close_matches(name, names, n=1)
        said.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return f"{callee}() got unknown keyword argument(s) {', '.join(said)}; it takes: {', '.join(names)}"


def strict_keywords(fn: F) -> F:
    """``fn`` unchanged for type checkers; at run time an unknown keyword is a
    :class:`KeywordError` naming the keyword it probably meant (checked before ``fn`` runs)."""
    return _strict(fn, {})


def strict_keywords_with(hints: Mapping[str, str]) -> Callable[[F], F]:
    """:func:`strict_keywords` with fixed advice for some names (``pipeline_args``: where
    Beam flags go)."""
    return lambda fn: _strict(fn, hints)


def _strict(fn: F, hints: Mapping[str, str]) -> F:
    known = frozenset(keyword_names(fn))
    callee = fn.__qualname__.removesuffix(".__init__")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not known.issuperset(kwargs):
            raise KeywordError(unknown_keywords(callee, [k for k in kwargs if k not in known], known, hints))
        return fn(*args, **kwargs)

    return cast(F, wrapper)
