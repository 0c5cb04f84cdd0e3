"""``beamscore report``: the summary and the HTML page of a real job's output, their numbers
checked against the files themselves (parsed back with html.parser, not by string search)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from output_jobs import score_with_dead_letters, scored_rows

from beamscore import report
from beamscore.cli import main


@pytest.fixture(scope="module")
def out(models, tmp_path_factory) -> str:
    return score_with_dead_letters(models["two_sig"], str(tmp_path_factory.mktemp("report")))


def _manifest(out: str) -> dict:
    with open(os.path.join(out, "_manifest.json")) as f:
        return json.load(f)


def _parts(out: str) -> list[str]:
    return sorted(os.path.join(out, f) for f in os.listdir(out) if f.startswith("part-"))


def _values(out: str, column: str) -> np.ndarray:
    """Every number of an output column, read whole (the reference for the streamed figures)."""
    table = pa.concat_tables(pq.read_table(p, columns=[column]) for p in _parts(out))
    array = table.column(column).combine_chunks()
    while pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type):
        array = array.flatten()
    return array.to_numpy(zero_copy_only=False).astype(np.float64)


class _Elements(HTMLParser):
    """Every element's tag and attributes, and the text inside each ``data-*`` element."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def with_attr(self, name: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if name in a]

    def inside(self, tag: str, **attrs: str) -> list[tuple[str, dict[str, str]]]:
        """The elements after the one ``tag`` with ``attrs`` up to the next ``tag`` (its row, its chart)."""
        (start,) = [
            i
            for i, (t, a) in enumerate(self.elements)
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]
        found = []
        for t, a in self.elements[start + 1 :]:
            if t == tag:
                break
            found.append((t, a))
        return found


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def test_text_summary_counts_rows_files_and_dead_letters(out, capsys):
    assert main(["report", out]) == 0
    text = capsys.readouterr().out
    manifest = _manifest(out)
    lines = text.splitlines()
    assert lines[1].startswith("status:      succeeded: 20 of 600 rows failed (3.33%), within the limit")
    assert f"rows:        in {manifest['rows_in']:,}, out {manifest['rows_out']:,}, failed 20 (3.33%)" in lines
    assert manifest["model"]["fingerprint"] in text
    for path in _parts(out):
        rows = pq.ParquetFile(path).metadata.num_rows
        line = next(x for x in lines if x.strip().startswith(os.path.basename(path)))
        assert line.split()[1] == f"{rows:,}"
    dead = next(x for x in lines if x.strip().startswith("validate"))
    assert dead.split()[1] == "20" and "column 'x' is null" in dead
    label = next(x for x in lines if x.strip().startswith("label ")).split()
    assert label[1] == f"{scored_rows():,}"


