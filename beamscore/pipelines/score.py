"""Wire a :class:`~beamscore.pipelines.plan.Plan` into a Beam pipeline and run it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.pipelines.plan import Plan, prepare_output
from beamscore.pipelines.runners import make_runner
from beamscore.transforms.manifest import MANIFEST, WriteManifest
from beamscore.transforms.read import ReadBatches
from beamscore.transforms.run_signature import RunSignatureFn
from beamscore.transforms.write import WriteBatches

__all__ = ["JobResult", "build_pipeline", "run_plan"]


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports: the manifest and the wall time."""

    manifest: dict[str, Any]
    seconds: float
    runner: str


def build_pipeline(p: beam.Pipeline, plan: Plan) -> None:
    """Units -> read -> score -> write -> manifest. Wiring only."""
    results = (
        p
        | "Units" >> beam.Create(plan.units)
        | "Read" >> ReadBatches(plan.source, plan.read_columns, plan.batch_size)
        | "Run" >> beam.ParDo(RunSignatureFn(plan.spec, plan.signature, plan.bindings, plan.outputs, plan.config.keep))
        | "Write" >> WriteBatches(plan.sink, plan.file_metadata())
    )
    _ = results | "Manifest" >> WriteManifest(plan.config.output, plan.header())


def run_plan(plan: Plan, options: PipelineOptions) -> JobResult:
    """Run the job to completion and read back its manifest."""
    prepare_output(plan.config.output, plan.config.overwrite)
    runner = make_runner(options)
    start = time.perf_counter()
    with beam.Pipeline(runner=runner, options=options) as p:
        build_pipeline(p, plan)
    seconds = time.perf_counter() - start
    fs, root = bfs.filesystem(plan.config.output)
    manifest_path = bfs.join(root, MANIFEST)
    if not fs.exists(manifest_path):
        raise BeamscoreError(f"the job ended without writing {plan.config.output}/{MANIFEST}")
    import json

    with fs.open(manifest_path, "r") as f:
        manifest = json.load(f)
    return JobResult(
        manifest=manifest, seconds=seconds, runner=type(runner).__name__ if not isinstance(runner, str) else runner
    )
