"""Errors that reach the user as one line.

Every problem we can explain (a missing model, a column of the wrong dtype, an output
directory that already holds results) is raised as :class:`BeamscoreError` with a message
that names the place and both sides. The CLI prints it as one line and exits with 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import re
import signal

__all__ = [
    "BeamscoreError",
    "JobFailed",
    "RowsFailed",
    "Terminated",
    "TryLater",
    "describe_failure",
    "first_line",
    "in_stage",
    "summarise",
    "wrapped_message",
]


class BeamscoreError(Exception):
    """A user-facing error: the message is the whole story, no traceback needed."""


class TryLater(BeamscoreError):
    """A refusal that the same job, run again later, may not meet: no input matches yet, the
    input holds no rows yet, another job holds the output. Nothing is written; the CLI exits
    75 (EX_TEMPFAIL), so a scheduler retries it rather than calling someone to fix the job."""


class Terminated(BaseException):
    """The launcher got SIGTERM (a scheduler's timeout, a Kubernetes pod stopping): raised
    in the main thread so the job unwinds as for Ctrl-C, releasing its claim on the output
    (a claim left behind would refuse the scheduler's retry on another machine for minutes)
    and cancelling a job running on a remote runner. A ``BaseException``, like
    ``KeyboardInterrupt``, so that no ``except Exception`` swallows it. ``signum`` is the
    signal: SIGTERM, or SIGHUP (the terminal or ssh session closed), handled alike."""

    def __init__(self, *args: object, signum: int = signal.SIGTERM) -> None:
        super().__init__(*args)
        self.signum = int(signum)


class JobFailed(BeamscoreError):
    """The job started and did not finish: a worker or the runner failed, or a store stalled.
    The CLI exits 3 (not 2: units may be committed; ``--resume`` continues from their receipts).

    The message names the file, the stage and the first line of the real exception
    (``in.parquet (part-00000-00000): write: OSError: [Errno 28] No space left on device``).
    ``manifest`` is ``None``: nothing is committed past the receipts. The subclass
    :class:`RowsFailed` is the job that finished with too many failed rows."""

    def __init__(self, message: str, manifest: dict | None = None) -> None:
        super().__init__(message)
        self.manifest = manifest


class RowsFailed(JobFailed):
    """The job finished, but more rows failed than ``--max-failed-rows`` /
    ``--max-failed-fraction`` allow: the CLI exits 1. The outputs and the manifest are
    written (``manifest``, with ``"status": "failed"``); ``_SUCCESS`` is not. A subclass of
    :class:`JobFailed`, so ``except JobFailed`` still catches every failed job."""

    def __init__(self, message: str, manifest: dict) -> None:
        super().__init__(message, manifest)


def in_stage(path: str, unit: str, stage: str, exc: BaseException) -> JobFailed:
    """The failure of a worker's ``stage`` (``plan``, ``read``, ``model``, ``write``) on one
    unit as one line the launcher shows on every runner: ``in/a.parquet (part-00000-00000):
    model: NotFoundError: ...`` (the exception's type and its informative first line)."""
    return JobFailed(f"{path} ({unit}): {stage}: {type(exc).__name__}: {_informative(exc)}")


#: lines of a TensorFlow error that say nothing of the cause
_TF_BOILERPLATE = ("Graph execution error", "Detected at node", "Detected unsupported", "[[", "\t")


def _informative(exc: BaseException) -> str:
    """The first line of ``exc`` that says something (TensorFlow's start with boilerplate)."""
    text = getattr(exc, "message", None) or str(exc)
    for line in text.splitlines():
        if line.strip() and not line[:1].isspace() and not line.startswith(_TF_BOILERPLATE):
            return line.strip()[:500]
    return "no message"


#: our error classes as a runner's traceback text names them (``beamscore.errors.JobFailed: ...``)
_OUR_CLASSES = (
    r"(?:[\w.]+\.)?(?:BeamscoreError|JobFailed|RowsFailed|ModelFailed|BatchError|OutputShapeError|XlaCompileError)"
)
#: a line of a runner's traceback text that carries the real error and the failing step
_OURS = re.compile(_OUR_CLASSES + r": (.+?)(?: \[while running '([^']*)'\])?$", re.MULTILINE)
#: the last exception line of a traceback text: ``tensorflow.python.framework.errors_impl.NotFoundError: ...``
_RAISED = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Failure|Interrupt)): (\S.*)$", re.MULTILINE)
_STEP = re.compile(r"^(?:\w+: )?(\w[\w.]*: .+?) \[while running '([^']*)'\]$", re.MULTILINE)


def first_line(text: str, default: str = "") -> str:
    """The first non-blank line of ``text`` (library errors often run to many lines)."""
    stripped = text.strip()
    return stripped.splitlines()[0] if stripped else default


def wrapped_message(exc: BaseException) -> str | None:
    """Our message from an exception a runner wrapped (in-process or as traceback text)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BeamscoreError):
            return str(current)
        current = current.__cause__ or current.__context__
    match = re.search(r"BeamscoreError: (.+)", str(exc))
    if match:
        text = match.group(1).strip()
        return re.sub(r" \[while running '.*'\]$", "", text)
    return None


def describe_failure(exc: BaseException) -> str:
    """One line for an exception a runner raised because a worker failed.

    Runners wrap the worker's exception, often as the text of its traceback in a
    ``RuntimeError``; this finds our own message (which names file and stage) or else the
    real exception's first line and the step it was raised in."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BeamscoreError):
            return first_line(str(current))
        current = current.__cause__ or current.__context__
    text = str(exc)
    ours = _OURS.findall(text)
    if ours:
        return ours[-1][0]
    steps = _STEP.findall(text)
    if steps:
        cause, step = steps[-1]
        cause = re.sub(r"^(?:RuntimeError: )+", "", cause)
        return f"step {step!r}: {cause}"
    raised = [m for m in _RAISED.finditer(text) if not m[2].startswith("Traceback")]
    real = [m for m in raised if not m[1].endswith("RuntimeError")] or raised
    if real:  # a traceback as text (a worker process, Dask): its last exception, short type name
        found = real[-1]
        rest = text[found.start(2) :]
        message = _informative(Exception(rest))
        message = re.sub(r"\s*(?:\[\[.*)?\[while running '[^']*'\]$", "", message)
        return f"{found[1].rsplit('.', 1)[-1]}: {message}"
    return f"{type(exc).__name__}: {first_line(text, 'no message')}"


def summarise(names: list[str] | tuple[str, ...], what: str, limit: int = 5, more: str = "") -> str:
    """``3 sparse inputs: a, b, c``, or past ``limit`` names ``18 sparse inputs: a, b, c, d, e, ...``
    and ``more`` (``" (see beamscore show)"``): a list in a refusal line stays short, however long
    the list (a TFT graph has dozens of inputs)."""
    names = list(names)
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += ", ..." + more
    return f"{len(names)} {what}: {shown}"
