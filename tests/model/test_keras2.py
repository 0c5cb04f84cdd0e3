"""Keras 2 SavedModels (tf.keras ``model.save(path)`` with a compiled optimizer) score and run.

Where ``tf_keras`` cannot be imported, ``tf.saved_model.load`` fails on them ("'_UserObject'
object has no attribute 'add_slot'"); beamscore then runs their signatures in a v1 Session, as
``saved_model_cli run`` does. The jobs run in a child process that cannot import ``tf_keras``
(and one that can), and their outputs are compared with a direct call made where it can.

The three checks where ``tf_keras`` is hidden share one child (:func:`hidden`): ``beamscore run``,
``beamscore score`` and then a bare ``tf.saved_model.load``, each a fresh load (beamscore keeps
no model between commands), for one TensorFlow import instead of three.
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


#: the child where ``tf_keras`` is hidden: each ``beamscore`` command of ``argv[1]`` (a JSON
#: object name -> argv) through ``main``, then a bare ``tf.saved_model.load(argv[2])``; the last
#: stdout line is a JSON object of the exit codes and the load's traceback (null if it loaded)
HIDDEN_CHILD = """
import json, sys, traceback
from beamscore.cli import main
done = {}
for name, argv in json.loads(sys.argv[1]).items():
    print(f"--- beamscore {name}", file=sys.stderr, flush=True)
    done[name] = main(argv)
import tensorflow as tf
try:
    tf.saved_model.load(sys.argv[2])
except Exception:
    done["load"] = traceback.format_exc()
else:
    done["load"] = None
print(json.dumps(done))
"""
RUN_ROWS = [0, 3, 2]  # the fixture's categories are a, b, c, zz, a, ...


def run_args(keras2, outdir) -> list[str]:
    nums = np.load(keras2["expected"])["nums"][RUN_ROWS]
    cats = "[['a'], ['zz'], ['c']]"
    return ["run", keras2["model"], "--input-exprs", f"num={nums.tolist()};cat={cats}", "--outdir", str(outdir)]


@pytest.fixture(scope="module")
def hidden(keras2, tmp_path_factory) -> dict:
    """One child process that cannot import ``tf_keras``: ``beamscore run`` into ``run/``,
    ``beamscore score`` into ``score/``, then a bare ``tf.saved_model.load``. Returns the
    exit codes (``run``, ``score``), the load's traceback (``load``), the child's stderr
    (``stderr``) and the directories."""
    root = tmp_path_factory.mktemp("hidden")
    steps = {
        "run": run_args(keras2, root / "run"),
        "score": ["score", "--model", keras2["model"], "--input", keras2["rows"], "--output", str(root / "score")],
    }
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (keras2["hide"], env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", HIDDEN_CHILD, json.dumps(steps), keras2["model"]],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.splitlines()[-1]), "stderr": done.stderr, "root": root}


def test_the_tf2_loader_fails_without_tf_keras(hidden):
    assert hidden["load"] is not None and "add_slot" in hidden["load"]  # what made this test file needed


@pytest.mark.parametrize("without", [True, False], ids=["without-tf_keras", "with-tf_keras"])
def test_run_matches_a_direct_call(keras2, tmp_path, request, without):
    if without:
        hidden = request.getfixturevalue("hidden")
        assert hidden["run"] == 0, hidden["stderr"][-3000:]
        outdir = hidden["root"] / "run"
    else:
        done = beamscore(run_args(keras2, tmp_path), None)
        assert done.returncode == 0, done.stderr
        outdir = tmp_path
    got = np.load(outdir / "score.npy")
    assert_scores_close(got, np.load(keras2["expected"])["score"][RUN_ROWS])


def test_score_on_the_direct_runner_without_tf_keras(keras2, hidden):
    out = hidden["root"] / "score"
    assert hidden["score"] == 0, hidden["stderr"][-3000:]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == keras2_models.ROWS and manifest["rows_failed"] == 0
    table = pq.read_table(sorted(out.glob("part-*.parquet")))
    assert_scores_close(table["score"], np.load(keras2["expected"])["score"])
