"""Wire a :class:`~beamscore.pipelines.plan.Plan` into a Beam pipeline and run it."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beamscore import fs as bfs
from beamscore.config import ScoreConfig, load_yaml
from beamscore.errors import JobFailed, RowsFailed, Terminated, describe_failure
from beamscore.keywords import strict_keywords_with
from beamscore.model.loader import discard_preloaded, is_preloaded, preload
from beamscore.pipelines.claim import STALE_AFTER_S
from beamscore.pipelines.plan import Plan, plan_job
from beamscore.pipelines.resume import Started, start_output
from beamscore.pipelines.runners import (
    DASK_RUNNER,
    LOCAL_RUNNERS,
    ResultLost,
    make_runner,
    pipeline_options,
    release,
    runner_name,
    spread_units,
    wait_for,
)
from beamscore.store_watch import watch_stores
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.manifest import MANIFEST, WriteManifest, failure_reason, mark_success, remove_temporary
from beamscore.transforms.plan_files import PlanFiles, file_elements
from beamscore.transforms.progress_file import ReportRows
from beamscore.transforms.read import ReadBatches
from beamscore.transforms.run_signature import RunSignature, take_loads
from beamscore.transforms.temp import TEMP_DIR
from beamscore.transforms.watchdog import LAUNCHER_ENV
from beamscore.transforms.write import WriteBatches
from beamscore.wording import SCORE, speaking

__all__ = [
    "JobFailed",
    "JobResult",
    "RowsFailed",
    "as_found",
    "build_pipeline",
    "failure",
    "prepare",
    "run_plan",
    "score",
]

_LOG = logging.getLogger("beamscore")


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
    #: rows out of the units an earlier run had done (not scored in ``seconds``)
    rows_resumed: int = 0
    #: ``--resume`` found the job already finished: nothing ran
    complete: bool = False


def build_pipeline(
    p: beam.Pipeline, plan: Plan, done: Mapping[str, UnitResult] | None = None, progress_file: str | None = None
) -> None:
    """Units -> read -> score -> write -> manifest. Wiring only.

    ``progress_file``: the launcher's file each scored batch appends its row count to
    (:class:`~beamscore.transforms.progress_file.ReportRows`), for the progress line.

    When ``plan.on_workers``, the units come from the file list, planned on the workers
    (:class:`~beamscore.transforms.plan_files.PlanFiles`), and the manifest learns every
    unit from them.

    ``done`` are units an earlier run committed (``--resume``): they are not run again,
    and the manifest takes their counts from their receipts.

    Model loads this process recorded before (a pipeline of elements writes no receipt to
    carry them) are dropped here: the job's receipts carry its own loads only."""
    take_loads()
    done = dict(done or {})
    config = plan.config
    expected: list[str] | beam.PCollection
    if plan.on_workers:
        done_names = set(done)
        planned = (
            p
            | "Files" >> beam.Create(file_elements(plan.facts))
            | "Plan" >> PlanFiles(plan.source, plan.schema_check, config.output)
        )
        todo = planned | "Todo" >> beam.Filter(lambda u, skip: u.name not in skip, done_names)
        expected = planned | "UnitNames" >> beam.Map(lambda u: u.name) | "AllUnits" >> beam.combiners.ToList()
    else:
        todo = p | "Units" >> beam.Create([u for u in plan.units if u.name not in done])
        expected = [u.name for u in plan.units]
    scored = todo | "Read" >> ReadBatches(plan.source, plan.read_columns, plan.batch_size) | "Run" >> _run_step(plan)
    if progress_file is not None:
        scored = scored | "Progress" >> beam.ParDo(ReportRows(progress_file))
    results = scored | "Write" >> WriteBatches(plan.sink, plan.file_metadata(), config.output, tidy=False)
    _ = results | "Manifest" >> WriteManifest(
        config.output, plan.header(), previous=list(done.values()), expected_units=expected
    )


def _run_step(plan: Plan) -> beam.PTransform:
    """The scoring step: :class:`RunSignature` for one model; several named models score
    every batch in turn, fused over one read (:mod:`beamscore.transforms.run_models`)."""
    if not plan.several:
        return RunSignature.for_plan(plan)
    from beamscore.transforms.run_models import RunModelsFn, named_models

    if plan.routed:  # each row by the model its --route-by value names
        from beamscore.transforms.route_models import RoutedModelsFn

        config = plan.config
        return beam.ParDo(
            RoutedModelsFn(
                named_models(plan),
                str(config.route_by),
                config.keep,
                config.reject_nan,
                plan.keep_types,
                config.max_models_per_worker,
                config.batch_multiple,
            )
        )
    config = plan.config
    return beam.ParDo(
        RunModelsFn(named_models(plan), config.keep, config.reject_nan, plan.keep_types, config.batch_multiple)
    )


