"""Open an output directory for a job: claim it, then start, overwrite or ``--resume`` it.

A run records what it is (:func:`job_identity`: model fingerprint and version, every
setting that decides the result (signature, tag set, ``--map``, ``--cast``, ``--pad``,
``--keep``, ``--outputs``, output format and codec, ``--reject-nan``, ``--jit-compile`` and
its batch size), inputs and their versions, work units) in ``OUTPUT/_units/_job.json``,
written atomically, before any unit is written. ``--resume`` on an unfinished directory
checks that the same job is being run again over the same input files (size and
modification time, ETag or generation, :func:`input_versions`), then skips every unit that
has a receipt and whose files exist (:func:`~beamscore.transforms.receipts.completed_units`);
the rest are redone. A different job, an input rewritten in place, or a directory that no
beamscore job started, is refused with the first difference. ``--resume`` on a finished
output of the same job does nothing and reports it as complete.

Everything here runs while the job holds the output's claim
(:class:`~beamscore.pipelines.claim.Claim`), so two jobs never prepare one directory at once.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import fsspec

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, Terminated
from beamscore.model.content import changed_file
from beamscore.pipelines.claim import CLAIM_FILE, Claim
from beamscore.pipelines.overwrite import (
    JOB_FILE,
    Survey,
    others_warning,
    read_job,
    remove_previous,
    survey,
    unit_files,
)
from beamscore.pipelines.plan import Plan
from beamscore.transforms import stopping
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.dead_letters import ERRORS_DIR
from beamscore.transforms.manifest import MANIFEST, mark_success, remove_temporary
from beamscore.transforms.receipts import UNITS_DIR, completed_units, planned_units
from beamscore.transforms.temp import TEMP_DIR
from beamscore.transforms.watchdog import end_worker_processes
from beamscore.wording import flag, option

__all__ = [
    "IDENTITY_NAMES",
    "JOB_FILE",
    "Started",
    "control_names",
    "input_versions",
    "job_identity",
    "planned_files",
    "start_output",
]

#: what identifies the version of a file, by filesystem: the first of these its ``info`` has


@dataclass
class Started:
    """An output opened for a job: the units an earlier run already did (``--resume``), the
    claim to release when the job ends, and whether the job was already complete."""

    done: dict[str, UnitResult] = field(default_factory=dict)
    claim: Claim | None = None
    complete: bool = False
    warnings: list[str] = field(default_factory=list)
    #: the job may still be running elsewhere (SIGTERM, and a remote runner did not confirm
    #: its cancel): the claim stays, without a heartbeat, and goes stale in its time
    keep_claim: bool = False

    def release(self) -> None:
        """Give up the output's claim (when the job has ended, whatever the outcome)."""
        if self.claim is not None:
            if self.keep_claim:
                self.claim.abandon()
            else:
                self.claim.release()
            self.claim = None

    def __enter__(self) -> Started:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        stopped = kind is not None and issubclass(kind, (KeyboardInterrupt, Terminated))
        if stopped and self.claim is not None and not self.keep_claim:
            # stopped by a signal here (SIGTERM, SIGHUP, Ctrl-C): nothing of this run writes any
            # more (the runner's threads in this process are told, and their writes in flight
            # waited for), so its half-written files go with its claim (a resume would remove them too)
            stopping.stop(self.claim.output)
            end_worker_processes()  # a local multi-process run's workers: gone before the clean-up
            with contextlib.suppress(Exception):
                remove_temporary(self.claim.output)
        self.release()


def input_versions(plan: Plan) -> dict[str, dict[str, Any]]:
    """Each input's size and version (GCS generation, S3 ETag, local mtime) as the planner's
    one detailed listing gave them (:class:`~beamscore.fs.FileFacts`): no request per file."""
    return {f.url: {"size": f.size, "version": f.version} for f in plan.facts}


def job_identity(plan: Plan) -> dict[str, Any]:
    """What must not change between a run and its ``--resume``: the model, every setting
    that decides what is written (:meth:`~beamscore.pipelines.plan.Plan.settings`), the
    inputs and the work units."""
    settings = plan.settings()
    identity = {
        "version": settings.pop("version"),  # the model first: a new model explains other changes
        "model_fingerprint": plan.model.fingerprint,
        "model_path": plan.model.path,
        "model_files": plan.model_files,  # by content: fingerprint.pb may stay when variables/ change
        **settings,
        # the snapshot read (before its files, which follow from it): a --resume reads the same one
        **({"table": plan.table.identity()} if plan.table is not None else {}),
        "inputs": list(plan.files),
        "input_format": plan.source.format,
        "rows_per_unit": plan.config.rows_per_unit,
        "units": [[u.name, u.rows] for u in plan.units],
    }
    if plan.on_workers:  # the workers split the files: their file receipts list the units
        del identity["units"]
    return identity


