"""Pick the Beam runner for a job, and check a runner's options before anything is submitted.

Beam's ``DirectRunner`` first tries the Prism runner, which it downloads; offline that
attempt fails after a delay and Beam falls back. For ``DirectRunner`` (and when no runner is
given) beamscore runs Beam's in-process ``FnApiRunner`` directly: the same engine the
DirectRunner falls back to, no download, with two worker threads unless told otherwise, and
it honours ``--direct_running_mode=multi_processing --direct_num_workers=N``. Any other runner
(Dataflow, Flink, Portable, Prism) is passed to Beam by name.

``DaskRunner`` (a ``dask.distributed`` cluster) needs three things Beam 2.77 does not do by
itself: its short name is unknown to Beam (beamscore hands Beam an instance), its options
(``--dask_client_address`` ...) exist only once Beam's dask module is imported (beamscore
imports it before parsing when a Dask runner or option is named), and it puts up to 128 work
units into one Dask partition, so a small job runs on one worker (:func:`spread_units` gives
each unit its own partition unless ``--dask_npartitions``/``--dask_partition_size`` is given).

:func:`launch_problems` is what ``--dry-run`` (and every real run) asks before submitting:
the options a remote runner cannot work without, and option names Beam does not know (Beam
itself drops those with a log line nobody reads): either refuses the job, exit 2.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.runners.runner import PipelineRunner

from beamscore.errors import BeamscoreError, JobFailed, first_line
from beamscore.flags import runner_key

__all__ = [
    "DASK_RUNNER",
    "LOCAL_RUNNERS",
    "ResultLost",
    "describe_runner",
    "launch_problems",
    "local_worker_processes",
    "make_runner",
    "pipeline_options",
    "release",
    "runner_name",
    "spread_units",
    "unknown_options",
    "wait_for",
]

LOCAL_RUNNERS = ("DirectRunner", "FnApiRunner", "SwitchingDirectRunner")
#: Runners whose workers run elsewhere and need beamscore installed in their image.
REMOTE_RUNNERS = ("DataflowRunner", "FlinkRunner", "PortableRunner", "SparkRunner")
#: Beam's runner for ``dask.distributed`` clusters, by the short name beamscore accepts.
DASK_RUNNER = "DaskRunner"
_DASK_MODULE = "apache_beam.runners.dask.dask_runner"
#: At most this many Dask partitions by default (one per work unit up to it): every partition
#: is a task per step, and the manifest's gather shuffles over all of them.
MAX_DASK_PARTITIONS = 1000


#: Local runs use this many FnApiRunner worker threads unless --direct_running_mode or
#: --direct_num_workers is given: a second thread reads and writes one unit while the model
#: runs on another (measured: +21% rows/s on 2 cores for the demo MLP, 200k rows). A job of
#: one unit gets one: a second would only be started and set up (its gRPC channels, bundle
#: processors, DoFn set-up), never used (a one-file job's start-up, median of nine: 5.98 ->
#: 5.16 CPU s here, with the lighter Beam import).
LOCAL_THREADS = 2


class _Options(PipelineOptions):
    """``PipelineOptions`` that make each view (``view_as(StandardOptions)``...) once.

    Beam makes a new view, parsing every flag again, each time one is asked for: about 200
    times while it builds and submits beamscore's pipeline (type checks ask per transform),
    a few tenths of a second of every job's start-up. A view shares its values with the
    options (``_all_options``), so a kept one stays current. Copies and pickles leave the
    cache behind."""

    def view_as(self, cls):
        views = self.__dict__.get("_views")
        if views is None:
            views = {}
            object.__setattr__(self, "_views", views)  # Beam's __setattr__ takes only option names
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def pipeline_options(flags: list[str], from_config: dict[str, Any], units: int | None = None) -> PipelineOptions:
    """Beam options from the config's ``pipeline_options`` overridden by CLI flags.

    For the local runner, when neither ``--direct_running_mode`` nor ``--direct_num_workers``
    is given, :data:`LOCAL_THREADS` worker threads are used, or fewer when the job has fewer
    ``units`` (``None``: not known yet, e.g. planned on the workers).
    """
    args = [*config_flags(from_config), *flags]
    if any(DASK_RUNNER in a or a.startswith("--dask_") for a in args):
        register_dask_options()
        if all(any(a.startswith(f"--dask_{n}") for a in args) for n in ("npartitions", "partition_size")):
            # Beam's parser would print its whole usage and exit
            raise BeamscoreError("--dask_npartitions and --dask_partition_size exclude each other; give one")
    options = _Options(args)
    chose_mode = any(a.startswith(("--direct_running_mode", "--direct_num_workers")) for a in args)
    if runner_name(options) in LOCAL_RUNNERS and not chose_mode:
        threads = LOCAL_THREADS if units is None else max(1, min(LOCAL_THREADS, units))
        options = _Options([*args, "--direct_running_mode=multi_threading", f"--direct_num_workers={threads}"])
    return options


def register_dask_options() -> None:
    """Import Beam's dask module, which defines the ``--dask_*`` options (Beam parses only
    options whose class has been imported); refuse with an install hint when dask is missing."""
    try:
        import importlib

        importlib.import_module(_DASK_MODULE)
    except ImportError as exc:
        raise BeamscoreError(
            f"DaskRunner needs dask and distributed ({exc}); install them with: pip install 'beamscore[dask]'"
        ) from None


def dask_options(options: PipelineOptions) -> Any:
    """The options' ``DaskOptions`` view (address, scheduler_file, npartitions, partition_size, timeout)."""
    from apache_beam.runners.dask.dask_runner import DaskOptions

    return options.view_as(DaskOptions)


