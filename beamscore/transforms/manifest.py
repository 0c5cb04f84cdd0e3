"""``WriteManifest``: after every unit is committed, write ``_manifest.json`` last.

The manifest is the commit marker of a job: no manifest, no result. It is written by one
step that runs only after all :class:`~beamscore.transforms.batch.UnitResult` s are in.
Its ``status`` says whether the job succeeded: ``"failed"`` when more rows failed than the
header's ``failure_limits`` allow (``status_reason`` says by how much). Then, last of all,
an empty ``_SUCCESS`` file (the Hadoop/Spark convention that Airflow sensors and Spark
readers know) is written only when the status is ``"succeeded"``, and removed otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
from collections.abc import Iterable, Mapping
from typing import Any

import apache_beam as beam

from beamscore import fs as bfs
from beamscore._version import __version__
from beamscore.transforms import stopping
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.dead_letters import ERRORS_DIR
from beamscore.transforms.temp import TEMP_DIR, clean_temp_dir
from beamscore.wording import bare, current, option, speaking

__all__ = [
    "MANIFEST",
    "SUCCESS",
    "WriteManifest",
    "device",
    "failure_reason",
    "job_header",
    "mark_success",
    "metrics",
    "model_counts",
    "remove_temporary",
    "versions",
    "write_manifest",
]

MANIFEST = "_manifest.json"
#: written last, empty, only when the job succeeded (status "succeeded")
SUCCESS = "_SUCCESS"


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


def device(results: Iterable[UnitResult]) -> str | None:
    """Where the model ran: ``"GPU:0 (NVIDIA L4)"`` or ``"CPU"``; several devices (a job
    whose workers differ) are listed, sorted; ``None`` when no unit was scored."""
    found = sorted({r.device for r in results if r.device})
    return ", ".join(found) if found else None


def metrics(results: Iterable[UnitResult]) -> dict[str, Any]:
    """The counters an operator asks about, over every unit (resumed ones included): batches
    and their mean rows and latency in the scoring step, model loads, worker processes
    (``host:pid``) and loads per worker (more than 1: the model was loaded again)."""
    results = list(results)
    batches = sum(r.batches for r in results)
    loads = sum(r.model_loads for r in results)
    workers = len({r.worker for r in results if r.worker})
    latencies = sorted(ms for r in results for ms in r.batch_ms)
    return {
        "batches": batches,
        "batch_rows_mean": round(sum(r.rows_in for r in results) / batches, 1) if batches else None,
        "batch_latency_ms_mean": round(1000 * sum(r.batch_seconds for r in results) / batches, 3) if batches else None,
        **{f"batch_latency_ms_p{q}": _percentile(latencies, q) for q in (50, 95, 99)},
        # seconds in each stage over every worker: read (the source's format into Arrow),
        # decode (Arrow into the signature's inputs), model (the scoring step less decode and
        # encode), encode (outputs into Arrow), write (the sink)
        "stage_seconds": stage_seconds(results),
        "model_loads": loads,
        "model_load_ms_mean": round(1000 * sum(r.model_load_seconds for r in results) / loads, 1) if loads else None,
        "workers": workers,
        "model_loads_per_worker": round(loads / workers, 2) if workers else None,
    }


def stage_seconds(results: Iterable[UnitResult]) -> dict[str, float]:
    """Seconds in each stage, summed over ``results``: read, decode, model, encode, write.
    Receipts of an older beamscore have no decode or encode: their scoring step is model."""
    results = list(results)
    decode = sum(r.decode_seconds for r in results)
    encode = sum(r.encode_seconds for r in results)
    return {
        "read": round(sum(r.read_seconds for r in results), 3),
        "decode": round(decode, 3),
        "model": round(max(0.0, sum(r.batch_seconds for r in results) - decode - encode), 3),
        "encode": round(encode, 3),
        "write": round(sum(r.write_seconds for r in results), 3),
    }


def _percentile(ordered: list[float], q: float) -> float | None:
    """The ``q``-th percentile of sorted values (nearest rank), ``None`` when there are none
    (receipts of an older beamscore hold no batch latencies)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return round(ordered[int(rank) - 1], 3)