def test_html_numbers_match_the_data(out, tmp_path):
    page_path = tmp_path / "report.html"
    assert main(["report", out, "--html", str(page_path)]) == 0
    page = _parse(page_path.read_text())
    manifest = _manifest(out)
    facts = {a["data-fact"]: a["data-value"] for a in page.with_attr("data-fact")}
    assert int(facts["rows_in"]) == manifest["rows_in"] == 600
    assert int(facts["rows_out"]) == manifest["rows_out"] == scored_rows()
    assert int(facts["rows_failed"]) == manifest["rows_failed"] == 20
    assert facts["fingerprint"] == manifest["model"]["fingerprint"] and facts["status"] == "succeeded"

    listed = [a["data-file"] for a in page.with_attr("data-file")]
    errors_dir = os.path.join(out, "_errors")
    expected = [os.path.basename(p) for p in _parts(out)] + [f"_errors/{f}" for f in sorted(os.listdir(errors_dir))]
    assert listed == expected
    for name in listed:
        cells = {k: int(v) for _, a in page.inside("tr", data_file=name) for k, v in a.items() if k.startswith("data-")}
        path = os.path.join(out, name)
        assert cells == {"data-rows": pq.ParquetFile(path).metadata.num_rows, "data-bytes": os.path.getsize(path)}

    for column in ("scores", "label"):
        values = _values(out, column)
        rows = [*page.inside("tr", data_column=column), *page.inside("tr", data_quantiles=column)]
        mine = {a["data-stat"]: float(a["data-value"]) for _, a in rows if "data-stat" in a}
        assert mine["count"] == values.size and mine["nan"] == 0
        assert mine["min"] == values.min() and mine["max"] == values.max()
        assert math.isclose(mine["mean"], values.mean(), rel_tol=1e-9)
        width = (values.max() - values.min()) / report.BINS
        for q in report.QUANTILES:
            expected = np.quantile(values, q, method="inverted_cdf")
            if column == "label":  # integers spanning few values: exact
                assert mine[f"p{round(q * 100)}"] == expected, q
            else:
                assert abs(mine[f"p{round(q * 100)}"] - expected) <= width * (1 + 1e-9), q
        bars = [a for tag, a in page.inside("svg", data_column=column) if tag == "rect"]
        counts = [int(b["data-count"]) for b in bars]
        assert sum(counts) == values.size
        edges = [float(b["data-lo"]) for b in bars] + [float(bars[-1]["data-hi"])]
        expected_counts, _ = np.histogram(values, bins=edges)
        assert counts == expected_counts.tolist()

    dead = [a for t, a in page.elements if t == "tr" and "data-stage" in a]
    assert [(a["data-stage"], a["data-reason"]) for a in dead] == [
        ("validate", "column 'x' is null; inputs must not be null")
    ]
    bars = [a for t, a in page.elements if t == "rect" and "data-stage" in a]
    assert [int(b["data-rows"]) for b in bars] == [20]
    errors = pa.concat_tables(
        pq.read_table(os.path.join(out, "_errors", f)) for f in sorted(os.listdir(os.path.join(out, "_errors")))
    )
    assert sum(errors["count"].to_pylist()) == 20


class _Widths(HTMLParser):
    """Each table row's text, cell by cell, and each SVG ``<text>``'s text and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.texts: list[tuple[dict[str, str], str]] = []
        self._cell: list[str] | None = None
        self._text: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "text":
            self._text, self._chars = {k: v or "" for k, v in attrs}, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "text" and self._text is not None:
            self.texts.append((self._text, "".join(self._chars)))
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._text is not None:
            self._chars.append(data)


#: a generous text width model: 8.5 px a character at the page's 16 px (numbers and code are
#: wider than the average letter), 26 px of padding a cell (.8em each side); 6.6 px at 12 px
CHAR_PX, CELL_PX, SMALL_CHAR_PX = 8.5, 26, 6.6


def test_html_fits_a_1280_px_screen_and_labels_are_not_cut(out):
    """The outputs' table had 14 columns (p95, p99 and max off a 1280 px screen); a long
    dead-letter label ran past the chart's edge."""
    built = report.build(out)
    long = "column 'x' has 3 values where the signature wants 4; " * 3  # a long reason, as real ones are
    built.reasons = [*built.reasons, report.Reason("validate", long, long.strip(), rows=7, letters=7)]
    # a few outputs, one of small negative figures, each written in 12 characters (-1.23457e-05)
    first = built.columns[0]
    wide = dataclasses.replace(
        first, name="embedding_norm", min=-1.23456789e-05, max=-1.0123456e-06, total=-5.4321987e-06 * first.count
    )
    built.columns = [*built.columns, wide]
    page = report.render_html(built)
    parsed = _Widths()
    parsed.feed(page)
    # a table's narrowest layout: each cell as wide as its longest word (text wraps at spaces)
    widest = max(
        sum(max(len(word) for word in [*cell.split(), ""]) * CHAR_PX + CELL_PX for cell in row) for row in parsed.rows
    )
    assert 2 * 16 + widest <= 1280, widest
    chart = re.search(r'<svg data-chart="dead-letters" width="(\d+)"', page)
    width = int(chart.group(1))
    labels = [(a, t) for a, t in parsed.texts if "data-label" in a]
    assert len(labels) == 2
    for attrs, shown in labels:
        assert float(attrs["x"]) + len(shown) * SMALL_CHAR_PX <= width, shown
        label = attrs["data-label"]
        assert shown == label or (shown.endswith("\u2026") and label.startswith(shown[:-1])), (shown, label)
    assert labels[1][1].endswith("\u2026") and labels[1][0]["data-label"] == "validate: " + long.strip()