def spread_units(options: PipelineOptions, units: int) -> PipelineOptions:
    """For DaskRunner without ``--dask_npartitions``/``--dask_partition_size``: one Dask
    partition per work unit (at most :data:`MAX_DASK_PARTITIONS`), so that units spread over the
    workers. Beam's default (128 elements per partition) runs a job of fewer units on one worker.
    Sets ``--dask_npartitions`` on ``options`` itself and returns them; other runners' options
    are returned unchanged."""
    if runner_name(options) != DASK_RUNNER:
        return options
    dask = dask_options(options)
    if not (dask.npartitions or dask.partition_size):
        dask.npartitions = max(1, min(units, MAX_DASK_PARTITIONS))
    return options


def config_flags(from_config: dict[str, Any]) -> list[str]:
    """``--key=value`` flags of a config's ``pipeline_options`` (lists repeat the flag)."""
    args: list[str] = []
    for key, value in from_config.items():
        if isinstance(value, bool):
            if value:
                args.append(f"--{key}")
        elif isinstance(value, list):
            args.extend(f"--{key}={v}" for v in value)
        else:
            args.append(f"--{key}={value}")
    return args


def runner_name(options: PipelineOptions) -> str:
    """The runner the options ask for (``DirectRunner`` when none is given), spelled as
    :func:`canonical_runner` spells it."""
    name = options.view_as(StandardOptions).runner or "DirectRunner"
    name = name if isinstance(name, str) else type(name).__name__
    return DASK_RUNNER if name == f"{_DASK_MODULE}.{DASK_RUNNER}" else canonical_runner(name)


def canonical_runner(name: str) -> str:
    """Beam's own spelling of a runner name given the ways Beam accepts it (any case, with
    or without ``Runner``: ``direct``, ``dataflow``, ``flinkrunner``), so that every check
    here (local or remote, Dataflow's options, Dask) sees the runner Beam will run: ``direct``
    was taken for a remote runner before. A fully qualified class name is kept as given. An
    unknown name is refused here, before anything is planned or written (Beam refused it
    only when the job started, after the output was claimed: exit 3)."""
    if "." in name:
        return name
    known = _known_runners()
    found = known.get(runner_key(name))
    if found is not None:
        return found
    close = difflib.get_close_matches(runner_key(name), list(known), n=1, cutoff=0.6)
    hint = f"did you mean {known[close[0]]}? " if close else ""
    raise BeamscoreError(
        f"--runner {name}: not a runner Beam knows; {hint}"
        f"known: {', '.join(sorted(known.values()))}, or a PipelineRunner class by its full name"
    )


