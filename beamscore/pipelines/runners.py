"""Pick the Beam runner for a job.

Beam's ``DirectRunner`` first tries the Prism runner, which it downloads; offline that
attempt fails after a delay and Beam falls back. For ``DirectRunner`` (and when no runner is
given) beamscore runs Beam's in-process ``FnApiRunner`` directly: the same engine the
DirectRunner falls back to, no download, and it honours
``--direct_running_mode=multi_processing --direct_num_workers=N``. Any other runner
(Dataflow, Flink, Portable, Prism) is passed to Beam by name.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

__all__ = ["LOCAL_RUNNERS", "make_runner", "pipeline_options"]

LOCAL_RUNNERS = ("DirectRunner", "FnApiRunner", "SwitchingDirectRunner")


def pipeline_options(flags: list[str], from_config: dict[str, Any]) -> PipelineOptions:
    """Beam options from the config's ``pipeline_options`` overridden by CLI flags."""
    args: list[str] = []
    for key, value in from_config.items():
        if isinstance(value, bool):
            if value:
                args.append(f"--{key}")
        elif isinstance(value, list):
            args.extend(f"--{key}={v}" for v in value)
        else:
            args.append(f"--{key}={value}")
    return PipelineOptions([*args, *flags])


def make_runner(options: PipelineOptions) -> PipelineRunner | str:
    """A runner instance for local runs, the runner's name for everything else."""
    name = options.view_as(StandardOptions).runner or "DirectRunner"
    if name in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return name
