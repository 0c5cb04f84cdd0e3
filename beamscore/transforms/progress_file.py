"""``ReportRows``: each batch that passes appends its row count to the launcher's progress file.

Beam's metrics reach the launcher of a local run (or a Dask job) only when the job has ended,
so the launcher's progress line (:mod:`beamscore.progress`) reads this file instead. A line
of a few bytes appended with ``O_APPEND`` is one atomic write, so worker threads and processes
can share the file. Where the file does not exist (a worker on another machine) the step
reports nothing and the launcher goes by the unit receipts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import apache_beam as beam

from beamscore.transforms.batch import Batch

__all__ = ["ReportRows"]


class ReportRows(beam.DoFn):
    """Batches in, the same batches out; appends ``rows_in`` of each to the file ``path``
    (which the launcher created: it is never created here)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def setup(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError:  # not on the launcher's machine: progress goes by unit receipts
            self._fd = None

    def process(self, batch: Batch) -> Iterator[Batch]:
        if self._fd is not None:
            try:
                os.write(self._fd, b"%d\n" % batch.source_rows)
            except OSError:
                self._fd = None
        yield batch

    def teardown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
