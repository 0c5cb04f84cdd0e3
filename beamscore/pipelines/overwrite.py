"""``--overwrite``: remove exactly what an earlier beamscore job wrote, nothing else.

What is beamscore's is decided from the earlier job's own records, never from a name
pattern alone: the files its ``_manifest.json`` lists, its receipts in ``_units/`` (and the
files they list), the part files that the work units in ``_units/_job.json`` would write,
those control files themselves (and ``_SUCCESS``), and temporary files of ours in ``_temporary/``. Every
other file in the output directory (``part-of-thesis.docx``, ``part-archive/notes.csv``,
a user's file in ``_temporary/``) is someone else's: ``--overwrite`` leaves it where it is
and names it in a warning. Only a foreign file at a name the new job will write is refused
(named, before anything is removed) unless ``--force``, which lets the job replace it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.io import sink_for
from beamscore.io.base import Sink
from beamscore.pipelines.claim import CLAIM_FILE
from beamscore.transforms.dead_letters import ERRORS_DIR
from beamscore.transforms.manifest import MANIFEST, SUCCESS
from beamscore.transforms.receipts import UNITS_DIR
from beamscore.transforms.temp import TEMP_DIR, clean_temp_dir, is_temp_name

__all__ = [
    "JOB_FILE",
    "Survey",
    "check_others",
    "others_warning",
    "read_job",
    "remove_previous",
    "survey",
    "unit_files",
]

JOB_FILE = "_job.json"
#: how many foreign files an error or warning names before "and N more"
NAME_LIMIT = 5
_RECEIPT = re.compile(r"^part-\d{5}-\d{5}\.json$")


@dataclass
class Survey:
    """What an output directory holds, sorted into beamscore's files and everyone else's.

    Paths are relative to the output directory; ``job`` is the earlier job file (``None``
    when missing or damaged)."""

    ours: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    job: dict[str, Any] | None = None
    finished: bool = False


def read_job(fs: fsspec.AbstractFileSystem, root: str, output: str) -> dict[str, Any] | None:
    """The job file of ``output`` (``None`` if there is none); a damaged one is one line that
    says how to recover, not a ``JSONDecodeError``."""
    path = bfs.join(root, UNITS_DIR, JOB_FILE)
    try:
        with fs.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        job = json.loads(data)
    except ValueError:
        job = None
    if not isinstance(job, dict):
        what = "empty" if not data.strip() else f"damaged ({len(data)} bytes, not a JSON object)"
        raise BeamscoreError(
            f"{bfs.join(output, UNITS_DIR, JOB_FILE)} is {what}, as after a start that ran out of disk space: "
            "the unfinished job cannot be resumed; pass --overwrite to start it again"
        )
    return job


def survey(output: str) -> Survey:
    """Sort every file under ``output`` into beamscore's and others' (reads only)."""
    fs, root = bfs.filesystem(output)
    fs.invalidate_cache(root)
    prefix = root.rstrip("/") + "/"
    files = {
        path[len(prefix) :]: info
        for path, info in fs.find(root, detail=True).items()
        if path.startswith(prefix) and (info.get("type") == "file" or info.get("islink"))
    }
    result = Survey(finished=MANIFEST in files)
    try:
        result.job = read_job(fs, root, output)
    except BeamscoreError:
        result.job = None  # a torn job file is still ours to remove
    ours: set[str] = {MANIFEST, SUCCESS, f"{UNITS_DIR}/{JOB_FILE}", CLAIM_FILE}
    if result.job is not None:
        ours.update(_planned_files(result.job, output))
    listed: list[str] = []
    if result.finished:
        listed += _manifest_files(fs, root)
    receipts = [name for name in files if name.startswith(f"{UNITS_DIR}/") and _RECEIPT.match(name.split("/", 1)[1])]
    ours.update(receipts)
    if result.job is None and not result.finished:
        for name in receipts:
            listed += _receipt_files(fs, bfs.join(root, name))
    ours.update(rel for rel in (_relative(fs, url, prefix) for url in listed) if rel is not None)
    for name in files:
        directory, _, base = name.rpartition("/")
        if directory in (TEMP_DIR, f"{ERRORS_DIR}/{TEMP_DIR}") and is_temp_name(base):
            ours.add(name)
    result.ours = sorted(name for name in files if name in ours and name != CLAIM_FILE)
    result.others = sorted(name for name in files if name not in ours)
    result.dirs = sorted(
        {name.rsplit("/", 1)[0] for name in result.ours if "/" in name}
        | {TEMP_DIR, f"{ERRORS_DIR}/{TEMP_DIR}", ERRORS_DIR, UNITS_DIR},
        key=lambda d: (-d.count("/"), d),
    )
    return result


def remove_previous(output: str, force: bool, planned: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Remove the earlier job's files from ``output``; return the others, which are left.

    ``planned`` are the files (relative paths) the new job will write: another file at one
    of those names is refused before anything is removed, unless ``force``."""
    found = survey(output)
    check_others(output, found, force, planned)
    fs, root = bfs.filesystem(output)
    for name in found.ours:
        with contextlib.suppress(FileNotFoundError):
            bfs.remove_file(fs, bfs.join(root, name))
    for directory in found.dirs:
        if directory.endswith(TEMP_DIR):
            clean_temp_dir(fs, bfs.join(root, directory))
        else:
            bfs.remove_empty_dir(fs, bfs.join(root, directory))
    fs.invalidate_cache(root)
    return found.others


