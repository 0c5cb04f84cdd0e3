"""Wire a :class:`~beamscore.pipelines.plan.Plan` into a Beam pipeline and run it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beamscore import fs as bfs
from beamscore.config import ScoreConfig
from beamscore.errors import BeamscoreError, JobFailed, first_line, wrapped_message
from beamscore.pipelines.plan import Plan
from beamscore.pipelines.resume import Started, start_output
from beamscore.pipelines.runners import LOCAL_RUNNERS, make_runner, runner_name
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.manifest import MANIFEST, WriteManifest
from beamscore.transforms.read import ReadBatches
from beamscore.transforms.run_signature import RunSignatureFn
from beamscore.transforms.watchdog import LAUNCHER_ENV
from beamscore.transforms.write import WriteBatches

__all__ = ["JobResult", "build_pipeline", "failure", "run_plan"]


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports: the manifest, the wall time, how many units an earlier
    run had already done (``--resume``) and, when too many rows failed, why the job counts
    as failed (the outputs and the manifest are written all the same). ``complete``: a
    ``--resume`` found the output already finished by the same job, and nothing ran."""

    manifest: dict[str, Any]
    seconds: float
    runner: str
    skipped: int = 0
    failure: str | None = None
    #: ``--resume`` found the job already finished: nothing ran
    complete: bool = False


def build_pipeline(p: beam.Pipeline, plan: Plan, done: Mapping[str, UnitResult] | None = None) -> None:
    """Units -> read -> score -> write -> manifest. Wiring only.

    ``done`` are units an earlier run committed (``--resume``): they are not run again,
    and the manifest takes their counts from their receipts."""
    done = dict(done or {})
    todo = [u for u in plan.units if u.name not in done]
    config = plan.config
    results = (
        p
        | "Units" >> beam.Create(todo)
        | "Read" >> ReadBatches(plan.source, plan.read_columns, plan.batch_size)
        | "Run"
        >> beam.ParDo(
            RunSignatureFn(
                plan.spec, plan.signature, plan.bindings, plan.outputs, config.keep, reject_nan=config.reject_nan
            )
        )
        | "Write" >> WriteBatches(plan.sink, plan.file_metadata(), config.output)
    )
    _ = results | "Manifest" >> WriteManifest(
        config.output, plan.header(), previous=list(done.values()), expected_units=[u.name for u in plan.units]
    )


def run_plan(plan: Plan, options: PipelineOptions, progress: bool = True) -> JobResult:
    """Run the job to completion and read back its manifest.

    ``progress`` shows a progress line on stderr for local runs when stderr is a terminal."""
    started = start_output(plan)
    with started:
        for warning in started.warnings:
            print(f"beamscore: warning: {warning}", file=sys.stderr)
        if started.complete:
            return _finished(plan, options, started)
        done = started.done
        runner = make_runner(options)
        p = beam.Pipeline(runner=runner, options=options)
        build_pipeline(p, plan, done)
        reporter: contextlib.AbstractContextManager = contextlib.nullcontext()
        if progress and sys.stderr.isatty() and runner_name(options) in LOCAL_RUNNERS:
            from beamscore.progress import Progress, receipts_lister

            todo = {u.name: u.rows for u in plan.units if u.name not in done}
            reporter = Progress(todo, receipts_lister(plan.config.output), sys.stderr)
        if runner_name(options) in LOCAL_RUNNERS:
            os.environ[LAUNCHER_ENV] = str(os.getpid())  # inherited by multi-process workers
        start = time.perf_counter()
        with reporter:
            try:
                p.run().wait_until_finish()
            except Exception as exc:
                raise JobFailed(_job_error(exc)) from exc
        seconds = time.perf_counter() - start
    manifest = _read_manifest(plan)
    return JobResult(
        manifest=manifest,
        seconds=seconds,
        runner=type(runner).__name__ if not isinstance(runner, str) else runner,
        skipped=len(done),
        failure=failure(manifest, plan.config),
    )


def _job_error(exc: BaseException) -> str:
    """One line for a job that failed while running: our own message where one is inside
    the runner's wrapping, else the exception's first line."""
    found = wrapped_message(exc)
    if found is not None:
        return found
    # a storage error (a full disk, a permission) names its path: say it plainly
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.strerror:
            return f"the job failed writing or reading {current.filename}: {current.strerror}"
        current = current.__cause__ or current.__context__
    match = re.search(r"(?:OSError|IOError): \[Errno \d+\] ([^:\n]+): '([^'\n]+)'", str(exc))
    if match:
        return f"the job failed writing or reading {match.group(2)}: {match.group(1)}"
    return f"the job failed: {type(exc).__name__}: {first_line(str(exc))} (rerun with --debug for the traceback)"


def _read_manifest(plan: Plan) -> dict[str, Any]:
    fs, root = bfs.filesystem(plan.config.output)
    manifest_path = bfs.join(root, MANIFEST)
    fs.invalidate_cache(root)
    if not fs.exists(manifest_path):
        raise BeamscoreError(f"the job ended without writing {plan.config.output}/{MANIFEST}")
    with fs.open(manifest_path, "r") as f:
        return json.load(f)


def _finished(plan: Plan, options: PipelineOptions, started: Started) -> JobResult:
    """``--resume`` on an output this job already finished: nothing to run."""
    manifest = _read_manifest(plan)
    return JobResult(
        manifest=manifest,
        seconds=0.0,
        runner=runner_name(options),
        skipped=int(manifest.get("units", 0)),
        failure=failure(manifest, plan.config),
        complete=True,
    )


def failure(manifest: Mapping[str, Any], config: ScoreConfig) -> str | None:
    """Why a finished job counts as failed (too many rows failed), or ``None``.

    With neither limit set any failed row fails the job; with one or both set, every limit
    given must hold."""
    failed, total = int(manifest["rows_failed"]), int(manifest["rows_in"])
    if not failed:
        return None
    fraction = failed / total if total else 1.0
    limits = []
    if config.max_failed_rows is not None:
        limits.append((failed <= config.max_failed_rows, f"--max-failed-rows {config.max_failed_rows}"))
    if config.max_failed_fraction is not None:
        limits.append((fraction <= config.max_failed_fraction, f"--max-failed-fraction {config.max_failed_fraction}"))
    if not limits:
        limits.append((False, "no failed rows allowed by default; see --max-failed-rows"))
    broken = [text for ok, text in limits if not ok]
    if not broken:
        return None
    where = bfs.join(config.output, "_errors")
    return f"{failed:,} of {total:,} rows failed ({fraction:.2%}), over the limit ({'; '.join(broken)}); see {where}/"
