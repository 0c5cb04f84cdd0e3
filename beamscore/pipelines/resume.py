"""``--resume``: continue an unfinished output directory where a killed run stopped.

A run records what it is (:func:`job_identity`: model fingerprint, signature, inputs, work
units, output format and columns) in ``OUTPUT/_units/_job.json`` before any unit is
written. ``--resume`` on an unfinished directory checks that the same job is being run
again, then skips every unit that has a receipt and whose files exist
(:func:`~beamscore.transforms.receipts.completed_units`); the rest are redone. A different
job, or a directory that no beamscore job started, is refused with the first difference.
"""

from __future__ import annotations

import json
from typing import Any

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.pipelines.plan import Plan, prepare_output
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.receipts import UNITS_DIR, completed_units, planned_units

__all__ = ["JOB_FILE", "job_identity", "start_output"]

JOB_FILE = "_job.json"


def job_identity(plan: Plan) -> dict[str, Any]:
    """What must not change between a run and its ``--resume``."""
    identity = {
        "model_fingerprint": plan.model.fingerprint,
        "model_path": plan.model.path,
        "signature": plan.signature.key,
        "tag_set": plan.config.tag_set,
        "inputs": list(plan.files),
        "input_format": plan.source.format,
        "output_format": plan.sink.format,
        "outputs": list(plan.outputs),
        "keep": list(plan.config.keep),
        "reject_nan": plan.config.reject_nan,
        "units": [[u.name, u.rows] for u in plan.units],
    }
    if plan.on_workers:  # the workers split the files: their file receipts list the units
        del identity["units"]
    return identity


def start_output(plan: Plan) -> dict[str, UnitResult]:
    """Prepare the output directory for ``plan``; return the units already done (resume).

    A fresh (or overwritten) output gets the job file; a resumed one must hold the same job.
    """
    config = plan.config
    fs, root = bfs.filesystem(config.output)
    job_path = bfs.join(root, UNITS_DIR, JOB_FILE)
    resuming = config.resume and not config.overwrite and fs.exists(root) and bool(fs.ls(root, detail=False))
    prepare_output(config.output, config.overwrite, config.resume)
    identity = job_identity(plan)
    if not resuming:
        fs.makedirs(bfs.join(root, UNITS_DIR), exist_ok=True)
        with fs.open(job_path, "w") as f:
            json.dump(identity, f)
        return {}
    if not fs.exists(job_path):
        raise BeamscoreError(
            f"--resume: output {config.output!r} holds files but no unfinished beamscore job "
            f"({UNITS_DIR}/{JOB_FILE}); pass --overwrite to replace them"
        )
    with fs.open(job_path, "r") as f:
        before = json.load(f)
    for key, value in identity.items():
        if key == "units" and key not in before:  # planned on the workers before: units checked below
            continue
        if before.get(key) != value:
            was = _short(before.get(key))
            raise BeamscoreError(
                f"--resume: output {config.output!r} was started by a different job: {key} was {was}, "
                f"now {_short(value)}; pass --overwrite to start again"
            )
    done = completed_units(config.output)
    if plan.on_workers:  # the units are known from the earlier run: its file receipts or its plan
        planned = set(planned_units(config.output)) | {name for name, _ in before.get("units", [])}
    else:
        planned = {u.name for u in plan.units}
    return {name: r for name, r in done.items() if name in planned}


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."
