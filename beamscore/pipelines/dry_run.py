"""``beamscore score --dry-run``: everything a job would do, checked and printed, nothing run.

It is how a user checks a Dataflow or Flink job before paying for it. The plan is the one a
real run uses (:func:`~beamscore.pipelines.plan.plan_job`: model, signature, schema, files,
work units); on top of it this module checks the runner's options
(:func:`~beamscore.pipelines.runners.launch_problems`), whether the paths can be reached by
remote workers, and whether the output directory would be accepted. For ``DaskRunner`` it
also asks the cluster (:func:`~beamscore.pipelines.dask_cluster.check_cluster`): scheduler
reachable, workers present, beamscore importable on each. It only reads: no output directory
is created, no job is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.pipelines.claim import CLAIM_FILE
from beamscore.pipelines.overwrite import check_others, survey
from beamscore.pipelines.plan import Plan
from beamscore.pipelines.runners import (
    DASK_RUNNER,
    LOCAL_RUNNERS,
    describe_runner,
    launch_problems,
    option_flag,
    runner_name,
)
from beamscore.transforms.manifest import MANIFEST
from beamscore.wording import option

__all__ = ["check_launch", "output_state", "render_plan"]

#: How many input files and work units the text lists before "... and N more".
LIST_LIMIT = 5


def workers_in_this_process(options: PipelineOptions) -> bool:
    """Whether the runner runs its SDK workers in this process (``LOOPBACK``, which
    PrismRunner uses unless told otherwise), so they see this machine's files."""
    environment = options.view_as(PortableOptions).environment_type
    if runner_name(options) == "PrismRunner" and not environment:
        return True
    return (environment or "").upper() == "LOOPBACK"


def check_launch(plan: Plan, options: PipelineOptions) -> list[str]:
    """The warnings about launching ``plan`` with ``options``; errors raise :class:`BeamscoreError`.

    Besides the runner's own options: a remote runner's workers cannot read paths on this
    machine, so local model, input or output paths are flagged (for Dask, unless the
    scheduler is on loopback: its workers then share this machine's files; for any runner
    whose workers run in this process, ``--environment_type=LOOPBACK``, PrismRunner's default).
    """
    errors, warnings = launch_problems(options)
    if errors:
        raise BeamscoreError("; ".join(errors))
    remote = runner_name(options) not in LOCAL_RUNNERS and not workers_in_this_process(options)
    if runner_name(options) == DASK_RUNNER:
        from beamscore.pipelines.dask_cluster import check_cluster

        cluster = check_cluster(options)
        if cluster.errors:
            raise BeamscoreError("; ".join(cluster.errors))
        warnings += cluster.warnings
        remote = cluster.address is not None and not cluster.on_this_machine
    if remote:
        places = [("model", m.model.path) for m in plan.models or [plan]] + [("output", plan.config.output)]
        places += [("input", f) for f in plan.files[:1]]
        for what, url in places:
            if bfs.is_local(bfs.filesystem(url)[0]):
                verb = "write" if what == "output" else "read"
                warnings.append(f"{what} {url} is on this machine; {runner_name(options)} workers cannot {verb} it")
    return warnings


def output_state(
    output: str, overwrite: bool, resume: bool = False, force: bool = False, planned: set[str] | None = None
) -> str:
    """What a run would find at ``output``, read-only; raises where the run would refuse it.

    ``planned``: the files the job would write (a foreign file at one of them is refused)."""
    fs, root = bfs.filesystem(output)
    if not fs.exists(root):
        return "new directory"
    if not fs.isdir(root):
        raise BeamscoreError(f"output {output!r} exists and is not a directory")
    entries = [e for e in fs.ls(root, detail=False) if e.rstrip("/").rsplit("/", 1)[-1] != CLAIM_FILE]
    held = " (another job holds its claim now)" if fs.exists(bfs.join(root, CLAIM_FILE)) else ""
    if not entries:
        return "empty directory" + held
    found = survey(output)
    finished = found.finished
    what = "a finished result (_manifest.json)" if finished else f"{len(entries)} entries"
    if resume and not finished and not overwrite:
        return f"holds {what}; --resume continues the unfinished job (units already written are skipped)" + held
    if resume and finished and not overwrite:
        return f"holds {what}; --resume reports it complete if it is this job's" + held
    if not overwrite:
        raise BeamscoreError(
            f"output {output!r} is not empty: it holds {what}; pass {option('overwrite')} to replace it"
        )
    check_others(output, found, force, planned or set())
    kept = f", keeps {len(found.others)} other file(s)" if found.others else ""
    return f"holds {what}; --overwrite removes beamscore's {len(found.ours)} file(s){kept}" + held


