"""Keras 2 SavedModels (tf.keras ``model.save(path)`` with a compiled optimizer) score and run.

Where ``tf_keras`` cannot be imported, ``tf.saved_model.load`` fails on them ("'_UserObject'
object has no attribute 'add_slot'"); beamscore then runs their signatures in a v1 Session, as
``saved_model_cli run`` does. Each job runs in a child process that cannot import ``tf_keras``
(and one that can), and its outputs are compared with a direct call made where it can.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras2_models
import numpy as np
import pyarrow.parquet as pq
import pytest
from scores import assert_scores_close

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tf_keras") is None, reason="needs tf-keras ([dev])")


@pytest.fixture(scope="module")
def keras2(tmp_path_factory) -> dict[str, str]:
    root = str(tmp_path_factory.mktemp("keras2"))
    built = keras2_models.build(root)
    built["hide"] = keras2_models.hide_tf_keras(root)
    return built


def beamscore(args: list[str], hide: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    paths = [p for p in (hide, env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [sys.executable, "-m", "beamscore", *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_the_tf2_loader_fails_without_tf_keras(keras2):
    code = f"import tensorflow as tf; tf.saved_model.load({keras2['model']!r})"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": keras2["hide"]},
    )
    assert done.returncode != 0 and "add_slot" in done.stderr  # what made this test file needed


@pytest.mark.parametrize("hidden", [True, False], ids=["without-tf_keras", "with-tf_keras"])
def test_run_matches_a_direct_call(keras2, tmp_path, hidden):
    expected = np.load(keras2["expected"])
    rows = [0, 3, 2]  # the fixture's categories are a, b, c, zz, a, ...
    nums = expected["nums"][rows]
    cats = "[['a'], ['zz'], ['c']]"
    done = beamscore(
        ["run", keras2["model"], "--input-exprs", f"num={nums.tolist()};cat={cats}", "--outdir", str(tmp_path)],
        keras2["hide"] if hidden else None,
    )
    assert done.returncode == 0, done.stderr
    got = np.load(tmp_path / "score.npy")
    assert_scores_close(got, expected["score"][rows])


def test_score_on_the_direct_runner_without_tf_keras(keras2, tmp_path):
    out = tmp_path / "out"
    done = beamscore(
        ["score", "--model", keras2["model"], "--input", keras2["rows"], "--output", str(out)], keras2["hide"]
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == keras2_models.ROWS and manifest["rows_failed"] == 0
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    assert_scores_close(table["score"], np.load(keras2["expected"])["score"])
