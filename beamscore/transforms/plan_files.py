"""``PlanFiles``: input files in, work units out, planned on the workers (``--plan-on-workers``).

For inputs too many to plan on the launcher even concurrently, the launcher lists the files
and checks the first one only; the file list is reshuffled over the workers, and each
worker reads a file's footer or header, checks its schema against the first file's (the
same :class:`~beamscore.io.schemas.SameSchema` the launcher runs), writes the file's
receipt (``OUTPUT/_units/_files/SSSSS.json``, see
:func:`~beamscore.transforms.receipts.write_file_receipt`) and emits its units. A unit is
named from its file's shard number and its place in the file, so the units are the ones the
launcher would have planned, and so are the output files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import apache_beam as beam

from beamscore.errors import BeamscoreError, in_stage
from beamscore.io.base import Source, WorkUnit
from beamscore.io.schemas import file_has_rows
from beamscore.transforms.receipts import write_file_receipt

__all__ = ["PlanFileFn", "PlanFiles", "file_elements"]


class PlanFileFn(beam.DoFn):
    """``(shard, facts)`` -> the file's work units; a file whose schema differs fails the job."""

    def __init__(self, source: Source, check: Callable | None, output: str) -> None:
        self.source = source
        self.check = check
        self.output = output
        self.files = beam.metrics.Metrics.counter("beamscore", "files_planned")

    def process(self, element: tuple[int, dict]) -> Iterator[WorkUnit]:
        try:
            yield from self._process(element)
        except BeamscoreError:
            raise
        except Exception as exc:  # the launcher's one line names file and stage
            raise in_stage(element[1]["url"], f"file {element[0]}", "plan", exc) from exc

    def _process(self, element: tuple[int, dict]) -> Iterator[WorkUnit]:
        shard, facts = element
        file_plan = self.source.plan_file(facts["url"], shard, None, facts.get("size"))
        if self.check is not None and file_has_rows(self.source, file_plan):
            self.check(facts["url"], file_plan.columns)
        write_file_receipt(self.output, shard, facts, [[u.name, u.rows] for u in file_plan.units])
        self.files.inc()
        yield from file_plan.units


class PlanFiles(beam.PTransform):
    """Spread ``(shard, facts)`` pairs over the workers and plan each file there."""

    def __init__(self, source: Source, check: Callable | None, output: str) -> None:
        super().__init__()
        self.source = source
        self.check = check
        self.output = output

    def expand(self, files):
        return (
            files
            | "SpreadFiles" >> beam.Reshuffle()
            | "PlanFile" >> beam.ParDo(PlanFileFn(self.source, self.check, self.output))
        )


def file_elements(facts: Iterable) -> list[tuple[int, dict]]:
    """The ``(shard, facts)`` elements of :class:`PlanFiles` for a job's listed files."""
    return [(shard, f.to_json()) for shard, f in enumerate(facts)]