@functools.cache
def _known_runners() -> dict[str, str]:
    """:func:`~beamscore.flags.runner_key` -> Beam's spelling, for every runner Beam names and Dask."""
    return {runner_key(n): n for n in (*StandardOptions.KNOWN_RUNNER_NAMES, DASK_RUNNER)}


def make_runner(options: PipelineOptions) -> PipelineRunner | str:
    """A runner instance for local runs, the runner's name for everything else."""
    if runner_name(options) in LOCAL_RUNNERS:
        return _local_runner()(provision_info=_worker_log_levels(options))
    if runner_name(options) == DASK_RUNNER:  # Beam knows it only by its full name: hand it an instance
        register_dask_options()
        from apache_beam.runners.dask.dask_runner import DaskRunner

        return DaskRunner()
    return runner_name(options)


#: what Beam's FnApiRunner runs as a ``multi_processing`` worker, and what beamscore runs instead
_BEAM_WORKER = "-m apache_beam.runners.worker.sdk_worker_main"
_OUR_WORKER = "-m beamscore.worker_main"


#: how long the ``multi_threading`` SDK harness may hold its output before a timed flush (a
#: week: never within a job; the size-based flush, at element boundaries, still applies)
UNTIMED_FLUSH_MS = 7 * 24 * 3600 * 1000


def _local_runner() -> type:
    """Beam's FnApiRunner, starting its ``multi_processing`` workers through
    :mod:`beamscore.worker_main`, so that each watches its launcher from its first instant
    (Beam picks the worker command inside ``run_pipeline``; the subclass rewrites it as it
    is set).

    Its ``multi_threading`` workers (beamscore's default local mode) get no timed flush of
    their output stream. Beam 2.77's embedded gRPC harness flushes that stream every second
    from another thread, without waiting for the element being written: when an element's
    encoding runs Python code (a pickled ``WorkUnit``, ``Batch`` or ``UnitResult``), the
    flush can cut it in two, and the runner decodes each piece alone. The stream is then read
    out of step: ``NotImplementedError: Invalid PaneInfoEncoding: 6`` (a byte of a file name
    read as a pane header: ``--plan-on-workers``, issue 33), or a length read from the wrong
    bytes, which Beam's ``InputStream.read`` does not bound (a 22 GB process, OOM-killed).
    ``benchmarks/flush_race.py`` reproduces it with Beam alone."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import EmbeddedPythonGrpcEnvironment, SubprocessSDKEnvironment

    class WatchedWorkersRunner(FnApiRunner):
        @property
        def _default_environment(self) -> Any:
            return self._environment

        @_default_environment.setter
        def _default_environment(self, environment: Any) -> None:
            command = getattr(environment, "command_string", "")
            if isinstance(environment, SubprocessSDKEnvironment) and _BEAM_WORKER in command:
                environment = SubprocessSDKEnvironment.from_command_string(command.replace(_BEAM_WORKER, _OUR_WORKER))
            if isinstance(environment, EmbeddedPythonGrpcEnvironment) and environment.data_buffer_time_limit_ms is None:
                environment = EmbeddedPythonGrpcEnvironment(
                    state_cache_size=environment.state_cache_size,
                    data_buffer_time_limit_ms=UNTIMED_FLUSH_MS,
                    capabilities=environment.capabilities(),
                    artifacts=environment.artifacts(),
                    resource_hints=environment.resource_hints(),
                )
            self._environment = environment

    WatchedWorkersRunner.__name__ = WatchedWorkersRunner.__qualname__ = "FnApiRunner"
    return WatchedWorkersRunner


def local_worker_processes(options: PipelineOptions) -> bool:
    """Whether the job runs in SDK worker processes on this machine that share its stderr
    (``--direct_running_mode=multi_processing``)."""
    mode = options.view_as(DirectOptions).direct_running_mode
    return runner_name(options) in LOCAL_RUNNERS and mode == "multi_processing"


def _worker_log_levels(options: PipelineOptions) -> Any:
    """What the FnApiRunner tells its worker processes about logging: their log level options.

    Created directly (not through the DirectRunner), Beam's FnApiRunner hands its SDK worker
    processes no pipeline options at all, so ``--default_sdk_harness_log_level`` and
    ``--sdk_harness_log_level_overrides`` would never reach them."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner.fn_runner import ExtendedProvisionInfo
    from google.protobuf import struct_pb2

    worker = options.view_as(WorkerOptions)
    levels = {
        "beam:option:default_sdk_harness_log_level:v1": worker.default_sdk_harness_log_level,
        "beam:option:sdk_harness_log_level_overrides:v1": worker.sdk_harness_log_level_overrides,
    }
    given = struct_pb2.Struct()
    given.update({k: v for k, v in levels.items() if v})
    return ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(retrieval_token="unused-retrieval-token", pipeline_options=given)
    )


