"""``WriteManifest``: after every unit is committed, write ``_manifest.json`` last.

The manifest is the commit marker of a job: no manifest, no result. It is written by one
step that runs only after all :class:`~beamscore.transforms.batch.UnitResult` s are in.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam

from beamscore import fs as bfs
from beamscore._version import __version__
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.dead_letters import ERRORS_DIR
from beamscore.transforms.temp import TEMP_DIR, clean_temp_dir

__all__ = ["MANIFEST", "WriteManifest", "versions", "write_manifest"]

MANIFEST = "_manifest.json"


def versions() -> dict[str, str]:
    """Versions of the pieces that made a result (worker images depend on them)."""
    import pyarrow
    import tensorflow as tf

    return {
        "beamscore": __version__,
        "tensorflow": tf.__version__,
        "apache_beam": beam.__version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }


def write_manifest(
    output: str,
    header: Mapping[str, Any],
    results: Iterable[UnitResult],
    previous: Iterable[UnitResult] = (),
    expected_units: Iterable[str] | None = None,
) -> dict:
    """Write ``OUTPUT/_manifest.json`` from the job header and every unit's result.

    ``previous`` are the results of units an earlier run committed (``--resume``). When
    ``expected_units`` is given, a unit missing from the results is an error and no manifest
    is written: a manifest always covers the whole job."""
    new = list(results)
    old = list(previous)
    by_unit = {r.unit: r for r in [*old, *new]}
    if expected_units is not None:
        missing = sorted(set(expected_units) - set(by_unit))
        if missing:
            raise RuntimeError(f"units {missing[:5]} have no result; the manifest is not written")
    ordered = [by_unit[name] for name in sorted(by_unit)]
    manifest = {
        **header,
        "outputs": [f for r in ordered for f in r.files],
        "errors": [f for r in ordered for f in r.errors],
        "units": len(ordered),
        "units_resumed": len({r.unit for r in old} - {r.unit for r in new}),
        "rows_in": sum(r.rows_in for r in ordered),
        "rows_out": sum(r.rows_out for r in ordered),
        "rows_failed": sum(r.rows_failed for r in ordered),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    fs, root = bfs.filesystem(output)
    data = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
    bfs.write_atomic(fs, bfs.join(root, MANIFEST), data, bfs.join(root, TEMP_DIR))
    for directory in (root, bfs.join(root, ERRORS_DIR)):
        clean_temp_dir(fs, bfs.join(directory, TEMP_DIR))
    return manifest


class WriteManifest(beam.PTransform):
    """Gather all unit results, then write the manifest (one element, written last).

    ``previous`` and ``expected_units`` as in :func:`write_manifest`."""

    def __init__(
        self,
        output: str,
        header: Mapping[str, Any],
        previous: Iterable[UnitResult] = (),
        expected_units: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        self.output = output
        self.header = dict(header)
        self.previous = list(previous)
        self.expected_units = None if expected_units is None else list(expected_units)

    def expand(self, results):
        output, header, previous, expected = self.output, self.header, self.previous, self.expected_units
        return (
            results
            | "Gather" >> beam.combiners.ToList()
            | "Write" >> beam.Map(lambda rs: write_manifest(output, header, rs, previous, expected))
        )
