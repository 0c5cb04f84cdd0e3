"""Entry point of the SDK worker processes of a local ``multi_processing`` run.

Beam starts each worker as ``python -m apache_beam.runners.worker.sdk_worker_main``;
beamscore's local runner starts ``python -m beamscore.worker_main`` instead, which starts
the launcher watch (:mod:`beamscore.transforms.watchdog`) before anything else is imported,
then hands over to Beam's own ``sdk_worker_main``. A worker whose launcher is killed at any
moment, even while the worker is still importing TensorFlow, ends within
:data:`~beamscore.transforms.watchdog.POLL_S` seconds, instead of living on until its first
DoFn is set up (or for ever, when it never gets one).
"""

from __future__ import annotations

import sys

from beamscore.transforms.watchdog import watch_launcher


def main() -> None:
    """Watch the launcher, then run Beam's SDK worker with this process's arguments."""
    watch_launcher()
    from beamscore.store_watch import watch_worker_stores

    watch_worker_stores()
    import_beam()
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


def import_beam() -> None:
    """Import Beam as the ``beamscore`` program does on a local runner (these workers run
    only local jobs): without the cloud clients Beam imports only because they are installed
    (:mod:`beamscore._beam_import`), a few tenths of a CPU second of each worker's start."""
    from beamscore._beam_import import import_beam_for_local_job

    import_beam_for_local_job()


if __name__ == "__main__":
    main()