def run_plan(
    plan: Plan, options: PipelineOptions, progress: bool = True, progress_every: float | None = None
) -> JobResult:
    """Run the job to completion and read back its manifest.

    ``progress`` reports progress on stderr (:mod:`beamscore.progress`): redrawn in place on a
    terminal, else a timestamped line every ``progress_every`` seconds (default
    :data:`~beamscore.progress.PROGRESS_EVERY`).
    A store call that gets no answer within the store timeout ends the job
    (:func:`~beamscore.store_watch.watch_stores`)."""
    with watch_stores():
        try:
            return _run_plan(plan, options, progress, progress_every)
        finally:
            for model in plan.models or [plan]:
                discard_preloaded(model.spec)


def release_memory() -> None:
    """Collect what was dropped and give the freed heap back to the system (glibc's
    ``malloc_trim``; elsewhere a no-op): without it the launcher's RSS kept the size of the
    trial call's model while the workers scored."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def in_process(options: PipelineOptions) -> bool:
    """Whether the runner scores in this process (Beam's local runner, not multi-processing):
    then the launcher's copy of the model is the worker's."""
    if runner_name(options) not in LOCAL_RUNNERS:
        return False
    from apache_beam.options.pipeline_options import DirectOptions

    return options.view_as(DirectOptions).direct_running_mode != "multi_processing"


def _run_plan(plan: Plan, options: PipelineOptions, progress: bool, progress_every: float | None) -> JobResult:
    if in_process(options) and not plan.spec.copies:
        # The model loads in this process anyway: load it now (unless the trial call did),
        # before anything is written, so corrupt weights are one line and exit 2, not a failed job.
        for model in (plan.models or [plan])[: 1 if plan.routed else None]:  # routed: loaded as rows need them
            if not is_preloaded(model.spec):
                preload(model.spec)
    else:  # workers load their own copies: the launcher does not hold the trial call's weights
        for model in plan.models or [plan]:
            discard_preloaded(model.spec)
        release_memory()
    started = start_output(plan)
    with started:
        for warning in started.warnings:
            print(f"beamscore: warning: {warning}", file=sys.stderr)
        if started.complete:
            return _finished(plan, options, started)
        done = started.done
        options = spread_units(options, len(plan.units) - len(done))
        runner = make_runner(options)
        p = beam.Pipeline(runner=runner, options=options)
        reporter, counter = _progress(plan, options, done, progress, progress_every)
        build_pipeline(p, plan, done, progress_file=counter.path if counter is not None else None)
        if runner_name(options) in LOCAL_RUNNERS:
            os.environ[LAUNCHER_ENV] = str(os.getpid())  # inherited by multi-process workers
        start = time.perf_counter()
        with reporter:
            running = None
            try:
                running = p.run()
                wait_for(running)
            except ResultLost as exc:  # tasks already on the workers may still commit units
                started.keep_claim = True
                raise JobFailed(
                    f"the job failed: {exc}; its claim on {plan.config.output} stays until it is stale "
                    f"({STALE_AFTER_S:.0f} s without a heartbeat, or at once on this machine)"
                ) from exc
            except Exception as exc:  # a worker failed: say why in one line
                raise JobFailed(f"the job failed: {describe_failure(exc)}") from exc
            except Terminated as stopped:  # SIGTERM/SIGHUP: a remote job must not go on writing without a claim
                if runner_name(options) not in LOCAL_RUNNERS:
                    # asked to cancel, its workers may still commit the units they hold, so
                    # the claim stays (no heartbeat) until it goes stale
                    asked = "was asked to cancel" if _cancel(running) else "could not be cancelled from here"
                    started.keep_claim = True
                    raise Terminated(
                        f"the job on {runner_name(options)} {asked}; its claim on {plan.config.output} stays "
                        f"until it is stale ({STALE_AFTER_S:.0f} s without a heartbeat, or at once on this "
                        "machine)",
                        signum=stopped.signum,
                    ) from None
                raise
            finally:
                if running is not None:
                    release(running)
                if counter is not None:
                    counter.remove()
        seconds = time.perf_counter() - start
    manifest = _read_manifest(plan)
    manifest = _finalize(plan, manifest)
    return JobResult(
        manifest=manifest,
        seconds=seconds,
        runner=type(runner).__name__ if not isinstance(runner, str) else runner,
        skipped=len(done),
        failure=failure(manifest, plan.config),
        rows_resumed=sum(unit.rows_out for unit in done.values()),
    )


def _progress(
    plan: Plan, options: PipelineOptions, done: Mapping[str, UnitResult], show: bool, every: float | None
) -> tuple[contextlib.AbstractContextManager, Any]:
    """The progress reporter of a run (a no-op when ``show`` is false or the units are planned
    on the workers) and its :class:`~beamscore.progress.RowCounter` where the workers can
    append to a file on this machine (local runners, Dask), else ``None``."""
    if not show or plan.on_workers:
        return contextlib.nullcontext(), None
    from beamscore.progress import PROGRESS_EVERY, Progress, RowCounter, receipts_lister

    counter = None
    if runner_name(options) in (*LOCAL_RUNNERS, DASK_RUNNER):
        fd, path = tempfile.mkstemp(prefix=f"beamscore-progress-{os.getpid()}-", suffix=".txt")
        os.close(fd)
        counter = RowCounter(path)
    todo = {u.name: u.rows for u in plan.units if u.name not in done}
    reporter = Progress(
        todo,
        receipts_lister(plan.config.output),
        sys.stderr,
        rows=counter,
        every=PROGRESS_EVERY if every is None else every,
        launch=launch_facts(plan, options, done),
    )
    return reporter, counter


def launch_facts(plan: Plan, options: PipelineOptions, done: Mapping[str, UnitResult]) -> dict[str, Any]:
    """What the launch line says: the model, the inputs, files and rows planned, the output."""
    todo = [u for u in plan.units if u.name not in done]
    return {
        "model": f"{plan.model.path} [{plan.signature.key}]",
        "inputs": ", ".join(plan.config.inputs),
        "files": len(plan.files),
        "rows_planned": sum(u.rows for u in todo) if plan.source.counts_rows else None,
        "units_planned": len(todo),
        "units_resumed": len(done) or None,
        "output": plan.config.output,
        "date": plan.config.date,
        "runner": runner_name(options),
    }


def _read_manifest(plan: Plan) -> dict[str, Any]:
    fs, root = bfs.filesystem(plan.config.output)
    manifest_path = bfs.join(root, MANIFEST)
    fs.invalidate_cache(root)
    if not fs.exists(manifest_path):
        raise JobFailed(f"the job ended without writing {plan.config.output}/{MANIFEST}")
    with fs.open(manifest_path, "r") as f:
        return json.load(f)


def _finished(plan: Plan, options: PipelineOptions, started: Started) -> JobResult:
    """``--resume`` on an output this job already finished: nothing to run."""
    manifest = _finalize(plan, _settle(plan, _read_manifest(plan)))
    return JobResult(
        manifest=manifest,
        seconds=0.0,
        runner=runner_name(options),
        skipped=int(manifest.get("units", 0)),
        failure=failure(manifest, plan.config),
        complete=True,
    )


def _finalize(plan: Plan, manifest: dict[str, Any]) -> dict[str, Any]:
    """A succeeded job's last step, on the launcher: what its sink does once every unit is
    written (a Delta table output commits the job's files in one commit,
    :meth:`~beamscore.io.base.Sink.finalize`); its record is added to the manifest as
    ``table_commit`` (rewritten atomically). A failed job (too many rows failed) commits nothing."""
    if failure(manifest, plan.config) is not None:
        return manifest
    done = plan.sink.finalize(manifest)
    if done is None or manifest.get("table_commit") == done:
        return manifest
    manifest = {**manifest, "table_commit": done}
    fs, root = bfs.filesystem(plan.config.output)
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    bfs.write_atomic(fs, bfs.join(root, MANIFEST), data, bfs.join(root, TEMP_DIR))
    remove_temporary(plan.config.output)
    return manifest


def failure(manifest: Mapping[str, Any], config: ScoreConfig) -> str | None:
    """Why a finished job counts as failed (too many rows failed) under the limits of
    ``config``, or ``None`` (:func:`~beamscore.transforms.manifest.failure_reason`)."""
    limits = {"max_failed_rows": config.max_failed_rows, "max_failed_fraction": config.max_failed_fraction}
    return failure_reason(int(manifest["rows_in"]), int(manifest["rows_failed"]), limits, config.output)


def _settle(plan: Plan, manifest: dict[str, Any]) -> dict[str, Any]:
    """A finished output met again by ``--resume``: judge it by this run's failure limits
    (a retry may allow more failed rows) and, where the verdict differs from the recorded
    one (or none is recorded), rewrite the manifest's status and ``_SUCCESS`` to match."""
    config = plan.config
    reason = failure(manifest, config)
    limits = {"max_failed_rows": config.max_failed_rows, "max_failed_fraction": config.max_failed_fraction}
    status = "failed" if reason else "succeeded"
    if (manifest.get("status"), manifest.get("status_reason"), manifest.get("failure_limits")) == (
        status,
        reason,
        limits,
    ):
        return manifest
    manifest = {"status": status, "status_reason": reason, **manifest}  # status first, as written
    manifest.update(status=status, status_reason=reason, failure_limits=limits)
    fs, root = bfs.filesystem(config.output)
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    bfs.write_atomic(fs, bfs.join(root, MANIFEST), data, bfs.join(root, TEMP_DIR))
    remove_temporary(config.output)
    mark_success(config.output, reason is None)
    return manifest


def _cancel(running: Any) -> bool:
    """Ask a remote runner to cancel its job; whether it took the request."""
    if running is None:  # interrupted while submitting: whether a job started is unknown
        return False
    try:
        running.cancel()
    except Exception:  # noqa: BLE001 - any runner's failure to cancel means the same here
        return False
    return True


def prepare(
    config: ScoreConfig, beam_args: Sequence[str] = (), trial_child: Any = None
) -> tuple[Plan, PipelineOptions, list[str]]:
    """Plan a job and its Beam options and check that they can launch; the first half of
    ``beamscore score`` and :func:`score` alike. Returns the plan, the options and warnings.
    ``trial_child``: the trial call's process, started early by the CLI
    (:func:`~beamscore.pipelines.trial_apart.start_early`)."""
    from beamscore.pipelines.dry_run import check_launch

    with watch_stores():
        plan = plan_job(config, trial_apart=_workers_apart(config, beam_args), trial_child=trial_child)
    options = pipeline_options(list(beam_args), config.pipeline_options, None if plan.on_workers else len(plan.units))
    return plan, options, check_launch(plan, options)


def _workers_apart(config: ScoreConfig, beam_args: Sequence[str]) -> bool:
    """Whether the job's workers will be other processes than this one (a multi-process local
    runner, a remote runner): then the trial call's copy of the model is of no use here. A
    flag Beam refuses is left to :func:`pipeline_options` after planning, as before."""
    try:
        return not in_process(pipeline_options(list(beam_args), config.pipeline_options))
    except Exception:  # noqa: BLE001 - refused later, in its own words
        return False


#: what Beam pipelines call their list of flags, which score() takes as ``beam_args``
_BEAM_ARGS_NAMES = ("argv", "args", "beam_options", "flags", "options", "pipeline_args")

#: score()'s job settings: the fields of ScoreConfig but the paths and where they came from
SETTINGS = frozenset(f.name for f in dataclasses.fields(ScoreConfig)) - {"model", "inputs", "output", "origins"}
#: settings given as lists or dicts (copied, so the job never holds the caller's object)
_COLLECTIONS = frozenset({"map", "keep", "pad", "outputs", "imports", "allow_ops", "pipeline_options", "models"})


#: what to say for keywords that are no misspelling of one of score()'s
_KEYWORD_HINTS: dict[str, str] = dict.fromkeys(
    _BEAM_ARGS_NAMES, "Beam flags go in beam_args=[...], as on a command line"
)


@strict_keywords_with(_KEYWORD_HINTS)
def score(
    model: str | os.PathLike[str],
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | None = None,
    beam_args: Sequence[str] = (),
    progress: bool = False,
    # The job's settings: one keyword per ScoreConfig field, under its name (a test keeps the
    # two lists equal: a field added to ScoreConfig is added here). None: from ``config`` or
    # the default.
    signature: str | None = None,
    tag_set: str | None = None,
    version: int | None = None,
    format: str | None = None,
    map: Mapping[str, str] | None = None,
    keep: Sequence[str] | None = None,
    cast: bool | None = None,
    rows_per_unit: int | None = None,
    compression: str | None = None,
    pad: Mapping[str, Any] | None = None,
    allow_pickle: bool | None = None,
    outputs: Sequence[str] | None = None,
    output_format: str | None = None,
    output_compression: str | None = None,
    output_compression_level: int | None = None,
    overwrite: bool | None = None,
    force: bool | None = None,
    resume: bool | None = None,
    reject_nan: bool | None = None,
    max_failed_rows: int | None = None,
    max_failed_fraction: float | None = None,
    batch_size: int | None = None,
    model_copies: int | None = None,
    jit_compile: bool | None = None,
    imports: Sequence[str] | None = None,
    allow_ops: Sequence[str] | None = None,
    pipeline_options: Mapping[str, Any] | None = None,
    plan_on_workers: bool | None = None,
    allow_empty: bool | None = None,
    date: Any = None,
    table_version: int | None = None,
    table_as_of: str | None = None,
    where: str | None = None,
    raw_files: bool | None = None,
    models: Mapping[str, Any] | None = None,
    route_by: str | None = None,
    max_models_per_worker: int | None = None,
    batch_multiple: int | None = None,
    trial: bool | None = None,
) -> dict[str, Any]:
    """Run a ``beamscore score`` job from Python (a notebook, a scheduler) and return its
    manifest: the CLI's code path, :func:`prepare` then :func:`run_plan`.

    The keywords after ``progress`` are the job's settings under their config names (the
    fields of :class:`~beamscore.config.ScoreConfig`: ``signature``, ``keep``, ``map``,
    ``outputs``, ``batch_size``, ``overwrite``, ``resume``, ``max_failed_rows``,
    ``pipeline_options={"runner": ...}``...); one left at ``None`` comes from ``config`` (a
    YAML job config) or the default. A misspelt keyword is a ``TypeError`` naming the likely
    one. ``beam_args`` are Beam flags as on the command line; ``date`` is ``--date`` (a
    ``datetime.date`` or ``"YYYY-MM-DD"``). Paths may be ``os.PathLike``.

    Outcomes, as the CLI's exit codes (:mod:`beamscore.exitcodes`):

    - the manifest is returned: the job succeeded (``"status": "succeeded"``, ``_SUCCESS``
      written; exit 0);
    - :class:`~beamscore.errors.RowsFailed`: more rows failed than the limits allow; the
      outputs and the manifest (``exc.manifest``, ``"status": "failed"``) are written,
      ``_SUCCESS`` is not (exit 1);
    - :class:`~beamscore.errors.BeamscoreError` (not a ``JobFailed``): refused before anything
      was written (exit 2);
    - :class:`~beamscore.errors.TryLater` (a ``BeamscoreError``): no input yet, inputs with no
      rows (unless ``allow_empty=True``), the output held by another job; retry later (exit 75);
    - :class:`~beamscore.errors.JobFailed` (not a ``RowsFailed``): the job crashed (a worker,
      the runner, a store); nothing is committed past the receipts and ``resume=True``
      continues it (exit 3). ``RowsFailed`` is a subclass: catch it first;
    - ``KeyboardInterrupt`` / :class:`~beamscore.errors.Terminated`: stopped (exit 130; 143
      for SIGTERM, 129 for SIGHUP: ``exc.signum``).
    """
    given = {k: v for k, v in locals().items() if k in SETTINGS and v is not None}
    options = {k: _copied(v) if k in _COLLECTIONS else v for k, v in given.items()}
    with as_found(), speaking(SCORE):
        base = load_yaml(os.fspath(config)) if config else ScoreConfig()
        paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
        job = base.merged(
            {
                "model": os.fspath(model),
                "inputs": [os.fspath(path) for path in paths],
                "output": os.fspath(output),
                **options,
            }
        )
        plan, pipeline, warnings = prepare(job, beam_args)
        for warning in warnings:
            _LOG.warning("beamscore: warning: %s", warning)
        result = run_plan(plan, pipeline, progress=progress)
    if result.failure:
        raise RowsFailed(result.failure, result.manifest)
    return result.manifest


def _copied(value: Any) -> Any:
    """A list or dict setting as the config holds it (a tuple as a list; a string as given,
    for the config's own refusal)."""
    if isinstance(value, Mapping):
        return dict(value)
    return value if isinstance(value, str) else list(value)


@contextlib.contextmanager
def as_found() -> Iterator[None]:
    """Leave the caller's process as it was: :func:`score` runs in someone's notebook or
    scheduler, so the environment (``BEAMSCORE_LAUNCHER_PID``, set for a local run's
    workers), the signal handlers, the root and ``beamscore`` loggers' handlers and levels
    and the working directory are put back however the job ends."""
    env = dict(os.environ)
    cwd = os.getcwd()
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in _SIGNALS} if main else {}
    loggers = [logging.getLogger(), logging.getLogger("beamscore")]
    logs = [(lg, list(lg.handlers), lg.level) for lg in loggers]
    try:
        yield
    finally:
        for key in set(os.environ) - set(env):
            del os.environ[key]
        for key, value in env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        for sig, handler in handlers.items():
            if handler is not None and signal.getsignal(sig) != handler:
                signal.signal(sig, handler)
        for lg, kept, level in logs:
            lg.handlers[:] = kept
            lg.setLevel(level)
        if os.getcwd() != cwd:
            os.chdir(cwd)


_SIGNALS = [
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")) if s
]
