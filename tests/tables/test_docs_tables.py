"""docs/tables.md's examples, run as written in a directory laid out as the page assumes
(``model`` is the tests' affine model; ``daily`` a Delta table partitioned by ``day``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import shlex
import sys

import pyarrow as pa
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import lake
from cli_runs import run_cli
from docs_blocks import docs_block


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables-docs")
    lake.save_model(str(root / "model"))
    return root


def commands(block: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("beamscore ")]


def test_delta_examples(workdir, monkeypatch):
    from deltalake import DeltaTable

    monkeypatch.chdir(workdir)
    exec(compile(docs_block("tables.md", "delta-write"), "docs/tables.md", "exec"), {})
    for argv in commands(docs_block("tables.md", "delta-score")):
        run = run_cli(*argv)
        assert run.code == 0, run.stderr
    for out, version, rows in (("scores", 1, 90), ("scores-v0", 0, 100)):
        got = lake.scored(workdir / out)
        expected = DeltaTable("events", version=version).to_pyarrow_table().sort_by("id")
        assert got.column("id").to_pylist() == expected.column("id").to_pylist() and got.num_rows == rows
        assert lake.manifest(workdir / out)["table"]["version"] == version


def test_iceberg_example(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(docs_block("tables.md", "iceberg"), "docs/tables.md", "exec"), {"__name__": "docs_iceberg"})
    assert printed.getvalue().splitlines() == ["True 50", "True 50"]
    assert lake.scored(workdir / "iceberg-scores").column("s").to_pylist()[:2] == pytest.approx([1.0, 1.2])


def test_nightly_example(workdir, monkeypatch):
    from deltalake import write_deltalake

    monkeypatch.chdir(workdir)
    days = [dt.date(2026, 12, 1)] * 10 + [dt.date(2026, 12, 2)] * 7
    write_deltalake("daily", lake.rows(range(17), day=pa.array(days, pa.date32())), partition_by=["day"])
    (argv,) = commands(docs_block("tables.md", "nightly"))
    run = run_cli(*argv)
    assert run.code == 0, run.stderr
    got = lake.scored(workdir / "nightly" / "2026-12-02")
    assert got.column("id").to_pylist() == list(range(10, 17))
    assert lake.manifest(workdir / "nightly" / "2026-12-02")["table"]["where"] == "day = '2026-12-02'"
