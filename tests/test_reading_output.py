"""docs/reading-output.md and the README's tour: each reader's snippet, run as written on a real
job's output (dead letters in ``_errors/``, receipts, the manifest, a ``_SUCCESS`` marker),
counts exactly the scored rows and reads the scored columns."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from docs_blocks import docs_block
from output_jobs import score_with_dead_letters, scored_rows


@pytest.fixture(scope="module")
def workdir(models, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("reading")
    out = score_with_dead_letters(models["two_sig"], str(root))
    with open(os.path.join(out, "_SUCCESS"), "w"):
        pass  # a marker file as Spark/Hadoop and schedulers write it: no reader may take it for data
    assert os.listdir(os.path.join(out, "_errors"))
    return str(root)


def _run(page: str, name: str, cwd: str, monkeypatch) -> tuple[dict, str]:
    monkeypatch.chdir(cwd)
    namespace: dict = {"__name__": f"docs_{name}"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(docs_block(page, name), page, "exec"), namespace)  # the page's own code, unchanged
    return namespace, printed.getvalue()


def _manifest(cwd: str) -> dict:
    with open(os.path.join(cwd, "OUT", "_manifest.json")) as f:
        return json.load(f)


def test_the_job_has_dead_letters(workdir):
    manifest = _manifest(workdir)
    assert manifest["rows_out"] == scored_rows() and manifest["rows_failed"] == 20


def test_pandas(workdir, monkeypatch):
    ns, printed = _run("reading-output.md", "pandas", workdir, monkeypatch)
    scores = ns["scores"]
    assert len(scores) == scored_rows() and sorted(scores.columns) == ["id", "label", "scores"]
    assert scores["id"].is_unique
    assert printed.split()[0] == str(scored_rows())


def test_polars(workdir, monkeypatch):
    ns, _ = _run("reading-output.md", "polars", workdir, monkeypatch)
    assert ns["scores"].height == scored_rows() and ns["scores"]["id"].n_unique() == scored_rows()


def test_duckdb(workdir, monkeypatch):
    ns, _ = _run("reading-output.md", "duckdb", workdir, monkeypatch)
    assert ns["rows"] == scored_rows()


def test_pyarrow(workdir, monkeypatch):
    ns, _ = _run("reading-output.md", "pyarrow", workdir, monkeypatch)
    assert ns["scores"].num_rows == scored_rows() == ns["dataset"].count_rows()
    assert sorted(ns["scores"].column_names) == ["id", "label", "scores"]


def test_dead_letters_and_manifest(workdir, monkeypatch):
    ns, _ = _run("reading-output.md", "errors", workdir, monkeypatch)
    assert ns["errors"]["count"].sum() == 20 == ns["manifest"]["rows_failed"]


def test_the_readers_that_take_the_directory_are_the_documented_ones(workdir, monkeypatch):
    """What the page's table says of the readers it tells to use the glob."""
    import duckdb
    import polars as pl

    monkeypatch.chdir(workdir)
    with pytest.raises(Exception, match="different file extensions"):
        pl.read_parquet("OUT")
    (rows,) = duckdb.sql("SELECT count(*) FROM read_parquet('OUT/**/*.parquet')").fetchall()[0]
    assert rows == scored_rows() + 20  # the dead letters too


def test_readme_tour_reads_the_demo_output(workdir, tmp_path, monkeypatch):
    os.makedirs(tmp_path / "demo")
    os.symlink(os.path.join(workdir, "OUT"), tmp_path / "demo" / "output")
    ns, _ = _run("README.md", "read-polars", str(tmp_path), monkeypatch)
    assert ns["scores"].height == scored_rows()
    assert ns["scores"].columns == ["label", "scores", "id"]  # the model's outputs, then --keep