class ResultLost(JobFailed):
    """A remote job's result was cancelled or lost before its units all ended (Dask): tasks
    already on the workers may still commit units, so the launcher keeps its claim."""


def wait_for(result: Any) -> None:
    """Wait until a started run has ended, and raise when it did not end well.

    Beam's ``DaskRunnerResult.wait_until_finish`` takes a *cancelled* Dask future for a
    finished one (``distributed.as_completed`` hands it back like any other and only
    ``"error"`` futures raise), so a job whose futures were cancelled (the client lost its
    scheduler connection, the scheduler restarted or forgot the keys) was reported done
    while its units were still unwritten, and ``beamscore.score()`` went on to look for a
    manifest that never came. Here every Dask future must have finished; any other end
    raises :class:`ResultLost` with Dask's reason."""
    result.wait_until_finish()
    for future in getattr(result, "futures", None) or ():
        status = getattr(future, "status", "finished")
        if status == "finished":
            continue
        if status == "error":
            future.result()  # raises the worker's exception
        state = getattr(future, "_state", None)
        why = getattr(state, "exception", None) if state is not None else None
        raise ResultLost(
            f"the Dask job's result was {status} before its units all ended"
            f"{f' ({first_line(str(why))})' if why is not None else ''}"
        )


def release(result: Any) -> None:
    """Close what a finished run leaves open: Beam's DaskRunner never closes its Dask
    ``Client``, which then outlives the job (and, once the cluster is gone, retries the
    scheduler for 30 s with tracebacks) in a process that goes on, e.g. ``beamscore.score()``."""
    client = getattr(result, "client", None)
    if client is not None and hasattr(client, "close"):
        client.close()


def describe_runner(options: PipelineOptions) -> str:
    """One line saying where the job runs, e.g. ``FnApiRunner: 2 worker processes on this machine``."""
    name = runner_name(options)
    if name in LOCAL_RUNNERS:
        direct = options.view_as(DirectOptions)
        mode = direct.direct_running_mode or "in_memory"
        workers = direct.direct_num_workers or 1
        where = {
            "in_memory": "in this process",
            "multi_threading": f"{workers} thread{'s' if workers != 1 else ''} in this process",
            "multi_processing": f"{workers} worker processes on this machine",
        }.get(mode, mode)
        return f"FnApiRunner (Beam's local engine, no Prism download): {where}"
    if name == "DataflowRunner":
        gcp = options.view_as(GoogleCloudOptions)
        return f"DataflowRunner: project {gcp.project}, region {gcp.region}"
    if name == "FlinkRunner":
        master = options.get_all_options(retain_unknown_options=True).get("flink_master")
        return f"FlinkRunner: Flink master {master or '[auto]'}"
    if name == "PortableRunner":
        return f"PortableRunner: job service {options.view_as(PortableOptions).job_endpoint}"
    if name == DASK_RUNNER:
        dask = dask_options(options)
        if dask.npartitions:
            parts = f"{dask.npartitions} partitions"
        elif dask.partition_size:
            parts = f"partitions of {dask.partition_size} work units"
        else:
            parts = "one partition per work unit"
        where = (
            f"scheduler {dask.address}"
            if dask.address
            else f"scheduler file {dask.scheduler_file}"
            if dask.scheduler_file
            else "a throwaway local Dask cluster"
        )
        return f"DaskRunner: {where}, {parts}"
    return name


