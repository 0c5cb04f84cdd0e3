"""Which command-line flag is whose: beamscore's own (in two spellings) or a Beam pipeline option.

``beamscore score`` takes its own flags and Beam's (``--runner``, ``--project``...) on one
command line. A flag that is neither is a typo, refused with the nearest name
(``--batch_sise``: "did you mean --batch-size?") before anything else happens.

Importing Apache Beam costs 1-3 s, and a typo should be reported in well under one, so the
CLI reads Beam's option names from Beam's own source, without importing it: the
``add_argument("--name", ...)`` calls of its options modules, parsed with :mod:`ast` (about
50 ms). The parse of the options after Beam is imported
(:func:`beamscore.pipelines.runners.launch_problems`) stays the authority: it also sees options
a module named by ``--import`` defines, and it checks config files and ``beamscore.score()``.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import os
from collections.abc import Iterable, Sequence

from beamscore.errors import BeamscoreError

__all__ = [
    "beam_options",
    "canonical",
    "register_score_flags",
    "score_flags",
    "split_beam_flags",
    "suggestion",
    "unknown_flag_error",
]

#: Beam's modules (under ``apache_beam/``) that define pipeline options a beamscore job may
#: use; the Dask module's options exist for Beam only once it is imported (FACTS.md), which
#: :func:`beamscore.pipelines.runners.pipeline_options` does when a Dask flag is given.
BEAM_OPTION_SOURCES = ("options/pipeline_options.py", "runners/dask/dask_runner.py")
_NO_VALUE_ACTIONS = ("store_true", "store_false", "store_const", "count", "help", "version")


#: ``beamscore score``'s own ``--flags``, as the CLI registers them when it builds its parser
_SCORE_FLAGS: list[str] = []


def register_score_flags(flags: Iterable[str]) -> None:
    """Record the CLI's ``score`` flags, so that layers below the CLI (the runner checks) can
    suggest them without importing it."""
    _SCORE_FLAGS[:] = list(dict.fromkeys(flags))


def score_flags() -> list[str]:
    """``beamscore score``'s own flags (for suggestions next to Beam's option names): those the
    CLI registered, else one per :class:`~beamscore.config.ScoreConfig` field."""
    if _SCORE_FLAGS:
        return list(_SCORE_FLAGS)
    import dataclasses

    from beamscore.config import ScoreConfig
    from beamscore.wording import CLI, flag

    return [flag(f.name, CLI) for f in dataclasses.fields(ScoreConfig) if f.name != "origins"]


def runner_key(name: str) -> str:
    """A runner name as Beam matches it, any case and ``Runner`` optional (``direct``,
    ``DirectRunner`` and ``directrunner`` are one runner); read without importing Beam."""
    return name.lower().removesuffix("runner")


@functools.cache
def beam_options() -> dict[str, bool] | None:
    """Beam's option names (without ``--``) -> whether the flag takes a value; ``None`` when
    Beam's source cannot be found or read (the check after Beam's import then decides)."""
    try:
        spec = importlib.util.find_spec("apache_beam")  # finds the package, imports nothing
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = next(iter(spec.submodule_search_locations))
    found: dict[str, bool] = {}
    try:
        for rel in BEAM_OPTION_SOURCES:
            path = os.path.join(root, *rel.split("/"))
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                    found.update(_option_names(node))
    except (OSError, SyntaxError, ValueError):
        return None
    return found or None


def _option_names(call: ast.Call) -> dict[str, bool]:
    action = next((k.value for k in call.keywords if k.arg == "action"), None)
    takes_value = not (isinstance(action, ast.Constant) and action.value in _NO_VALUE_ACTIONS)
    return {
        a.value[2:]: takes_value
        for a in call.args
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.startswith("--")
    }


def canonical(token: str, ours: Iterable[str]) -> str:
    """``--batch_size=5`` -> ``--batch-size=5`` when ``--batch-size`` is one of ``ours``
    (beamscore's flags take both spellings, as Beam's take the underscore one); any other
    token is returned unchanged."""
    if not token.startswith("--") or token == "--":
        return token
    name, sep, value = token.partition("=")
    hyphenated = "--" + name[2:].replace("_", "-")
    return f"{hyphenated}{sep}{value}" if hyphenated in set(ours) else token


def split_beam_flags(argv: Sequence[str], ours: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(beamscore's tokens, the other flags with their values)`` of a ``score`` command line.

    A flag that is not one of ``ours`` goes to the second list, and so does the token after it
    when the flag has no ``=value``, takes a value (Beam's boolean flags do not) and the token
    does not start with ``-``: Beam reads ``--project p`` as ``--project=p``. What is left
    (beamscore's flags, their values and ``MODEL``) is for argparse."""
    ours = set(ours)
    mine: list[str] = []
    other: list[str] = []
    i = 0
    while i < len(argv):
        token = canonical(argv[i], ours)
        i += 1
        name = token.partition("=")[0]
        if not token.startswith("--") or token == "--" or name in ours:
            mine.append(token)
            continue
        other.append(token)
        if "=" in token or not (beam_options() or {}).get(name[2:], True):  # read only when asked
            continue
        if i < len(argv) and not argv[i].startswith("-"):
            other.append(argv[i])
            i += 1
    return mine, other


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean --batch-size?"`` for the candidate nearest to ``name``, or ``""``.

    Names are compared with ``_`` and ``-`` alike, and the candidate is shown as given."""
    by_key = {c.lstrip("-").replace("_", "-"): c for c in candidates}
    close = difflib.get_close_matches(name.lstrip("-").replace("_", "-"), list(by_key), n=1, cutoff=0.6)
    return f"; did you mean {by_key[close[0]]}?" if close else ""


def unknown_flag_error(flags: Sequence[str], ours: Iterable[str], beam: bool = True) -> BeamscoreError | None:
    """The error for the first flag of ``flags`` that is neither one of ``ours`` nor (when
    ``beam``) a Beam option, or ``None`` when every flag is known (or Beam's names are not
    readable here: the parse after Beam's import decides then)."""
    if not any(token.startswith("--") for token in flags):
        return None  # no flag to check: Beam's option names are not read (a few hundredths of a second)
    known = beam_options() if beam else {}
    if known is None:
        return None
    for token in flags:
        if not token.startswith("--"):
            continue
        name = token.partition("=")[0]
        if name[2:] in known:
            continue
        candidates = [*ours, *(f"--{n}" for n in known)]
        what = "neither a beamscore flag nor a Beam pipeline option" if beam else "not a flag of this command"
        return BeamscoreError(f"unknown option {name} ({what}){suggestion(name, candidates)}")
    return None