#: how a refusal names an identity key (a flag where the user sets it)
IDENTITY_NAMES = {
    "version": "the model version",
    "signature": "--signature",
    "tag_set": "--tag-set",
    "map": "--map",
    "cast": "--cast",
    "pad": "--pad",
    "keep": "--keep",
    "outputs": "--outputs",
    "output_format": "--output-format",
    "output_compression": "--output-compression",
    "output_compression_level": "--output-compression-level",
    "reject_nan": "--reject-nan",
    "jit_compile": "--jit-compile",
    "fixed_batch_size": "--batch-size (with --jit-compile)",
    "model_fingerprint": "the model (fingerprint)",
    "model_path": "the model path",
    "model_files": "the model's files",
    "rows_per_unit": "--rows-per-unit",
    "inputs": "the input files",
    "input_format": "the input format",
    "table": "the input table's snapshot",
    "units": "the work units",
    "models": "the models (--model NAME=PATH: a path, fingerprint, version or setting of one of them)",
}


def control_names(plan: Plan) -> list[str]:
    """Directories and control files a job writes into (checked for planted links)."""
    columns = [*plan.outputs, *plan.config.keep]
    dirs = {name.rsplit("/", 1)[0] for name in plan.sink.unit_files("part-00000-00000", columns) if "/" in name}
    return [TEMP_DIR, UNITS_DIR, ERRORS_DIR, f"{ERRORS_DIR}/{TEMP_DIR}", MANIFEST, f"{UNITS_DIR}/{JOB_FILE}", *dirs]


def planned_files(plan: Plan) -> set[str]:
    """Every file (relative to the output) the units of ``plan`` may write."""
    return unit_files(plan.sink, [u.name for u in plan.units], [*plan.outputs, *plan.config.keep])


def start_output(plan: Plan) -> Started:
    """Claim the output directory of ``plan`` and prepare it; see the module docstring.

    The caller releases the claim (:meth:`Started.release`) when the job ends."""
    config = plan.config
    fs, root = bfs.filesystem(config.output)
    if bfs.is_local(fs) and os.path.islink(root) and not os.path.exists(root):
        raise BeamscoreError(
            f"output {config.output!r} is a symbolic link to {os.readlink(root)}, which does not exist; "
            "create the directory it points at, or remove the link"
        )
    if fs.exists(root) and not fs.isdir(root):
        raise BeamscoreError(f"output {config.output!r} exists and is not a directory")
    bfs.refuse_symlinks(fs, root, control_names(plan))
    try:
        claim = Claim.acquire(config.output)
    except OSError as exc:  # nothing is written before the claim: a refusal, not a failed job
        raise BeamscoreError(f"cannot write to output {config.output!r}: {_os_reason(exc)}") from None
    stopping.allow(config.output)  # this process's writers write it again (after a stopped run)
    started = Started(claim=claim)
    try:
        _prepare(plan, fs, root, started)
        if not started.complete:  # a job that runs again is not a success until it ends as one
            mark_success(config.output, False)
    except BaseException:
        started.release()
        raise
    return started


def _os_reason(exc: OSError) -> str:
    """``read-only file system (/out)``: an OS error's reason and the path it names."""
    reason = (exc.strerror or type(exc).__name__).lower()
    where = exc.filename or ""
    return f"{reason} ({where})" if where else reason


def _prepare(plan: Plan, fs: fsspec.AbstractFileSystem, root: str, started: Started) -> None:
    config = plan.config
    fs.invalidate_cache(root)
    entries = [e for e in fs.ls(root, detail=False) if e.rstrip("/").rsplit("/", 1)[-1] != CLAIM_FILE]
    identity = {**job_identity(plan), "input_versions": input_versions(plan)}
    if entries and config.overwrite:
        left = remove_previous(config.output, config.force, planned_files(plan))
        if left:
            started.warnings.append(others_warning(config.output, left))
    elif entries:
        read_job(fs, root, config.output)  # a damaged job file: one line on how to recover
        found = survey(config.output)
        if found.others or found.job is not None or found.finished:
            _check_existing(plan, identity, found, started)
            return
        # only temporary files of a start that died before its job file: start afresh
        remove_previous(config.output, force=False)
    fs.makedirs(bfs.join(root, UNITS_DIR), exist_ok=True)
    data = json.dumps(identity).encode()
    bfs.write_atomic(fs, bfs.join(root, UNITS_DIR, JOB_FILE), data, bfs.join(root, TEMP_DIR))


