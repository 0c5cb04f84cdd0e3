"""``beamscore report OUT``: what an output directory holds, without writing code.

Reads the manifest (or, for a job that has not finished, the unit receipts in ``_units/``),
the footer of every part file, the dead letters in ``_errors/`` and the values of every
numeric model output, and prints a summary (:func:`render_text`) or one self-contained HTML
page (:func:`render_html`: inline CSS and SVG, nothing fetched from a network).

Memory stays flat whatever the output's size: files are read one at a time, in batches of
at most ``batch_rows`` rows of the numeric output columns only (``ParquetFile.iter_batches``;
``.npy`` files are read ``batch_rows`` rows at a time), and the statistics are streaming: a
first pass keeps count, NaNs, sum, min and max; a second pass fills a histogram of ``BINS``
equal bins between min and max, from which the quantiles are read (each is exact to within
one bin, ``(max - min) / BINS``). Neither TensorFlow nor Beam is imported.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beamscore import fs as bfs
from beamscore.console import human_size
from beamscore.errors import BeamscoreError
from beamscore.exitcodes import EXIT_OK, EXIT_ROWS_FAILED, EXIT_TEMPFAIL
from beamscore.paths import safe_component
from beamscore.tables.snapshot import table_line

__all__ = ["BINS", "QUANTILES", "Report", "build", "main", "render_html", "render_text"]

#: Histogram bins per numeric output (the quantiles' resolution); shown as DISPLAY_BINS bars.
BINS = 1024
DISPLAY_BINS = 64
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: Rows per batch read from a part file (one batch of the numeric outputs is in memory at a time).
BATCH_ROWS = 65_536
#: Distinct dead-letter reasons kept; the rest are counted under one "other reasons" line.
MAX_REASONS = 200
MANIFEST, UNITS, ERRORS, JOB = "_manifest.json", "_units", "_errors", "_job.json"


@dataclass
class FileFacts:
    """One output file: its name relative to the output, rows and bytes."""

    name: str
    rows: int
    bytes: int


@dataclass
class Reason:
    """Dead letters of one stage whose messages agree but for numbers (row indices, values)."""

    stage: str
    reason: str  # the message with every number written N
    example: str  # the first message seen
    rows: int = 0  # input rows (the sum of ``count``)
    letters: int = 0  # dead-letter rows in _errors/


@dataclass
class ColumnStats:
    """Streaming statistics of one numeric output over every part file."""

    name: str
    dtype: str
    per_row: int | None  # values per row (a fixed-size list or tensor), None for variable lists
    count: int = 0  # finite values
    nan: int = 0  # NaN or infinite values, left out of the figures below
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    integer: bool = False
    counts: np.ndarray | None = None  # histogram counts between min and max (see ``edges``)

    @property
    def exact_integers(self) -> bool:
        """Integers spanning at most BINS values: one bin per value, so exact quantiles."""
        return self.integer and self.count > 0 and self.max - self.min + 1 <= BINS

    @property
    def bins(self) -> int:
        return int(self.max - self.min) + 1 if self.exact_integers else BINS

    @property
    def range(self) -> tuple[float, float]:
        return (self.min, self.max + 1) if self.exact_integers else (self.min, self.max)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(*self.range, self.bins + 1) if self.count else np.zeros(0)

    def quantile(self, q: float) -> float:
        """The q-quantile read from the histogram: the value of rank ``ceil(q * count)`` (numpy's
        ``inverted_cdf``), exact for integers spanning at most BINS values, else interpolated
        within its bin and so exact to one bin width, ``(max - min) / BINS``."""
        if not self.count or self.counts is None:
            return math.nan
        if self.min == self.max:
            return self.min
        rank = q * self.count
        cumulative = np.cumsum(self.counts)
        i = min(int(np.searchsorted(cumulative, rank, side="left")), self.bins - 1)
        if self.exact_integers:  # one bin per integer value
            return float(self.min + i)
        before = cumulative[i - 1] if i else 0
        inside = self.counts[i]
        width = (self.max - self.min) / BINS
        offset = (rank - before) / inside if inside else 0.0
        return float(min(max(self.min + (i + offset) * width, self.min), self.max))


@dataclass
class Report:
    """The facts :func:`render_text` and :func:`render_html` show."""

    output: str
    output_format: str
    finished: bool
    status: str  # succeeded, failed (too many failed rows) or unfinished
    status_detail: str
    model: dict[str, Any]
    rows_in: int
    rows_out: int
    rows_failed: int
    units: int
    units_planned: int | None
    files: list[FileFacts]
    error_files: list[FileFacts]
    reasons: list[Reason]
    columns: list[ColumnStats]
    started: str | None = None
    finished_at: str | None = None
    skipped_columns: list[str] = field(default_factory=list)
    #: the input table's snapshot (the manifest's or job file's ``table``), ``None`` for files
    table: dict[str, Any] | None = None
    #: several models: each output two models write, compared (:mod:`beamscore.report_compare`)
    comparisons: list[Any] = field(default_factory=list)
    #: the manifest's metrics (batch latency percentiles, seconds per stage); {} when unfinished
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (``--json``); ``comparisons`` for an output of several models."""
        found = self._to_json()
        if self.comparisons:
            found["comparisons"] = [c.to_json() for c in self.comparisons]
        return found

    def _to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "output_format": self.output_format,
            "status": self.status,
            "status_detail": self.status_detail,
            "model": self.model,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_failed": self.rows_failed,
            "units": self.units,
            "units_planned": self.units_planned,
            "started": self.started,
            "finished": self.finished_at,
            "table": self.table,
            "metrics": self.metrics,
            "files": [vars(f) for f in self.files],
            "error_files": [vars(f) for f in self.error_files],
            "dead_letters": [vars(r) for r in self.reasons],
            "outputs": {
                c.name: {
                    "dtype": c.dtype,
                    "values_per_row": c.per_row,
                    "count": c.count,
                    "nan_or_inf": c.nan,
                    "min": _num(c.min),
                    "mean": _num(c.mean),
                    "max": _num(c.max),
                    "quantiles": {f"p{round(q * 100)}": _num(c.quantile(q)) for q in QUANTILES},
                }
                for c in self.columns
            },
        }


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def build(output: str, *, batch_rows: int = BATCH_ROWS) -> Report:
    """Read an output directory (any fsspec URL) into a :class:`Report`."""
    fs, root = bfs.filesystem(output)
    root = root.rstrip("/")
    manifest = _read_json(fs, posixpath.join(root, MANIFEST))
    job = _read_json(fs, posixpath.join(root, UNITS, JOB)) or {}
    if manifest is not None:
        outputs, errors = list(manifest.get("outputs", [])), list(manifest.get("errors", []))
        rows = (int(manifest["rows_in"]), int(manifest["rows_out"]), int(manifest["rows_failed"]))
        units, planned = int(manifest.get("units", 0)), manifest.get("units_planned")
        output_format = manifest.get("output_format", "parquet")
        names = manifest.get("columns", {}).get("outputs") or []
        status, detail = _status(manifest)
        model = dict(manifest.get("model", {}))
        started = manifest.get("started")
    else:
        receipts = _receipts(fs, root)
        if not receipts and not job:
            raise BeamscoreError(f"{output}: no beamscore output here (no {MANIFEST}, no {UNITS}/ receipts)")
        outputs = [f for r in receipts for f in r.get("files", [])]
        errors = [f for r in receipts for f in r.get("errors", [])]
        rows = tuple(sum(int(r.get(k, 0)) for r in receipts) for k in ("rows_in", "rows_out", "rows_failed"))
        units, planned = len(receipts), len(job.get("units", [])) or None
        output_format = job.get("output_format", "parquet")
        names = job.get("outputs") or []
        status = "unfinished"
        of = f" of {planned:,}" if planned else ""
        detail = f"no {MANIFEST}: {units:,}{of} units committed; rerun with --resume to finish the job"
        started = _job_started(fs, posixpath.join(root, UNITS, JOB))
        model = {
            "path": job.get("model_path"),
            "fingerprint": job.get("model_fingerprint"),
            "signature": job.get("signature"),
            "tag_set": job.get("tag_set"),
        }
    files = [_file_facts(fs, root, f, output_format) for f in sorted(outputs)]
    error_files = [_file_facts(fs, root, f, "parquet") for f in sorted(errors)]
    reasons = _reasons(fs, [_strip(fs, f) for f in sorted(errors)], batch_rows)
    if output_format == "npy":
        columns, skipped = _npy_stats(fs, root, sorted(outputs), names, batch_rows)
    else:
        columns, skipped = _parquet_stats(fs, [_strip(fs, f) for f in sorted(outputs)], names, batch_rows)
    comparisons = []
    if manifest is not None and manifest.get("models") and output_format == "parquet":
        from beamscore.report_compare import compare

        keep = list(manifest.get("columns", {}).get("keep") or [])
        comparisons, _ = compare(fs, [_strip(fs, f) for f in sorted(outputs)], manifest["models"], keep, batch_rows)
    return Report(
        output=output,
        output_format=output_format,
        finished=manifest is not None,
        status=status,
        status_detail=detail,
        model=model,
        rows_in=rows[0],
        rows_out=rows[1],
        rows_failed=rows[2],
        units=units,
        units_planned=planned,
        files=files,
        error_files=error_files,
        reasons=reasons,
        columns=columns,
        started=started,
        finished_at=(manifest or {}).get("finished"),
        skipped_columns=skipped,
        table=(manifest or {}).get("table") or job.get("table"),
        comparisons=comparisons,
        metrics=dict((manifest or {}).get("metrics") or {}),
    )