def render_plan(plan: Plan, options: PipelineOptions, warnings: list[str], output: str) -> str:
    """The plan as text: model, signature binding, inputs, units, output layout, runner, options."""
    cfg = plan.config
    lines = ["dry run: nothing was submitted", ""]
    if plan.several:  # every model of the job, each as one model's plan is shown
        if plan.routed:
            bound = cfg.max_models_per_worker
            lines.append(
                f"models:      {len(plan.models)}, each row scored by the model its column {cfg.route_by!r} names"
                + (f" (at most {bound} loaded at once per worker)" if bound else "")
            )
        else:
            lines.append(f"models:      {len(plan.models)}, each batch read once and scored by every model")
        for m in plan.models:
            lines += ["", f"model {m.name!r}:"]
            lines += [
                "  " + line for line in _model_lines(m.model, m.signature, m.tag_set, m.bindings, m.outputs, m.columns)
            ]
    else:
        lines += _model_lines(plan.model, plan.signature, cfg.tag_set, plan.bindings, plan.outputs, plan.outputs)
    if cfg.keep:
        lines.append(f"kept columns: {', '.join(cfg.keep)}")
    rows = sum(u.rows for u in plan.units)
    counted = f"{rows:,} rows, {len(plan.units)} work unit(s)"
    if plan.on_workers:
        counted = "rows and work units counted on the workers (--plan-on-workers; only the first file read here)"
    lines += [
        "",
        f"input:       {len(plan.files)} {plan.source.format} file(s), {counted}, batches of {plan.batch_size:,} rows",
    ]
    if plan.table is not None:
        from beamscore.tables.snapshot import table_line

        lines.append(f"table:       {table_line(plan.table.to_json())}")
    lines += [f"  {f}" for f in plan.files[:LIST_LIMIT]]
    if len(plan.files) > LIST_LIMIT:
        lines.append(f"  ... and {len(plan.files) - LIST_LIMIT} more")
    if not plan.on_workers:
        lines.append("units (input file -> output file):")
    for u in plan.units[:LIST_LIMIT]:
        lines.append(f"  {u.path} [{u.start}:{u.stop}] {u.rows:,} rows -> {u.name}.{plan.sink.format}")
    if len(plan.units) > LIST_LIMIT:
        lines.append(f"  ... and {len(plan.units) - LIST_LIMIT} more")
    lines += [
        "",
        f"output:      {cfg.output} ({output})",
        f"  {plan.sink.format} files part-SSSSS-UUUUU.{plan.sink.format}, then {MANIFEST} last",
        "",
        f"runner:      {describe_runner(options)}",
        "pipeline options:",
    ]
    given = options.get_all_options(drop_default=True, retain_unknown_options=True)
    flags = sorted((option_flag(name), value) for name, value in given.items())
    lines += [f"  --{flag}={_flag_value(value)}" for flag, value in flags] or ["  (none)"]
    if warnings:
        lines += ["", "warnings:"] + [f"  - {w}" for w in warnings]
    return "\n".join(lines)


def _model_lines(
    model: Any, sig: Any, tag_set: str, bindings: Mapping[str, Any], outputs: Sequence[str], columns: Sequence[str]
) -> list[str]:
    """One model's part of the plan: path, fingerprint, signature, inputs and outputs."""
    lines = [
        f"model:       {model.path}" + (f" (version {model.version} of {model.given})" if model.version else ""),
        f"fingerprint: {model.fingerprint or 'none'}",
        f"signature:   {sig.key} (tag set {tag_set})",
        "inputs:",
    ]
    for key, b in sorted(bindings.items()):
        spec = b.composite or sig.inputs[key]  # a ragged or sparse input: its own dtype and dense shape
        kind = f"{b.composite.kind} " if b.composite else ""
        cast = f", cast to {b.dtype}" if b.cast else ""
        lines.append(f"  {key:<12} {kind}{spec.dtype} {spec.shape_str():<16} <- column {b.column!r}{cast}")
    lines.append("outputs:")
    lines += [
        f"  {column:<12} {sig.outputs[key].dtype} {sig.outputs[key].shape_str()}"
        for key, column in zip(outputs, columns, strict=True)
    ]
    return lines


def _flag_value(value: object) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)