def _check_existing(plan: Plan, identity: dict[str, Any], found: Survey, started: Started) -> None:
    """An output that holds something (``found``), without ``--overwrite``: resume it or refuse."""
    config = plan.config
    finished, others, before = found.finished, found.others, found.job
    if not config.resume:
        if not finished and others and before is None:
            shown = ", ".join(name.rsplit("/", 1)[-1] for name in others[:3])
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            raise BeamscoreError(
                f"output {config.output!r} is not empty: it holds files no beamscore job recorded ({shown}{more}); "
                f"score into a new directory, or pass {option('overwrite')} to write beside them (it removes only "
                "what an earlier beamscore job recorded)"
            )
        if finished:
            raise BeamscoreError(
                f"output {config.output!r} is not empty: it holds a finished result (_manifest.json); "
                f"pass {option('overwrite')} to replace it"
            )
        raise BeamscoreError(
            f"output {config.output!r} is not empty (an unfinished job?); "
            f"pass {option('resume')} to continue it or {option('overwrite')} to replace it"
        )
    if before is None:
        what = "a finished result without a job file" if finished else "files but no unfinished beamscore job"
        raise BeamscoreError(
            f"{option('resume')}: output {config.output!r} holds {what} ({UNITS_DIR}/{JOB_FILE}); "
            f"pass {option('overwrite')} to replace them"
        )
    for key, value in identity.items():
        if key == "input_versions":
            continue
        # "units" absent: planned on the workers before (checked below); any other key absent:
        # a job file written before that setting was recorded
        if key not in before:
            continue
        if before[key] != value:
            if key == "model_files":
                _refuse_model_files(config.output, before[key], value, plan)
            if key == "units":
                _refuse_units(config.output, before, identity)
            raise BeamscoreError(
                f"{option('resume')}: output {config.output!r} was started by a different job: "
                f"{IDENTITY_NAMES.get(key, key)} was {_short(before[key])}, now {_short(value)}; "
                f"pass {option('overwrite')} to start again"
            )
    _check_inputs(config.output, before.get("input_versions"), identity["input_versions"])
    if finished:
        started.complete = True
        return
    if plan.on_workers:  # the units are known from the earlier run: its file receipts or its plan
        planned = set(planned_units(config.output)) | {name for name, _ in before.get("units", [])}
    else:
        planned = {u.name for u in plan.units}
    started.done = {name: r for name, r in completed_units(config.output).items() if name in planned}


def _check_inputs(output: str, before: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """Refuse a resume whose input files were rewritten since the job started."""
    if not isinstance(before, dict):
        return  # a job file from before input versions were recorded
    for url, facts in now.items():
        old = before.get(url)
        if not isinstance(old, dict) or old == facts:
            continue
        changed = [
            f"{k} was {old.get(k)}, now {facts.get(k)}"
            for k in sorted(set(old) | set(facts))
            if old.get(k) != facts.get(k)
        ]
        raise BeamscoreError(
            f"{option('resume')}: input {url} changed since {output} was started ({'; '.join(changed)}); "
            f"resuming would mix rows of the old and the new file: pass {option('overwrite')} to start again"
        )


def _refuse_model_files(output: str, before: Any, now: dict[str, Any], plan: Plan) -> None:
    """The model's files differ from those the job started with: name the first that changed."""
    changed = changed_file(before, now) if isinstance(before, dict) else None
    if changed is None:
        return
    same = "fingerprint.pb still names the same export" if not plan.model.fingerprint_computed else "same path"
    raise BeamscoreError(
        f"{option('resume')}: the model {plan.model.path} changed in place since {output} was started "
        f"({same}): {changed}; resuming would mix results of the old and the new weights: export the new "
        f"model as a new version directory and score it into a new output ({flag('version')} N), or pass "
        f"{option('overwrite')} to rescore every unit with it"
    )


def _refuse_units(output: str, before: dict[str, Any], identity: dict[str, Any]) -> None:
    """The inputs split into other work units: name the first file whose rows changed, old and
    new, rather than both unit lists."""
    old, new = _rows_by_file(before.get("units")), _rows_by_file(identity.get("units"))
    if old is None or new is None:
        return
    inputs = identity.get("inputs") or []
    for index in sorted(set(old) | set(new)):
        (old_rows, old_units), (new_rows, new_units) = old.get(index, (0, 0)), new.get(index, (0, 0))
        name = inputs[index] if index < len(inputs) else f"input file {index}"
        if old_rows != new_rows:
            raise BeamscoreError(
                f"{option('resume')}: input {name} had {old_rows} rows when {output} was started, now {new_rows}; "
                f"resuming would mix rows of the old and the new file: pass {option('overwrite')} to start again"
            )
        if old_units != new_units:
            raise BeamscoreError(
                f"{option('resume')}: input {name} was split into {old_units} work units when {output} was "
                f"started, now {new_units} (same {new_rows} rows; was {flag('rows_per_unit')} changed?): "
                f"rerun with the first run's {flag('rows_per_unit')}, or pass {option('overwrite')} to start again"
            )


def _rows_by_file(units: Any) -> dict[int, tuple[int, int]] | None:
    """``{file index: (rows, units)}`` from a job's ``[[part-FFFFF-UUUUU, rows], ...]``."""
    if not isinstance(units, list):
        return None
    found: dict[int, tuple[int, int]] = {}
    for entry in units:
        try:
            name, rows = entry
            index = int(str(name).split("-")[1])
        except (ValueError, IndexError, TypeError):
            return None
        total, count = found.get(index, (0, 0))
        found[index] = (total + int(rows or 0), count + 1)
    return found


def _short(value: Any) -> str:
    if value is None:
        return "not given (the default)"
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."