def check_others(output: str, found: Survey, force: bool, planned: set[str] | frozenset[str]) -> None:
    """Refuse ``--overwrite`` when a file beamscore did not write sits where the new job
    will write one, naming them, unless ``force``. Other foreign files are simply left."""
    clash = [name for name in found.others if name in planned]
    if clash and not force:
        raise BeamscoreError(
            f"--overwrite: output {output!r} holds {len(clash)} file(s) that no earlier beamscore job recorded "
            f"where this job will write: {_names(clash)}; move them away, or pass --force to replace them"
        )


def others_warning(output: str, others: list[str]) -> str:
    """The one-line warning ``--overwrite`` prints about the files it left."""
    return f"--overwrite left {len(others)} file(s) beamscore did not write in {output}: {_names(others)}"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAME_LIMIT])
    return shown + (f" (and {len(names) - NAME_LIMIT} more)" if len(names) > NAME_LIMIT else "")


def _planned_files(job: dict[str, Any], output: str) -> set[str]:
    """The files the units of a job file would write."""
    try:
        sink = sink_for(str(job["output_format"]), output)
        columns = [str(c) for c in [*job.get("outputs", []), *job.get("keep", [])]]
        names = [str(unit[0]) for unit in job["units"]]
    except (KeyError, TypeError, IndexError, BeamscoreError):
        return set()
    return unit_files(sink, names, columns)


def unit_files(sink: Sink, units: Iterable[str], columns: Sequence[str]) -> set[str]:
    """Every file (relative to the output) that units named ``units`` write: outputs, dead
    letters and receipts. A name that is not a part name contributes nothing."""
    files: set[str] = set()
    for name in units:
        if re.fullmatch(r"part-\d{5}-\d{5}", name):
            files.update(sink.unit_files(name, columns))
            files.update((f"{ERRORS_DIR}/{name}.parquet", f"{UNITS_DIR}/{name}.json"))
    return files


def _manifest_files(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    try:
        with fs.open(bfs.join(root, MANIFEST), "rb") as f:
            manifest = json.loads(f.read())
        return [str(u) for u in [*manifest.get("outputs", []), *manifest.get("errors", [])]]
    except (ValueError, AttributeError, TypeError, FileNotFoundError):
        return []


def _receipt_files(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    try:
        with fs.open(path, "rb") as f:
            receipt = json.loads(f.read())
        return [str(u) for u in [*receipt.get("files", []), *receipt.get("errors", [])]]
    except (ValueError, AttributeError, TypeError, FileNotFoundError):
        return []


def _relative(fs: fsspec.AbstractFileSystem, url: str, prefix: str) -> str | None:
    """``url`` relative to the output directory, or ``None`` when it lies outside it (a
    listed path outside the output is never removed)."""
    path = fs._strip_protocol(url)
    if not path.startswith(prefix):
        return None
    rel = path[len(prefix) :]
    return None if any(part in ("", ".", "..") for part in rel.split("/")) else rel