def _job_started(fs: Any, path: str) -> str | None:
    """When an unfinished job started: its job file's time (written as it starts), UTC."""
    try:
        when = fs.modified(path)
    except (OSError, NotImplementedError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def _latency(metrics: dict[str, Any]) -> str | None:
    """``p50 1.2 ms, p95 3.4 ms, p99 5.0 ms (mean 1.5 ms, 12 batches)``, or ``None``."""
    if metrics.get("batch_latency_ms_p50") is None:
        return None
    shown = ", ".join(f"p{q} {metrics[f'batch_latency_ms_p{q}']:,.1f} ms" for q in (50, 95, 99))
    mean = metrics.get("batch_latency_ms_mean")
    return shown + (f" (mean {mean:,.1f} ms, {metrics.get('batches', 0):,} batches)" if mean is not None else "")


def _stages(metrics: dict[str, Any]) -> str | None:
    """``read 0.41 s, model 2.10 s, write 0.33 s`` (summed over workers), or ``None``."""
    stages = metrics.get("stage_seconds")
    return ", ".join(f"{k} {v:,.2f} s" for k, v in stages.items()) if stages else None


def _read_json(fs: Any, path: str) -> dict | None:
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise BeamscoreError(f"{path}: not valid JSON ({exc})") from None


def _receipts(fs: Any, root: str) -> list[dict]:
    try:
        names = sorted(fs.ls(posixpath.join(root, UNITS), detail=False))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        base = posixpath.basename(name.rstrip("/"))
        if base.endswith(".json") and not base.startswith("_"):
            receipt = _read_json(fs, name)
            if receipt is not None:
                found.append(receipt)
    return found


def _strip(fs: Any, url: str) -> str:
    return fs._strip_protocol(url)


def _file_facts(fs: Any, root: str, url: str, output_format: str) -> FileFacts:
    path = _strip(fs, url)
    name = posixpath.relpath(path, root) if path.startswith(root + "/") else path
    size = int(fs.size(path))
    if path.endswith(".npy"):
        with fs.open(path, "rb") as f:
            shape, _fortran, _dtype = _npy_header(f)
        rows = int(shape[0]) if shape else 1
    else:
        with fs.open(path, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
    return FileFacts(name, rows, size)


def _npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _reason_key(message: str) -> str:
    return re.sub(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", "N", message)[:300]


def _reasons(fs: Any, paths: list[str], batch_rows: int) -> list[Reason]:
    """Dead letters by stage and reason, read a batch at a time (never the ``raw`` column)."""
    found: dict[tuple[str, str], Reason] = {}
    other: dict[str, Reason] = {}
    for path in paths:
        with fs.open(path, "rb") as f:
            names = pq.ParquetFile(f).schema_arrow.names
        columns = [c for c in ("stage", "error", "count") if c in names]
        for batch in _parquet_batches(fs, path, columns, batch_rows):
            stages = batch.column("stage").to_pylist()
            messages = batch.column("error").to_pylist()
            counts = batch.column("count").to_pylist() if "count" in columns else [1] * batch.num_rows
            for stage, message, count in zip(stages, messages, counts, strict=True):
                stage, message = stage or "?", message or ""
                key = (stage, _reason_key(message))
                reason = found.get(key)
                if reason is None:
                    if len(found) >= MAX_REASONS:
                        reason = other.setdefault(stage, Reason(stage, "(other reasons)", message))
                    else:
                        reason = found[key] = Reason(stage, key[1], message)
                reason.rows += int(count if count is not None else 1)
                reason.letters += 1
    return sorted([*found.values(), *other.values()], key=lambda r: (-r.rows, r.stage, r.reason))


def _numeric_leaf(type_: pa.DataType) -> tuple[pa.DataType, int | None] | None:
    """The numeric value type under lists/tensors and the values per row, or None if not numeric."""
    per_row: int | None = 1
    while True:
        if isinstance(type_, pa.ExtensionType):
            shape = getattr(type_, "shape", None)
            type_ = type_.storage_type
            if shape is not None and per_row is not None:
                per_row *= int(np.prod(shape))
                type_ = type_.value_type
            continue
        if pa.types.is_fixed_size_list(type_):
            per_row = per_row * type_.list_size if per_row is not None else None
            type_ = type_.value_type
        elif pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_list_view(type_):
            per_row, type_ = None, type_.value_type
        else:
            break
    if (pa.types.is_integer(type_) or pa.types.is_floating(type_)) and not pa.types.is_boolean(type_):
        return type_, per_row
    return None


def _flat_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Every number of a column batch in its own dtype (lists flattened, nulls dropped, float16
    widened to float32): no float64 copy of a batch, sums are taken in float64."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    while True:
        if isinstance(array, pa.ExtensionArray):
            array = array.storage
        elif (
            pa.types.is_fixed_size_list(array.type)
            or pa.types.is_list(array.type)
            or pa.types.is_large_list(array.type)
        ):
            array = pc.list_flatten(array)
        else:
            break
    array = array.drop_null()
    if pa.types.is_floating(array.type) and array.type.bit_width == 16:
        array = array.cast(pa.float32())
    return array.to_numpy(zero_copy_only=False)


def _finite(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]  # no copy when every value is finite


def _accumulate(stats: ColumnStats, values: np.ndarray) -> None:
    finite = _finite(values)
    stats.nan += values.size - finite.size
    if finite.size:
        stats.count += finite.size
        stats.total += float(finite.sum(dtype=np.float64))
        stats.min = min(stats.min, float(finite.min()))
        stats.max = max(stats.max, float(finite.max()))


def _bin(stats: ColumnStats, values: np.ndarray) -> None:
    finite = _finite(values)
    if stats.counts is None:
        stats.counts = np.zeros(stats.bins, dtype=np.int64)
    if finite.size:
        counts, _ = np.histogram(finite, bins=stats.bins, range=stats.range)
        stats.counts += counts


def _parquet_stats(fs: Any, paths: list[str], names: list[str], batch_rows: int) -> tuple[list[ColumnStats], list[str]]:
    if not paths:
        return [], []
    with fs.open(paths[0], "rb") as f:
        schema = pq.ParquetFile(f).schema_arrow
    columns, skipped = [], []
    for name in names or schema.names:
        if name not in schema.names:
            continue
        leaf = _numeric_leaf(schema.field(name).type)
        if leaf is None:
            skipped.append(name)
        else:
            columns.append(ColumnStats(name, str(leaf[0]), leaf[1], integer=pa.types.is_integer(leaf[0])))
    if not columns:
        return [], skipped
    by_name = {c.name: c for c in columns}
    for step in (_accumulate, _bin):  # two passes: the range first, then the histogram over it
        for path in paths:
            for batch in _parquet_batches(fs, path, list(by_name), batch_rows):
                for name, stats in by_name.items():
                    step(stats, _flat_values(batch.column(name)))
    return columns, skipped


def _parquet_batches(fs: Any, path: str, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The file's batches of ``columns``, one at a time, one row group after another.

    One ``iter_batches`` call per row group: a single call over the whole file keeps memory
    that grows with every row group it has read (pyarrow 25: 8 MiB more per 8 MiB row group)."""
    with fs.open(path, "rb") as f:
        parquet = pq.ParquetFile(f)
        for group in range(parquet.num_row_groups):
            yield from parquet.iter_batches(batch_size=batch_rows, columns=columns, row_groups=[group])


def _npy_stats(
    fs: Any, root: str, urls: list[str], names: list[str], batch_rows: int
) -> tuple[list[ColumnStats], list[str]]:
    by_dir: dict[str, list[str]] = {}
    for url in urls:
        path = _strip(fs, url)
        by_dir.setdefault(posixpath.basename(posixpath.dirname(path)), []).append(path)
    columns, skipped = [], []
    for name in names:
        paths = by_dir.get(safe_component(name))
        if not paths:
            continue
        with fs.open(paths[0], "rb") as f:
            shape, _fortran, dtype = _npy_header(f)
        if dtype.kind not in "iuf":
            skipped.append(name)
            continue
        per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        stats = ColumnStats(name, str(dtype), per_row, integer=dtype.kind in "iu")
        for step in (_accumulate, _bin):
            for path in paths:
                for values in _npy_batches(fs, path, batch_rows):
                    step(stats, values.reshape(-1))
        columns.append(stats)
    return columns, skipped


def _npy_batches(fs: Any, path: str, batch_rows: int) -> Iterator[np.ndarray]:
    with fs.open(path, "rb") as f:
        shape, fortran, dtype = _npy_header(f)
        if fortran:
            raise BeamscoreError(f"{path}: a Fortran-order .npy file; beamscore writes C order")
        rows = int(shape[0]) if shape else 1
        row_items = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        for start in range(0, rows, batch_rows):
            n = min(batch_rows, rows - start)
            data = f.read(n * row_items * dtype.itemsize)
            yield np.frombuffer(data, dtype=dtype)


def _status(manifest: dict) -> tuple[str, str]:
    """succeeded or failed: the manifest's own ``status`` (and ``status_reason``) where it has
    one, else judged from its ``failure_limits`` as ``beamscore score`` judges them."""
    failed, total = int(manifest["rows_failed"]), int(manifest["rows_in"])
    fraction = failed / total if total else 0.0
    said = manifest.get("status")
    limits = manifest.get("failure_limits") or {}
    checks = []
    if limits.get("max_failed_rows") is not None:
        checks.append((failed <= limits["max_failed_rows"], f"--max-failed-rows {limits['max_failed_rows']}"))
    if limits.get("max_failed_fraction") is not None:
        fraction_limit = limits["max_failed_fraction"]
        checks.append((fraction <= fraction_limit, f"--max-failed-fraction {fraction_limit}"))
    if not checks:
        checks.append((failed == 0, "no failed rows allowed by default"))
    broken = [text for ok, text in checks if not ok]
    status = said or ("failed" if broken else "succeeded")
    if said == "failed" and manifest.get("status_reason"):  # the job's own words
        return status, str(manifest["status_reason"])
    if not failed:
        return status, "every row scored"
    where = "over the limit" if broken else "within the limit"
    limits_text = "; ".join(text for _, text in checks)
    return status, f"{failed:,} of {total:,} rows failed ({fraction:.2%}), {where} ({limits_text})"


# --- rendering ---------------------------------------------------------------------------


def _g(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.6g}"


def _model_line(model: dict) -> str:
    version = model.get("version")
    version_text = f", version {version}" if version not in (None, "") else ""
    return f"{model.get('path')} [{model.get('signature')}]{version_text}"


def render_text(report: Report, max_files: int = 20) -> str:
    """The terminal summary."""
    lines = [
        f"output:      {report.output} ({report.output_format})",
        f"status:      {report.status}: {report.status_detail}",
        f"model:       {_model_line(report.model)}",
        f"fingerprint: {report.model.get('fingerprint')}",
    ]
    if report.table:
        lines.append(f"table:       {table_line(report.table)}")
    if report.started:
        lines.append(f"ran:         {report.started} to {report.finished_at or 'not finished'}")
    if _latency(report.metrics):
        lines.append(f"batches:     {_latency(report.metrics)}")
    if _stages(report.metrics):
        lines.append(f"stages:      {_stages(report.metrics)} (all workers)")
    share = f" ({report.rows_failed / report.rows_in:.2%})" if report.rows_in else ""
    lines.append(f"rows:        in {report.rows_in:,}, out {report.rows_out:,}, failed {report.rows_failed:,}{share}")
    total_bytes = sum(f.bytes for f in report.files)
    lines.append(
        f"files:       {len(report.files):,} files, {sum(f.rows for f in report.files):,} rows, "
        f"{human_size(total_bytes)}; {report.units:,} units"
    )
    width = max([len(f.name) for f in report.files[:max_files]] + [4])
    for f in report.files[:max_files]:
        lines.append(f"  {f.name:<{width}}  {f.rows:>12,} rows  {human_size(f.bytes):>11}")
    if len(report.files) > max_files:
        lines.append(f"  ... and {len(report.files) - max_files:,} more files (--html lists them all)")
    if report.error_files:
        dead_rows = sum(r.rows for r in report.reasons)
        lines.append(f"dead letters: {dead_rows:,} rows in {len(report.error_files):,} files under {ERRORS}/")
        lines.append(f"  {'stage':<10} {'rows':>10}  first reason")
        for r in report.reasons:
            lines.append(f"  {r.stage:<10} {r.rows:>10,}  {r.example}")
    else:
        lines.append("dead letters: none")
    if report.columns:
        lines.append("outputs:")
        heads = ["column", "values", "min", "mean", *[f"p{round(q * 100)}" for q in QUANTILES], "max"]
        table = [heads]
        for c in report.columns:
            values = f"{c.count:,}" + (f" ({c.nan:,} NaN/inf)" if c.nan else "")
            figures = [c.min, c.mean, *[c.quantile(q) for q in QUANTILES], c.max]
            table.append([c.name, values, *[_g(x) for x in figures]])
        widths = [max(len(row[i]) for row in table) for i in range(len(heads))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  " + "  ".join(cells).rstrip())
    if report.skipped_columns:
        lines.append(f"not numeric (no statistics): {', '.join(report.skipped_columns)}")
    if report.comparisons:
        from beamscore.report_compare import text_section

        lines += text_section(report.comparisons)
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
.wide{max-width:100%;overflow-x:auto}
td code{overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border-bottom:1px solid #ddd;padding:.2em .8em;text-align:right;font-variant-numeric:tabular-nums}
td.t,th.t{text-align:left}
.succeeded{color:#1a7f37}.failed,.unfinished{color:#cf222e}
svg{background:#fafafa;border:1px solid #eee}
rect.bar{fill:#4c78a8}rect.dead{fill:#e45756}
code{font-size:.9em}
"""


def _attrs(**attrs: Any) -> str:
    return "".join(f' {k.replace("_", "-")}="{html.escape(str(v), quote=True)}"' for k, v in attrs.items())


def _histogram_svg(c: ColumnStats) -> str:
    """At most DISPLAY_BINS bars, each a run of whole histogram bins, with their counts."""
    if c.counts is None or not c.count:
        return "<p>no finite values</p>"
    starts = np.unique(np.linspace(0, c.bins, min(c.bins, DISPLAY_BINS) + 1).astype(int))
    counts = np.add.reduceat(c.counts, starts[:-1])
    edges = c.edges[starts]
    bar = 640 / len(counts)
    width, height = 640, 160
    top = max(int(counts.max()), 1)
    parts = [f'<svg{_attrs(data_column=c.name)} width="{width}" height="{height + 20}" role="img">']
    for i, n in enumerate(counts):
        h = height * int(n) / top
        bounds = _attrs(data_lo=repr(float(edges[i])), data_hi=repr(float(edges[i + 1])), data_count=int(n))
        parts.append(
            f'<rect class="bar"{bounds}'
            f' x="{i * bar:.2f}" y="{height - h:.2f}" width="{bar - 1:.2f}" height="{h:.2f}">'
            f"<title>{html.escape(f'{_g(edges[i])} to {_g(edges[i + 1])}: {int(n):,}')}</title></rect>"
        )
    parts.append(f'<text x="0" y="{height + 15}" font-size="11">{html.escape(_g(c.min))}</text>')
    parts.append(
        f'<text x="{width}" y="{height + 15}" font-size="11" text-anchor="end">{html.escape(_g(c.max))}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


#: the dead-letter chart's width, and how many characters of 12 px text fit on one of its lines
#: (about 6.6 px a character in a sans-serif face; a longer label ends in an ellipsis)
REASONS_WIDTH = 640
LABEL_CHARS = 92


def _reasons_svg(reasons: list[Reason]) -> str:
    """Each reason on two lines: its label across the whole width (ellipsised where longer,
    never cut by the chart's edge: the full text is in the table above and the ``<title>``),
    then its bar and row count."""
    if not reasons:
        return ""
    row, width = 40, REASONS_WIDTH
    top = max(r.rows for r in reasons) or 1
    parts = [f'<svg data-chart="dead-letters" width="{width}" height="{row * len(reasons)}" role="img">']
    for i, r in enumerate(reasons):
        w = max(1.0, (width - 90) * r.rows / top)
        label = f"{r.stage}: {r.example}"
        shown = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1].rstrip() + "\u2026"
        y = i * row
        parts.append(
            f'<text{_attrs(data_label=label)} x="0" y="{y + 13}" font-size="12">{html.escape(shown)}</text>'
            f'<rect class="dead"{_attrs(data_stage=r.stage, data_rows=r.rows)} x="0" y="{y + 18}" '
            f'width="{w:.2f}" height="{row - 24}"><title>{html.escape(label)}</title></rect>'
            f'<text x="{w + 6:.2f}" y="{y + 30}" font-size="12">{r.rows:,}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _th(head: str, text: bool) -> str:
    return f'<th class="t">{head}</th>' if text else f"<th>{head}</th>"


def render_html(report: Report, max_files: int = 10_000) -> str:
    """One self-contained HTML page: the same facts, a histogram per numeric output and of
    dead-letter reasons. Every figure also sits in a ``data-*`` attribute for scripts and tests."""
    esc = html.escape
    fact_rows = [
        (
            "status",
            report.status,
            f'<span class="{esc(report.status)}">{esc(report.status)}</span>: {esc(report.status_detail)}',
        ),
        ("model", report.model.get("path"), f"<code>{esc(_model_line(report.model))}</code>"),
        ("fingerprint", report.model.get("fingerprint"), f"<code>{esc(str(report.model.get('fingerprint')))}</code>"),
        *(
            [("table", report.table.get("root"), f"<code>{esc(table_line(report.table))}</code>")]
            if report.table
            else []
        ),
        ("rows_in", report.rows_in, f"{report.rows_in:,}"),
        ("rows_out", report.rows_out, f"{report.rows_out:,}"),
        ("rows_failed", report.rows_failed, f"{report.rows_failed:,}"),
        ("units", report.units, f"{report.units:,}"),
        ("started", report.started, esc(report.started or "not recorded")),
        ("finished", report.finished_at, esc(report.finished_at or "not finished")),
    ]
    if _latency(report.metrics):
        fact_rows.append(("batch latency", report.metrics["batch_latency_ms_p50"], esc(_latency(report.metrics))))
    if _stages(report.metrics):
        stages = json.dumps(report.metrics["stage_seconds"])
        fact_rows.append(("time per stage", stages, esc(f"{_stages(report.metrics)} (all workers)")))
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>beamscore report: {esc(report.output)}</title><style>{_CSS}</style></head><body>",
        f"<h1>beamscore report</h1><p><code>{esc(report.output)}</code> ({esc(report.output_format)})</p>",
        "<table>",
    ]
    for key, value, shown in fact_rows:
        out.append(
            f'<tr><th class="t">{esc(key)}</th><td class="t"{_attrs(data_fact=key, data_value=value)}>{shown}</td></tr>'
        )
    out.append("</table>")
    out.append("<h2>Outputs</h2>")
    if report.columns:
        # two tables, each within a 1280 px screen (one of 14 columns put p95, p99 and max off it)
        def stat_cells(stats: list[tuple[str, float]]) -> str:
            return "".join(f"<td{_attrs(data_stat=k, data_value=repr(float(v)))}>{esc(_g(v))}</td>" for k, v in stats)

        heads = ["column", "dtype", "values", "NaN/inf", "min", "mean", "max"]
        out.append('<div class="wide"><table><tr>' + "".join(_th(h, i < 2) for i, h in enumerate(heads)) + "</tr>")
        for c in report.columns:
            out.append(
                f'<tr{_attrs(data_column=c.name)}><td class="t"><code>{esc(c.name)}</code></td>'
                f'<td class="t">{esc(c.dtype)}</td><td{_attrs(data_stat="count", data_value=c.count)}>'
                f"{c.count:,}</td><td{_attrs(data_stat='nan', data_value=c.nan)}>{c.nan:,}</td>"
                f"{stat_cells([('min', c.min), ('mean', c.mean), ('max', c.max)])}</tr>"
            )
        out.append("</table></div>")
        quantiles = [f"p{round(q * 100)}" for q in QUANTILES]
        out.append(
            '<div class="wide"><table><tr>' + "".join(_th(h, i < 1) for i, h in enumerate(["column", *quantiles]))
        )
        out.append("</tr>")
        for c in report.columns:
            stats = [(f"p{round(q * 100)}", c.quantile(q)) for q in QUANTILES]
            out.append(
                f'<tr{_attrs(data_quantiles=c.name)}><td class="t"><code>{esc(c.name)}</code></td>'
                f"{stat_cells(stats)}</tr>"
            )
        out.append("</table></div>")
        out.append(
            f"<p>Quantiles are read from a {BINS}-bin histogram (exact to one bin); each chart shows "
            f"{DISPLAY_BINS} bars.</p>"
        )
        for c in report.columns:
            per = f", {c.per_row} values per row" if c.per_row and c.per_row > 1 else ""
            out.append(f"<h3><code>{esc(c.name)}</code> ({esc(c.dtype)}{per})</h3>{_histogram_svg(c)}")
    else:
        out.append("<p>no numeric outputs</p>")
    if report.comparisons:
        from beamscore.report_compare import html_section

        out += html_section(report.comparisons)
    out.append("<h2>Dead letters</h2>")
    if report.reasons:
        out.append(
            '<table><tr><th class="t">stage</th><th>rows</th><th>dead letters</th><th class="t">first reason</th></tr>'
        )
        for r in report.reasons:
            out.append(
                f'<tr{_attrs(data_stage=r.stage, data_reason=r.reason)}><td class="t">{esc(r.stage)}</td>'
                f"<td{_attrs(data_rows=r.rows)}>{r.rows:,}</td><td{_attrs(data_letters=r.letters)}>"
                f'{r.letters:,}</td><td class="t">{esc(r.example)}</td></tr>'
            )
        out.append("</table>")
        out.append(_reasons_svg(report.reasons))
    else:
        out.append("<p>none</p>")
    out.append(f"<h2>Files</h2><p>{len(report.files):,} files, {human_size(sum(f.bytes for f in report.files))}</p>")
    out.append('<table><tr><th class="t">file</th><th>rows</th><th>bytes</th></tr>')
    for f in [*report.files[:max_files], *report.error_files[:max_files]]:
        out.append(
            f'<tr{_attrs(data_file=f.name)}><td class="t">{esc(f.name)}</td>'
            f"<td{_attrs(data_rows=f.rows)}>{f.rows:,}</td><td{_attrs(data_bytes=f.bytes)}>"
            f"{human_size(f.bytes)}</td></tr>"
        )
    out.append("</table>")
    if len(report.files) > max_files or len(report.error_files) > max_files:
        out.append(f"<p>only the first {max_files:,} files of each kind are listed</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def main(output: str, *, html_path: str | None = None, as_json: bool = False) -> int:
    """``beamscore report``: print the summary (or JSON), and write the HTML page if asked."""
    report = build(output)
    if html_path:
        fs, path = bfs.filesystem(html_path)
        with fs.open(path, "w", encoding="utf-8") as f:
            f.write(render_html(report))
    print(json.dumps(report.to_json(), indent=2) if as_json else render_text(report), end="" if not as_json else "\n")
    if html_path:
        print(f"html: {html_path}") if not as_json else None
    return exit_code(report)


def exit_code(report: Report) -> int:
    """What a scheduler that reads ``beamscore report``'s exit code needs: 0 for a finished,
    succeeded output; 1 for a failed one (too many failed rows); 75 (try again later) for one
    still being written or interrupted (no manifest yet)."""
    if report.status == "unfinished":
        return EXIT_TEMPFAIL
    return EXIT_OK if report.status == "succeeded" else EXIT_ROWS_FAILED
