"""Check the Dask cluster a ``--runner=DaskRunner`` job would run on, before submitting.

Asked by ``--dry-run`` and by every real run (:func:`~beamscore.pipelines.dry_run.check_launch`):
the scheduler (``--dask_client_address`` or ``--dask_scheduler_file``) must answer within the
connection timeout, it must have workers, and every worker must be able to import beamscore
(a worker without it fails each task with ``No module named 'beamscore'``, after the job has
started). Each failure is one line naming the scheduler or the worker.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from beamscore.errors import first_line

__all__ = ["ClusterCheck", "check_cluster", "worker_versions"]

#: Seconds to wait for the scheduler when ``--dask_connection_timeout`` is not given.
CONNECT_TIMEOUT_S = 10
#: The loopback hosts: workers of a scheduler there run on this machine and read its paths.
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class ClusterCheck:
    """What :func:`check_cluster` found: the scheduler's address, each worker's thread count,
    and the errors and warnings about launching on it."""

    address: str | None = None
    workers: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def on_this_machine(self) -> bool:
        """Whether the scheduler listens on loopback (its workers then share this machine's files)."""
        if self.address is None:
            return False
        host = self.address.split("://", 1)[-1].rsplit(":", 1)[0]
        return host in LOOPBACK


def worker_versions() -> dict[str, Any]:
    """Run on each worker (pickled by value, so it runs where beamscore is missing): what the
    worker can import, with versions, or the import error's first line."""
    import importlib
    import importlib.metadata
    import importlib.util
    import platform

    found: dict[str, Any] = {"python": platform.python_version(), "pid": os.getpid()}
    try:
        found["beamscore"] = importlib.import_module("beamscore").__version__
    except Exception as exc:  # noqa: BLE001 - any import failure is the answer
        found["beamscore_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        found["apache_beam"] = importlib.metadata.version("apache-beam")
    except importlib.metadata.PackageNotFoundError:
        found["apache_beam"] = None
    found["tensorflow"] = importlib.util.find_spec("tensorflow") is not None
    return found


def check_cluster(options: PipelineOptions) -> ClusterCheck:
    """Connect to the options' Dask scheduler and check its workers (nothing is submitted).

    With neither ``--dask_client_address`` nor ``--dask_scheduler_file`` there is nothing to
    check: Beam starts a local cluster (``launch_problems`` warns about that)."""
    from beamscore.pipelines.runners import dask_options

    dask = dask_options(options)
    check = ClusterCheck(address=dask.address)
    if not (dask.address or dask.scheduler_file):
        return check
    where = (
        f"the Dask scheduler at {dask.address}" if dask.address else f"the Dask scheduler file {dask.scheduler_file}"
    )
    if dask.scheduler_file and not dask.address and not os.path.exists(dask.scheduler_file):
        check.errors.append(f"--dask_scheduler_file {dask.scheduler_file} does not exist")
        return check
    timeout = dask.timeout if isinstance(dask.timeout, int) else CONNECT_TIMEOUT_S
    import cloudpickle
    from distributed import Client

    try:
        client = Client(
            address=dask.address, scheduler_file=None if dask.address else dask.scheduler_file, timeout=timeout,
            set_as_default=False,
        )  # fmt: skip
    except (OSError, TimeoutError, ValueError) as exc:
        check.errors.append(f"cannot reach {where} within {timeout}s: {first_line(str(exc)) or type(exc).__name__}")
        return check
    try:
        check.address = client.scheduler.address
        check.workers = {addr: info.get("nthreads", 0) for addr, info in client.scheduler_info()["workers"].items()}
        if not check.workers:
            check.errors.append(f"{where} has no workers; start some with: dask worker {check.address}")
            return check
        module = sys.modules[__name__]
        cloudpickle.register_pickle_by_value(module)  # the worker may lack beamscore: send the code itself
        try:
            found = client.run(worker_versions, on_error="return")
        finally:
            cloudpickle.unregister_pickle_by_value(module)
        _judge(check, found)
    finally:
        client.close()
    return check


def _judge(check: ClusterCheck, found: dict[str, Any]) -> None:
    """Errors for workers that cannot run beamscore, warnings for version differences."""
    from apache_beam import __version__ as beam_version

    from beamscore._version import __version__

    here = {"beamscore": __version__, "apache_beam": beam_version, "python": sys.version.split()[0]}
    for worker, got in sorted(found.items()):
        if isinstance(got, BaseException):
            check.errors.append(
                f"Dask worker {worker} could not run a check: {type(got).__name__}: {first_line(str(got))}"
            )
        elif "beamscore_error" in got:
            check.errors.append(f"Dask worker {worker} cannot import beamscore: {got['beamscore_error']}")
        elif not got["apache_beam"] or not got["tensorflow"]:
            missing = [name for name in ("apache_beam", "tensorflow") if not got[name]]
            check.errors.append(f"Dask worker {worker} lacks {' and '.join(missing)}")
        else:
            for name, version in here.items():
                if got[name] != version:
                    check.warnings.append(f"Dask worker {worker} runs {name} {got[name]}, this machine {version}")