def failure_reason(rows_in: int, rows_failed: int, limits: Mapping[str, Any] | None, output: str) -> str | None:
    """Why a job with these counts failed, or ``None`` when it succeeded.

    ``limits`` holds ``max_failed_rows`` and ``max_failed_fraction`` (``None``: not set).
    With neither set any failed row fails the job; with one or both set, every limit given
    must hold."""
    if not rows_failed:
        return None
    limits = limits or {}
    max_rows, max_fraction = limits.get("max_failed_rows"), limits.get("max_failed_fraction")
    fraction = rows_failed / rows_in if rows_in else 1.0
    checks = []
    if max_rows is not None:
        checks.append((rows_failed <= max_rows, option("max_failed_rows", str(max_rows))))
    if max_fraction is not None:
        checks.append((fraction <= max_fraction, option("max_failed_fraction", str(max_fraction))))
    if not checks:
        checks.append((False, f"no failed rows allowed by default; see {bare('max_failed_rows')}"))
    broken = [text for ok, text in checks if not ok]
    if not broken:
        return None
    where = bfs.join(output, "_errors")
    return (
        f"{rows_failed:,} of {rows_in:,} rows failed ({fraction:.2%}), over the limit ({'; '.join(broken)}); "
        f"see {where}/"
    )


def model_counts(
    models: Iterable[Mapping[str, Any]],
    results: Iterable[UnitResult],
    rows_in: int,
    rows_out: int,
    routed: bool = False,
) -> list[dict[str, Any]]:
    """Each model of a several-model job (the header's ``models``) with its counts over every
    unit: ``rows_failed`` (rows it could not score, unread rows included), ``rows_held``
    (rows it scored that another model failed: not written) and ``loads``; for each,
    ``rows_in == rows_out + rows_failed + rows_held``. ``routed`` (``--route-by``): each
    model's ``rows_in`` and ``rows_out`` are the rows routed to it and scored by it."""
    results = list(results)
    found = []
    for model in models:
        name = model["name"]
        counts = [r.models.get(name, {}) for r in results]
        failed = sum(int(c.get("rows_failed", 0)) for c in counts)
        held = sum(int(c.get("rows_held", 0)) for c in counts)
        if routed:
            rows_in = sum(int(c.get("rows_in", 0)) for c in counts)
            rows_out = sum(int(c.get("rows_out", 0)) for c in counts)
        found.append(
            {
                **model,
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_failed": failed,
                "rows_held": held,
                "loads": sum(int(c.get("loads", 0)) for c in counts),
            }
        )
    return found