def test_html_is_one_self_contained_page(out, tmp_path):
    page_path = tmp_path / "r.html"
    assert main(["report", out, "--html", str(page_path)]) == 0
    text = page_path.read_text()
    page = _parse(text)
    assert not page.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert not [a for _, a in page.elements if "src" in a or "href" in a]


def test_an_unfinished_output_is_reported_from_its_receipts(out, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    os.remove(copy / "_manifest.json")
    os.remove(copy / "_units" / "part-00001-00002.json")
    assert main(["report", str(copy), "--json"]) == 75  # still being written, or interrupted: ask again later
    got = json.loads(capsys.readouterr().out)
    assert got["status"] == "unfinished" and got["units"] == 5 and got["units_planned"] == 6
    job_time = dt.datetime.fromtimestamp((copy / "_units" / "_job.json").stat().st_mtime, dt.UTC)
    assert got["started"] == job_time.isoformat(timespec="seconds") and got["finished"] is None
    assert main(["report", str(copy)]) == 75
    assert f"ran:         {got['started']} to not finished" in capsys.readouterr().out
    page = _parse(report.render_html(report.build(str(copy))))
    (started,) = [a for a in page.with_attr("data-fact") if a["data-fact"] == "started"]
    assert started["data-value"] == got["started"]
    receipts = [json.loads(p.read_text()) for p in sorted((copy / "_units").glob("part-*.json"))]
    assert got["rows_in"] == sum(r["rows_in"] for r in receipts) == 500
    assert got["rows_out"] + got["rows_failed"] == got["rows_in"]
    assert len(got["files"]) == 5


def test_not_an_output_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"beamscore: error: {tmp_path}: no beamscore output here (no _manifest.json, no _units/ receipts)\n"


def test_report_imports_neither_tensorflow_nor_beam(out):
    code = (
        "import sys; from beamscore.cli import main; main(['report', sys.argv[1]]);"
        "print('tensorflow' in sys.modules, 'apache_beam' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, timeout=300)
    assert done.stderr.strip().splitlines()[-1] == "False False", done.stderr


MEMORY_CHECK = """
import json, sys, tracemalloc
import pyarrow as pa
from beamscore import report
tracemalloc.start()
got = report.build(sys.argv[1])
print(json.dumps({"arrow_peak": pa.default_memory_pool().max_memory(), "numpy_peak": tracemalloc.get_traced_memory()[1],
                  "values": got.columns[0].count}))
"""


def _big_output(out, rows: int, width: int, group: int) -> None:
    """A part file of ``rows`` rows of ``width`` float32 scores in row groups of ``group`` rows
    (beamscore writes 128k-row groups), written a row group at a time, and its manifest."""
    os.makedirs(out)
    schema = pa.schema([("scores", pa.list_(pa.float32(), width)), ("id", pa.int64())])
    rng = np.random.default_rng(0)
    part = os.path.join(out, "part-00000-00000.parquet")
    with pq.ParquetWriter(part, schema) as writer:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            scores = pa.FixedSizeListArray.from_arrays(pa.array(rng.random(n * width, dtype=np.float32)), width)
            writer.write_table(pa.table({"scores": scores, "id": np.arange(start, start + n)}, schema=schema))
    manifest = {
        "output_format": "parquet",
        "columns": {"outputs": ["scores"], "keep": ["id"]},
        "rows_in": rows,
        "rows_out": rows,
        "rows_failed": 0,
        "units": 1,
        "outputs": [part],
        "errors": [],
        "model": {"path": "m", "signature": "serving_default", "fingerprint": "f"},
    }
    with open(os.path.join(out, "_manifest.json"), "w") as f:
        json.dump(manifest, f)


def _peaks(out: str) -> dict:
    done = subprocess.run([sys.executable, "-c", MEMORY_CHECK, out], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_memory_stays_flat_on_a_large_output(tmp_path):
    """Row groups are read one batch at a time: the report of an output three times as large
    (12 row groups of 65,536 rows of 32 float32, 96 MiB of values, against 4) peaks at the
    same memory, both Arrow's allocations (its pool's peak) and Python's and numpy's
    (tracemalloc's peak), and below half the values it read (reading the file whole would
    hold them all, and twice over as float64)."""
    width, group = 32, 65_536
    small, big = str(tmp_path / "small"), str(tmp_path / "big")
    _big_output(small, 4 * group, width, group)
    _big_output(big, 12 * group, width, group)
    a, b = _peaks(small), _peaks(big)
    assert (a["values"], b["values"]) == (4 * group * width, 12 * group * width)
    data = 12 * group * width * 4
    for key in ("arrow_peak", "numpy_peak"):
        assert b[key] < 1.25 * a[key] + (1 << 20), (key, a, b)
        assert b[key] < data / 2, (key, a, b)


def test_status_failed_from_the_limits_or_the_manifests_own_words(out, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = _manifest(str(copy))
    manifest.pop("status", None), manifest.pop("status_reason", None)
    manifest["failure_limits"] = {"max_failed_rows": None, "max_failed_fraction": None}
    (copy / "_manifest.json").write_text(json.dumps(manifest))
    got = report.build(str(copy))
    assert (got.status, got.status_detail) == (
        "failed",
        "20 of 600 rows failed (3.33%), over the limit (no failed rows allowed by default)",
    )
    manifest.update(status="failed", status_reason="20 of 600 rows failed, said the job")
    (copy / "_manifest.json").write_text(json.dumps(manifest))
    got = report.build(str(copy))
    assert (got.status, got.status_detail) == ("failed", "20 of 600 rows failed, said the job")
    assert main(["report", str(copy)]) == 1  # a failed output: a scheduler's check fails


def test_npy_output(models, tmp_path, capsys):
    """--output-format npy: files are read a batch of rows at a time from their headers on."""
    out = tmp_path / "npy"
    paths, _ids, x = _npy_inputs(tmp_path)
    args = ["score", "--model", models["two_sig"], "--input", paths, "--output", str(out), "--output-format", "npy"]
    assert main([*args, "--keep", "id", "--rows-per-unit", "100"]) == 0
    capsys.readouterr()
    got = report.build(str(out), batch_rows=7)  # batches that do not divide the files' rows
    by_name = {c.name: c for c in got.columns}
    assert sorted(by_name) == ["label", "scores"]
    scores = np.concatenate([np.load(p).reshape(-1) for p in sorted((out / "scores").glob("part-*.npy"))])
    assert by_name["scores"].count == scores.size == len(x) * 3 and by_name["scores"].per_row == 3
    assert by_name["scores"].min == scores.min() and by_name["scores"].max == scores.max()
    assert math.isclose(by_name["scores"].mean, scores.astype(np.float64).mean(), rel_tol=1e-9)
    files = {f.name: f.rows for f in got.files}
    assert files == {
        f"{d}/{p.name}": len(np.load(p)) for d in ("scores", "label", "id") for p in (out / d).glob("*.npy")
    }


def _npy_inputs(tmp_path) -> tuple[str, list, np.ndarray]:
    x = np.random.default_rng(3).normal(size=(250, 4)).astype(np.float32)
    os.makedirs(tmp_path / "in")
    table = pa.table({"id": np.arange(250), "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})
    pq.write_table(table, tmp_path / "in" / "a.parquet", row_group_size=100)
    return str(tmp_path / "in" / "a.parquet"), [], x
