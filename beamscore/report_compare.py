"""``beamscore report`` on an output of several models: how they compare.

For each signature output that two or more models of the job write (``champion__score``,
``challenger__score``: the manifest's ``models``), the first model that writes it is the
reference ``a`` and every other one ``b`` is compared with it, row by row (the columns sit in
the same rows of the same files): the distribution of each and of ``b - a``, their
correlation (Pearson, over every value), for class scores (several values per row) the share
of rows whose argmax agrees and whose top-k classes agree, and the rows where they differ most
(largest ``|b - a|`` of the row), shown by the job's ``--keep`` columns.

Streaming as the rest of the report: two passes over the Parquet files in batches (the ranges,
then the histograms), a fixed number of most-different rows kept. Neither TensorFlow nor Beam
is imported.
"""

from __future__ import annotations

import heapq
import html
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from beamscore.report import (
    DISPLAY_BINS,
    QUANTILES,
    ColumnStats,
    _accumulate,
    _attrs,
    _bin,
    _flat_values,
    _g,
    _num,
    _numeric_leaf,
    _parquet_batches,
)

__all__ = ["MOST_DIFFERENT", "Comparison", "compare", "html_section", "text_section"]

#: rows kept where two models differ most, per compared output
MOST_DIFFERENT = 10
#: the k of the top-k agreement (at most one less than the classes)
TOP_K = 3


@dataclass
class Comparison:
    """Model ``b`` against model ``a`` on one output they both write."""

    output: str
    a: str
    b: str
    column_a: str
    column_b: str
    per_row: int
    rows: int = 0
    values: int = 0
    sums: np.ndarray = field(default_factory=lambda: np.zeros(5))  # x, y, xx, yy, xy (finite pairs)
    abs_total: float = 0.0
    argmax_agree: int = 0
    top_k_agree: int = 0
    stats_a: ColumnStats | None = None
    stats_b: ColumnStats | None = None
    diff: ColumnStats | None = None
    counts_a: np.ndarray | None = None
    counts_b: np.ndarray | None = None
    #: (|b - a| of the row, row, keep values, a values, b values), the largest first
    most_different: list[tuple[float, int, dict[str, Any], list[float], list[float]]] = field(default_factory=list)

    @property
    def top_k(self) -> int | None:
        return min(TOP_K, self.per_row - 1) if self.per_row >= 3 else None

    @property
    def correlation(self) -> float:
        n = self.values
        if n < 2:
            return math.nan
        sx, sy, sxx, syy, sxy = self.sums
        cov = sxy - sx * sy / n
        var = (sxx - sx * sx / n) * (syy - sy * sy / n)
        return float(cov / math.sqrt(var)) if var > 0 else math.nan

    @property
    def edges(self) -> np.ndarray:
        lo = min(self.stats_a.min, self.stats_b.min) if self.stats_a and self.stats_b else 0.0
        hi = max(self.stats_a.max, self.stats_b.max) if self.stats_a and self.stats_b else 0.0
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo = hi = 0.0
        return np.linspace(lo, hi if hi > lo else lo + 1.0, DISPLAY_BINS + 1)

    def to_json(self) -> dict[str, Any]:
        per_row = self.per_row > 1
        return {
            "output": self.output,
            "models": [self.a, self.b],
            "columns": [self.column_a, self.column_b],
            "values_per_row": self.per_row,
            "rows": self.rows,
            "a": _summary(self.stats_a),
            "b": _summary(self.stats_b),
            "difference": {"of": f"{self.b} - {self.a}", **_summary(self.diff), "mean_abs": _mean_abs(self)},
            "correlation": _num(self.correlation),
            "argmax_agreement": self.argmax_agree / self.rows if per_row and self.rows else None,
            "top_k": self.top_k,
            "top_k_agreement": self.top_k_agree / self.rows if self.top_k and self.rows else None,
            "most_different": [
                {"row": row, "keep": keep, "max_abs_difference": gap, self.a: va, self.b: vb}
                for gap, row, keep, va, vb in self.most_different
            ],
            "histogram": {
                "edges": [float(e) for e in self.edges],
                self.a: [int(n) for n in (self.counts_a if self.counts_a is not None else [])],
                self.b: [int(n) for n in (self.counts_b if self.counts_b is not None else [])],
            },
        }


def _mean_abs(c: Comparison) -> float | None:
    return c.abs_total / c.diff.count if c.diff and c.diff.count else None


def _summary(stats: ColumnStats | None) -> dict[str, Any]:
    if stats is None:
        return {}
    return {
        "count": stats.count,
        "min": _num(stats.min),
        "mean": _num(stats.mean),
        "max": _num(stats.max),
        "quantiles": {f"p{round(q * 100)}": _num(stats.quantile(q)) for q in QUANTILES},
    }