def option_flag(name: str) -> str:
    """The command-line flag of a parsed option, e.g. ``dask_client_address`` for Beam's
    ``address`` (most Beam options are stored under their flag's name; Dask's are not)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    for action in parser._actions:
        if action.dest == name and action.option_strings and f"--{name}" not in action.option_strings:
            return action.option_strings[0].lstrip("-")
    return name


def unknown_options(options: PipelineOptions) -> list[str]:
    """Names of given options that no Beam options class defines (typos, wrong runner)."""
    known = options.get_all_options()
    given = options.get_all_options(retain_unknown_options=True)
    return sorted(name for name in given if name not in known)


def _unknown_option(name: str, options: PipelineOptions) -> str:
    """The refusal of an option no Beam options class defines (Beam itself would drop it with
    a log line nobody reads, and the job would run without it), with the nearest known name."""
    from beamscore.flags import beam_options, score_flags, suggestion

    known = [f"--{n}" for n in {*options.get_all_options(), *(beam_options() or {})}]
    return (
        f"unknown option --{name} (neither a beamscore flag nor a Beam pipeline option)"
        f"{suggestion(name, [*score_flags(), *known])}"
    )


def launch_problems(options: PipelineOptions) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` about the runner options, found without contacting anything.

    Errors are options a job cannot run without; warnings are likely mistakes.
    """
    errors = [_unknown_option(name, options) for name in unknown_options(options)]
    warnings: list[str] = []
    name = runner_name(options)
    all_options = options.get_all_options(retain_unknown_options=True)
    portable = options.view_as(PortableOptions)
    image = options.view_as(WorkerOptions).sdk_container_image or (
        portable.environment_config if portable.environment_type in ("DOCKER", "EXTERNAL") else None
    )
    if name == "DataflowRunner":
        gcp = options.view_as(GoogleCloudOptions)
        for flag, value in (("project", gcp.project), ("region", gcp.region), ("temp_location", gcp.temp_location)):
            if not value:
                errors.append(f"DataflowRunner needs --{flag}")
        if gcp.temp_location and not gcp.temp_location.startswith("gs://"):
            errors.append(f"--temp_location must be a gs:// URL for DataflowRunner, got {gcp.temp_location!r}")
        setup = options.view_as(SetupOptions)
        if not (image or setup.setup_file or setup.requirements_file or setup.extra_packages):
            errors.append(
                "Dataflow workers need beamscore installed: build the worker image (Dockerfile) "
                "and pass --sdk_container_image=IMAGE"
            )
    elif name == "FlinkRunner":
        if all_options.get("flink_master") in (None, "[auto]", "[local]"):
            warnings.append("no --flink_master: FlinkRunner starts an embedded Flink and downloads its job server")
        if not image:
            warnings.append(
                "no worker image: Flink would start Beam's stock SDK image, which lacks beamscore; "
                "pass --environment_type=EXTERNAL --environment_config=localhost:50000 (worker pool sidecar) "
                "or --sdk_container_image=IMAGE"
            )
    elif name == "PortableRunner" and not portable.job_endpoint:
        errors.append("PortableRunner needs --job_endpoint=HOST:PORT of a Beam job service")
    elif name == DASK_RUNNER:
        register_dask_options()
        dask = dask_options(options)
        if not (dask.address or dask.scheduler_file):
            warnings.append(
                "no --dask_client_address or --dask_scheduler_file: DaskRunner starts a throwaway local "
                "Dask cluster on this machine"
            )
    if name in REMOTE_RUNNERS and portable.environment_type == "LOOPBACK":
        warnings.append("--environment_type=LOOPBACK runs the workers in this process: fine for tests only")
    return errors, warnings
