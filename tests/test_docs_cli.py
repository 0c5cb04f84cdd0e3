"""The console sessions of the README's tour and of docs/cli.md, run as written.

Each ``$ beamscore ...`` line is split with shlex and run through ``beamscore.cli.main`` in a
directory laid out as the docs assume (``demo/model`` is the demo's MLP, built by
``benchmarks.build.build_mlp`` with its fixed weights; ``demo/data/`` has its columns, fewer
rows), and what it prints must be the lines that follow it: exactly, except where the docs
show a timing or a row count of the full demo (``loose``: every number is compared as N).
"""

from __future__ import annotations

import os
import re
import shlex
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trial_models
from cli_runs import error_lines
from docs_blocks import ROOT, console_commands, docs_block

from beamscore.cli import main

HOME = "/home/me/beamscore"  # where the docs' sessions run


@pytest.fixture(scope="module")
def demo(models, tmp_path_factory) -> str:
    """A working directory: demo/model (the demo MLP), demo/data/shard-0N.parquet (id, x[64]),
    model (the two-signature test model, x[4]) and data64.parquet (x as float64)."""
    sys.path.insert(0, ROOT)
    from benchmarks.build import build_mlp

    root = tmp_path_factory.mktemp("demo")
    build_mlp(str(root / "demo" / "model"))
    os.makedirs(root / "demo" / "data")
    rng = np.random.default_rng(0)
    for s in range(4):
        x = rng.normal(size=(250, 64)).astype(np.float32)
        ids = np.arange(s * 250, (s + 1) * 250, dtype=np.int64)
        table = pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 64)})
        pq.write_table(table, root / "demo" / "data" / f"shard-{s:02d}.parquet")
    x64 = rng.normal(size=(10, 64))
    pq.write_table(
        pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x64.reshape(-1)), 64)}), root / "data64.parquet"
    )
    os.symlink(models["two_sig"], root / "model")
    return str(root)


def _numbers(text: str) -> str:
    return re.sub(r"\d[\d,.]*", "N", text)


def check_session(block: str, cwd: str, capsys, monkeypatch, loose: bool = False) -> None:
    """Run every command of a console block in ``cwd``; compare what it prints with the block."""
    monkeypatch.chdir(cwd)
    for command, expected in console_commands(block):
        argv = shlex.split(command)
        assert argv[0] == "beamscore", command
        main(argv[1:])
        out, err = capsys.readouterr()
        got = (out + err).replace(os.path.realpath(cwd), HOME).replace(cwd, HOME).splitlines()
        got = error_lines("\n".join(got))  # the docs show a terminal: no launch or progress lines
        if loose:
            got, expected = [_numbers(x) for x in got], [_numbers(x) for x in expected]
        assert got == expected, command


def test_show(demo, capsys, monkeypatch):
    check_session(docs_block("cli.md", "show"), demo, capsys, monkeypatch)
    check_session(docs_block("README.md", "show"), demo, capsys, monkeypatch)


def test_run_errors(demo, capsys, monkeypatch):
    check_session(docs_block("cli.md", "run-errors"), demo, capsys, monkeypatch)
    check_session(docs_block("README.md", "run-check"), demo, capsys, monkeypatch)


def test_run_outdir(tmp_path, capsys, monkeypatch):
    trial_models.save_edge_model(str(tmp_path / "model"))
    check_session(docs_block("cli.md", "run-outdir"), str(tmp_path), capsys, monkeypatch)
    assert sorted(os.listdir(tmp_path / "out")) == ["%2E.%2F..%2Fescaped.npy", "a%2Fb.npy", "text.npy"]


def test_score_and_its_refusal(demo, capsys, monkeypatch):
    check_session(docs_block("cli.md", "score"), demo, capsys, monkeypatch, loose=True)
    check_session(docs_block("README.md", "score"), demo, capsys, monkeypatch, loose=True)
    scored = pq.read_table(os.path.join(demo, "demo", "output"), columns=["id"])
    assert sorted(scored["id"].to_pylist()) == list(range(1000))
    check_session(docs_block("cli.md", "score-error"), demo, capsys, monkeypatch)
