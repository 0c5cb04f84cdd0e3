"""One check, two wordings: an option named as the caller knows it.

The same checks run under three front ends, and a message that suggests an option names it
in the caller's words: the CLI's flag (``--cast``), :func:`beamscore.score`'s keyword
(``cast=True``) or the Beam transforms' parameter (``RunSignature(..., cast=True)``). This
module is the one place that decides the wording: :data:`OPTIONS` holds each option's three
spellings, :func:`speaking` says which front end is talking (a context variable, so worker
threads and other callers in the same process keep their own), and :func:`option` words one
option for it. The default is the CLI's, whose messages came first.

:class:`~beamscore.transforms.run_signature.RunSignature`,
:class:`~beamscore.inference.SignatureModelHandler` and :func:`beamscore.score` speak
``"beam"`` and ``"score"``; their worker-side steps carry the front end they were built in.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = [
    "BEAM",
    "CLI",
    "FRONT_ENDS",
    "OPTIONS",
    "SCORE",
    "bare",
    "current",
    "flag",
    "names",
    "option",
    "pair",
    "speaking",
]

CLI, SCORE, BEAM = "cli", "score", "beam"
FRONT_ENDS = (CLI, SCORE, BEAM)

#: option -> its wording for the CLI, for ``beamscore.score(...)`` and for the Beam transforms
#: (``RunSignature`` / ``SignatureModelHandler``). ``{value}`` is filled by :func:`option`; an
#: empty Beam wording means the transforms have no such parameter, and the text says what to do.
OPTIONS: dict[str, tuple[str, str, str]] = {
    "cast": ("--cast", "cast=True", "cast=True"),
    "map": ("--map {value}", "map={{{value}}}", "input_map={{{value}}}"),
    "outputs": ("--outputs {value}", "outputs=[{value}]", "outputs=[{value}]"),
    "keep": ("--keep {value}", "keep=[{value}]", "keep=[{value}]"),
    "reject_nan": ("--reject-nan", "reject_nan=True", "reject_nan=True"),
    "pad": (
        "--pad {value}",
        "pad={{{value}}}",
        "a beam.Map before RunSignature that pads or truncates each row",
    ),
    "overwrite": ("--overwrite", "overwrite=True", "overwrite=True"),
    "force": ("--force", "force=True", "force=True"),
    "resume": ("--resume", "resume=True", "resume=True"),
    "max_failed_rows": ("--max-failed-rows {value}", "max_failed_rows={value}", "max_failed_rows={value}"),
    "max_failed_fraction": (
        "--max-failed-fraction {value}",
        "max_failed_fraction={value}",
        "max_failed_fraction={value}",
    ),
    "import": ("--import {value}", "imports=[{value}]", "imports=[{value}]"),
    "allow_ops": (
        "--allow-ops {value}",
        "allow_ops=[{value}]",
        "a model you trust: the transforms do not scan it (beamscore scan MODEL lists its ops)",
    ),
    "jit_compile": ("--jit-compile", "jit_compile=True", "jit_compile=True"),
    "signature": ("--signature", "signature=", "signature="),
    "batch_size": ("--batch-size", "batch_size=", "batch_size="),
    "batch_multiple": ("--batch-multiple {value}", "batch_multiple={value}", "batch_multiple={value}"),
    "trial": ("--no-trial", "trial=False", "trial=False"),
    "model_copies": ("--model-copies", "model_copies=", "model_copies="),
    "output_format": ("--output-format {value}", "output_format={value}", "output_format={value}"),
}

_FRONT: ContextVar[str] = ContextVar("beamscore_front_end", default=CLI)


def current() -> str:
    """The front end speaking in this context: ``"cli"``, ``"score"`` or ``"beam"``."""
    return _FRONT.get()


@contextlib.contextmanager
def speaking(front: str) -> Iterator[None]:
    """Word the messages raised inside as ``front`` would (see :data:`FRONT_ENDS`)."""
    if front not in FRONT_ENDS:
        raise ValueError(f"front end {front!r}; one of {', '.join(FRONT_ENDS)}")
    token = _FRONT.set(front)
    try:
        yield
    finally:
        _FRONT.reset(token)


def option(name: str, value: str = "", front: str | None = None) -> str:
    """Option ``name`` (a key of :data:`OPTIONS`) as the front end speaking words it, with
    ``value`` filled in: ``option("map", "x=COLUMN")`` is ``--map x=COLUMN`` on the CLI;
    ``option("map", "'x': 'COLUMN'")`` is ``input_map={'x': 'COLUMN'}`` for the transforms.
    Use :func:`pair` for a ``--map``/``input_map`` pair so each side gets its syntax."""
    cli, score, beam = OPTIONS[name]
    text = {CLI: cli, SCORE: score, BEAM: beam}[front or current()]
    return text.format(value=value).rstrip()


def bare(name: str, front: str | None = None) -> str:
    """The option's bare name: ``--map``, ``map`` (``score()``) or ``input_map`` (transforms)."""
    cli, score, beam = OPTIONS[name]
    text = {CLI: cli, SCORE: score, BEAM: beam}[front or current()]
    return re.split(r"[ =]", text, maxsplit=1)[0]


#: config fields whose CLI flag is not ``--`` + the field with dashes
_FLAGS = {
    "inputs": "--input",
    "imports": "--import",
    "model_copies": "--model-copies",
    "version": "--model-version",
    "allow_ops": "--allow-ops",
}


def flag(name: str, front: str | None = None) -> str:
    """A :class:`~beamscore.config.ScoreConfig` field as the caller names it: its CLI flag
    (``--batch-size``) or its keyword (``batch_size``)."""
    if (front or current()) == CLI:
        return _FLAGS.get(name, "--" + name.replace("_", "-"))
    return name


def pair(name: str, key: str, value: str, front: str | None = None) -> str:
    """A ``KEY=VALUE`` option (``--map x=col``, ``--pad x=LENGTH``) in the caller's syntax:
    ``map={'x': 'col'}`` for ``score()``, ``input_map={'x': 'col'}`` for the transforms."""
    front = front or current()
    if front == CLI:
        return option(name, f"{key}={value}", front)
    return option(name, f"{key!r}: {value!r}", front)


def names(values: list[str] | tuple[str, ...], front: str | None = None) -> str:
    """A list of names as an option's value: ``a,b`` on the CLI, ``'a', 'b'`` in Python."""
    front = front or current()
    return ",".join(values) if front == CLI else ", ".join(repr(v) for v in values)