def mark_success(output: str, succeeded: bool) -> None:
    """Write the empty ``OUTPUT/_SUCCESS`` when ``succeeded``, else remove a stale one.

    A link planted at that name is removed, never written through."""
    fs, root = bfs.filesystem(output)
    path = bfs.join(root, SUCCESS)
    if bfs.is_local(fs):
        if os.path.lexists(path):
            os.unlink(path)
        if succeeded:
            bfs.write_new_local(path, b"")
        return
    if succeeded:
        fs.pipe_file(path, b"")
    else:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)


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
    header = dict(header)
    if header.get("units_planned", 0) is None and expected_units is not None:  # planned on the workers
        header["units_planned"] = len(set(expected_units))
    rows_in, rows_failed = sum(r.rows_in for r in ordered), sum(r.rows_failed for r in ordered)
    reason = failure_reason(rows_in, rows_failed, header.get("failure_limits"), output)
    manifest = {
        "status": "failed" if reason else "succeeded",
        "status_reason": reason,
        **header,
        "outputs": [f for r in ordered for f in r.files],
        "errors": [f for r in ordered for f in r.errors],
        "units": len(ordered),
        "units_resumed": len({r.unit for r in old} - {r.unit for r in new}),
        "rows_in": rows_in,
        "rows_out": sum(r.rows_out for r in ordered),
        "rows_failed": rows_failed,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device(ordered),
        "metrics": metrics(ordered),
        "versions": versions(),
    }
    if header.get("models"):  # several models: each one's counts and verdict
        routed = bool(header.get("route_by"))
        manifest["models"] = model_counts(header["models"], ordered, rows_in, manifest["rows_out"], routed)
    fs, root = bfs.filesystem(output)
    data = (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()
    with stopping.writing(output) as go:
        if go:  # not when the job in this process was stopped: it is visibly unfinished
            bfs.write_atomic(fs, bfs.join(root, MANIFEST), data, bfs.join(root, TEMP_DIR))
            remove_temporary(output)
            mark_success(output, reason is None)  # last: a sensor waiting for _SUCCESS sees a whole result
    return manifest


def remove_temporary(output: str) -> None:
    """Remove our own files from ``OUTPUT/_temporary/`` and ``OUTPUT/_errors/_temporary/``
    once every unit is committed (what is left there are files of attempts that failed);
    anything else there is the user's and stays (:func:`~beamscore.transforms.temp.clean_temp_dir`)."""
    fs, root = bfs.filesystem(output)
    for directory in (root, bfs.join(root, ERRORS_DIR)):
        clean_temp_dir(fs, bfs.join(directory, TEMP_DIR))


def job_header(**fields: Any) -> dict[str, Any]:
    """The header :class:`WriteManifest` writes when given none: who wrote the manifest,
    when, and the ``fields`` given (``model``, ``inputs``... whatever the pipeline knows)."""
    return {
        "written_by": "beamscore pipeline (WriteManifest)",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **fields,
    }


class WriteManifest(beam.PTransform):
    """UnitResults (from ``WriteParquet``/``WriteBatches``) -> the written manifest (one dict).

    Gathers every unit's result, then writes ``OUTPUT/_manifest.json`` last. ``header`` is
    the job's description copied to the top of the manifest (``beamscore score`` puts the
    model, signature, inputs and options there); without one, :func:`job_header` is used.
    The manifest adds ``status`` and ``status_reason``, ``outputs``, ``errors``, ``units``,
    ``rows_in``, ``rows_out``, ``rows_failed``, ``finished``, ``metrics`` (:func:`metrics`)
    and ``versions``; ``_SUCCESS`` follows when the status is ``"succeeded"`` (by the header's
    ``failure_limits``, or no failed row at all without them). ``previous`` and
    ``expected_units`` as in :func:`write_manifest`; ``expected_units`` may also be a
    PCollection holding one list of unit names (units planned on the workers)."""

    def __init__(
        self,
        output: str | os.PathLike[str],
        header: Mapping[str, Any] | None = None,
        previous: Iterable[UnitResult] = (),
        expected_units: Iterable[str] | beam.PCollection | None = None,
    ) -> None:
        super().__init__()
        self.output = os.fspath(output)
        self.header = dict(header) if header is not None else job_header()
        self.previous = list(previous)
        self.expected_units = expected_units
        if expected_units is not None and not isinstance(expected_units, beam.PCollection):
            self.expected_units = list(expected_units)
        #: the front end whose words status_reason uses (the launcher's: beamscore.wording)
        self.front = current()

    def expand(self, results):
        output, header, previous, expected = self.output, self.header, self.previous, self.expected_units
        front = self.front
        gathered = results | "Gather" >> beam.combiners.ToList()
        if isinstance(expected, beam.PCollection):
            return gathered | "Write" >> beam.Map(
                lambda rs, names: _write_as(front, output, header, rs, previous, names),
                beam.pvalue.AsSingleton(expected),
            )
        return gathered | "Write" >> beam.Map(lambda rs: _write_as(front, output, header, rs, previous, expected))


def _write_as(front: str, *args: Any) -> dict[str, Any]:
    """:func:`write_manifest` with messages in the words of the front end that built the job."""
    with speaking(front):
        return write_manifest(*args)