def pairs(models: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """``(output, a, b, column_a, column_b)`` for each output two models write: the first
    model that writes it against each later one."""
    found = []
    seen: dict[str, tuple[str, str]] = {}
    for model in models:
        for output, column in zip(model.get("outputs", []), model.get("columns", []), strict=False):
            if output in seen:
                a, column_a = seen[output]
                found.append((output, a, model["name"], column_a, column))
            else:
                seen[output] = (model["name"], column)
    return found


def compare(
    fs: Any, paths: list[str], models: list[dict[str, Any]], keep: list[str], batch_rows: int
) -> tuple[list[Comparison], list[str]]:
    """Every comparison of a several-model Parquet output (``paths``: its part files), and
    the outputs left out (not numeric, or of varying length)."""
    if not paths:
        return [], []
    with fs.open(paths[0], "rb") as f:
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(f).schema_arrow
    found, skipped = [], []
    for output, a, b, column_a, column_b in pairs(models):
        if column_a not in schema.names or column_b not in schema.names:
            continue
        leaf = _numeric_leaf(schema.field(column_a).type)
        if leaf is None or leaf[1] is None or _numeric_leaf(schema.field(column_b).type) != leaf:
            skipped.append(output)
            continue
        dtype = str(leaf[0])
        c = Comparison(output, a, b, column_a, column_b, leaf[1])
        c.stats_a, c.stats_b = ColumnStats(column_a, dtype, leaf[1]), ColumnStats(column_b, dtype, leaf[1])
        c.diff = ColumnStats(f"{b} - {a}", "float64", leaf[1])
        found.append(c)
    if not found:
        return [], skipped
    kept = [k for k in keep if k in schema.names]
    columns = list(dict.fromkeys([*(x for c in found for x in (c.column_a, c.column_b)), *kept]))
    for first in (True, False):  # the ranges, then the histograms over them
        row = 0
        for batch in _batches(fs, paths, columns, batch_rows):
            for c in found:
                _step(c, batch, row, kept, first)
            row += batch.num_rows
    return found, skipped


def _batches(fs: Any, paths: list[str], columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    for path in paths:
        yield from _parquet_batches(fs, path, columns, batch_rows)


def _values(batch: pa.RecordBatch, column: str, per_row: int) -> np.ndarray:
    return _flat_values(batch.column(column)).astype(np.float64).reshape(batch.num_rows, per_row)


def _step(c: Comparison, batch: pa.RecordBatch, row: int, kept: list[str], first: bool) -> None:
    x, y = _values(batch, c.column_a, c.per_row), _values(batch, c.column_b, c.per_row)
    d = y - x
    assert c.stats_a is not None and c.stats_b is not None and c.diff is not None
    if not first:
        if c.counts_a is None or c.counts_b is None:
            c.counts_a = np.zeros(DISPLAY_BINS, dtype=np.int64)
            c.counts_b = np.zeros(DISPLAY_BINS, dtype=np.int64)
        edges = c.edges
        for values, counts in ((x, c.counts_a), (y, c.counts_b)):
            finite = values[np.isfinite(values)]
            counts += np.histogram(finite, bins=edges)[0]
        for stats, values in ((c.stats_a, x), (c.stats_b, y), (c.diff, d)):
            _bin(stats, values.reshape(-1))
        return
    c.rows += batch.num_rows
    for stats, values in ((c.stats_a, x), (c.stats_b, y), (c.diff, d)):
        _accumulate(stats, values.reshape(-1))
    ok = np.isfinite(x) & np.isfinite(y)
    fx, fy = x[ok], y[ok]
    c.values += int(fx.size)
    c.sums += [fx.sum(), fy.sum(), (fx * fx).sum(), (fy * fy).sum(), (fx * fy).sum()]
    c.abs_total += float(np.abs(d[np.isfinite(d)]).sum())
    if c.per_row > 1:
        c.argmax_agree += int((x.argmax(axis=1) == y.argmax(axis=1)).sum())
        k = c.top_k
        if k:
            top_x = np.sort(np.argpartition(-x, k - 1, axis=1)[:, :k], axis=1)
            top_y = np.sort(np.argpartition(-y, k - 1, axis=1)[:, :k], axis=1)
            c.top_k_agree += int((top_x == top_y).all(axis=1).sum())
    gap = np.nan_to_num(np.abs(d), nan=np.inf).max(axis=1)
    n = min(MOST_DIFFERENT, len(gap))
    if not n:
        return
    candidates = np.argpartition(-gap, n - 1)[:n]
    for i in candidates.tolist():
        entry = (
            float(gap[i]),
            row + i,
            {k: batch.column(k)[i].as_py() for k in kept},
            x[i].tolist(),
            y[i].tolist(),
        )
        if len(c.most_different) < MOST_DIFFERENT or entry[0] > c.most_different[-1][0]:
            c.most_different.append(entry)
            c.most_different = heapq.nlargest(MOST_DIFFERENT, c.most_different, key=lambda e: (e[0], -e[1]))


def text_section(comparisons: list[Comparison]) -> list[str]:
    """The terminal lines of the comparisons."""
    if not comparisons:
        return []
    lines = ["models compared (b against a, on each output both write):"]
    for c in comparisons:
        j = c.to_json()
        d = j["difference"]
        lines.append(
            f"  {c.output}: {c.b} - {c.a} over {c.rows:,} rows: mean {_g(d['mean'])}, mean |diff| "
            f"{_g(d['mean_abs'])}, min {_g(d['min'])}, max {_g(d['max'])}; correlation {_g(j['correlation'])}"
        )
        lines.append(
            f"    {c.a}: mean {_g(j['a']['mean'])} [{_g(j['a']['min'])}, {_g(j['a']['max'])}]; "
            f"{c.b}: mean {_g(j['b']['mean'])} [{_g(j['b']['min'])}, {_g(j['b']['max'])}]"
        )
        if j["argmax_agreement"] is not None:
            top = f", top-{c.top_k} agree {j['top_k_agreement']:.2%}" if c.top_k else ""
            lines.append(f"    argmax agrees on {j['argmax_agreement']:.2%} of rows{top}")
        for gap, row, keep, _va, _vb in c.most_different[:5]:
            said = ", ".join(f"{k}={v!r}" for k, v in keep.items()) or f"row {row}"
            lines.append(f"    differ most: {said}: |diff| {_g(gap)}")
    return lines


def _g_or_none(x: Any) -> str:
    return "-" if x is None else _g(x)


def html_section(comparisons: list[Comparison]) -> list[str]:
    """The HTML of the comparisons: a table of the figures, overlaid histograms of ``a`` and
    ``b`` per output, and the rows that differ most (every figure also in ``data-*``)."""
    if not comparisons:
        return []
    esc = html.escape
    out = ["<h2>Models compared</h2>"]
    for c in comparisons:
        j = c.to_json()
        d = j["difference"]
        out.append(f"<h3><code>{esc(c.output)}</code>: {esc(c.b)} against {esc(c.a)}</h3>")
        figures = [
            ("rows", c.rows),
            ("correlation", j["correlation"]),
            ("difference_mean", d["mean"]),
            ("difference_mean_abs", d["mean_abs"]),
            ("difference_min", d["min"]),
            ("difference_max", d["max"]),
            ("argmax_agreement", j["argmax_agreement"]),
            ("top_k_agreement", j["top_k_agreement"]),
        ]
        out.append(f"<table{_attrs(data_comparison=c.output)}>")
        for key, value in figures:
            out.append(
                f'<tr><th class="t">{esc(key)}</th><td{_attrs(data_stat=key, data_value=value)}>'
                f"{esc(_g_or_none(value))}</td></tr>"
            )
        out.append("</table>")
        out.append(_overlay_svg(c))
        if c.most_different:
            out.append('<table><tr><th class="t">row</th><th>|diff|</th></tr>')
            for gap, row, keep, _va, _vb in c.most_different:
                said = ", ".join(f"{k}={v!r}" for k, v in keep.items()) or f"row {row}"
                out.append(f'<tr{_attrs(data_row=row)}><td class="t">{esc(said)}</td><td>{esc(_g(gap))}</td></tr>')
            out.append("</table>")
    return out


def _overlay_svg(c: Comparison) -> str:
    """The histograms of ``a`` and ``b`` over one range, drawn over each other."""
    if c.counts_a is None or c.counts_b is None:
        return ""
    width, height = 640, 160
    bar = width / DISPLAY_BINS
    top = max(int(c.counts_a.max()), int(c.counts_b.max()), 1)
    edges = c.edges
    parts = [f'<svg{_attrs(data_overlay=c.output)} width="{width}" height="{height + 20}" role="img">']
    for model, counts, colour in ((c.a, c.counts_a, "#4c78a8"), (c.b, c.counts_b, "#f58518")):
        for i, n in enumerate(counts.tolist()):
            h = height * n / top
            parts.append(
                f"<rect{_attrs(data_model=model, data_count=n, data_lo=repr(float(edges[i])))}"
                f' x="{i * bar:.2f}" y="{height - h:.2f}" width="{bar - 1:.2f}" height="{h:.2f}"'
                f' fill="{colour}" fill-opacity="0.5"><title>{html.escape(f"{model}: {n:,}")}</title></rect>'
            )
    parts.append(f'<text x="0" y="{height + 15}" font-size="11">{html.escape(_g(edges[0]))}</text>')
    parts.append(
        f'<text x="{width}" y="{height + 15}" font-size="11" text-anchor="end">{html.escape(_g(edges[-1]))}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
