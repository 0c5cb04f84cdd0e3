"""Several models over one read (champion / challenger): ``--model NAME=PATH`` repeated.

Real SavedModels (``job_models``: ``raising`` fails a row whose first value is 100 or more;
``challenger`` here), a real Beam runner over real Parquet files. Each model's columns
(``NAME__output``) are compared with a direct call of its signature (tests/scores.py's
tolerance); every count is exact, for the job and for each model.
"""

from __future__ import annotations

import json
import os

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from cli_runs import run_cli
from conftest import read_output
from scores import assert_scores_close


class Challenger(tf.Module):
    """``x`` float32 [None, 4] -> ``y`` = 3x + 1 and ``s`` = mean(x): the same outputs as
    ``raising``, other values; ``z`` only here. Never raises."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * 3.0 + 1.0, "s": tf.reduce_mean(x, axis=1), "z": x[:, 1] - x[:, 2]}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("several")
    built = job_models.build_all(str(root / "job"))
    module = Challenger()
    path = str(root / "challenger")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return {"champion": built["raising"], "challenger": path}


def reference(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(model).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(x=tf.constant(x)).items()}


def write_inputs(directory, x: np.ndarray, shards: int = 2) -> str:
    os.makedirs(directory, exist_ok=True)
    ids = np.arange(len(x), dtype=np.int64)
    for i, part in enumerate(np.array_split(np.arange(len(x)), shards)):
        table = pa.table({"id": ids[part], "x": pa.FixedSizeListArray.from_arrays(pa.array(x[part].reshape(-1)), 4)})
        pq.write_table(table, os.path.join(directory, f"part-{i}.parquet"), row_group_size=64)
    return str(directory)


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    for model in m.get("models", []):
        assert model["rows_in"] == model["rows_out"] + model["rows_failed"] + model["rows_held"], model
    return m


def test_champion_and_challenger_over_one_read(models, tmp_path):
    rng = np.random.default_rng(31)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    inputs = write_inputs(tmp_path / "in", x)
    out = tmp_path / "out"
    run = run_cli(
        "score",
        "--model", f"champion={models['champion']}",
        "--model", f"challenger={models['challenger']}",
        "--input", inputs, "--output", str(out), "--keep", "id", "--batch-size", "50",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    table = read_output(str(out)).sort_by("id")
    assert table.column_names == ["champion__s", "champion__y", "challenger__s", "challenger__y", "challenger__z", "id"]
    ids = table["id"].to_numpy()
    assert list(ids) == list(range(400))
    for name in ("champion", "challenger"):
        want = reference(models[name], x[ids])
        for key, values in want.items():
            assert_scores_close(table[f"{name}__{key}"], values, err_msg=f"{name}.{key}")
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (400, 400, 0)
    assert [e["name"] for e in m["models"]] == ["champion", "challenger"]
    for entry in m["models"]:
        assert entry["path"] == os.path.realpath(models[entry["name"]]) or entry["path"].endswith(entry["name"])
        assert entry["fingerprint"]
        assert entry["signature"] == "serving_default"
        assert (entry["rows_failed"], entry["rows_held"]) == (0, 0)
        assert entry["loads"] >= 1
    assert m["settings"]["models"][1]["name"] == "challenger"
    assert (out / "_SUCCESS").exists()


def test_a_row_one_model_fails_is_held_back_for_all_and_counted_per_model(models, tmp_path):
    rng = np.random.default_rng(32)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    x[[17, 150], 0] = 120.0  # the champion asserts x[:, 0] < 100; the challenger scores them
    inputs = write_inputs(tmp_path / "in", x)
    out = tmp_path / "out"
    run = run_cli(
        "score",
        "--model", f"champion={models['champion']}",
        "--model", f"challenger={models['challenger']}",
        "--input", inputs, "--output", str(out), "--keep", "id", "--max-failed-rows", "2",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (200, 198, 2)
    counts = {e["name"]: (e["rows_failed"], e["rows_held"]) for e in m["models"]}
    assert counts == {"champion": (2, 0), "challenger": (0, 2)}
    errors = [r for f in sorted((out / "_errors").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert sorted(json.loads(r["raw"])["id"] for r in errors) == [17, 150]
    assert all(r["error"].startswith("model 'champion': ") and r["stage"] == "model" for r in errors)
    table = read_output(str(out)).sort_by("id")
    ids = table["id"].to_numpy()
    assert 17 not in ids and 150 not in ids and len(ids) == 198
    for name in ("champion", "challenger"):
        want = reference(models[name], x[ids])
        for key, values in want.items():
            assert_scores_close(table[f"{name}__{key}"], values, err_msg=f"{name}.{key}")


def test_one_unnamed_model_writes_as_before(models, tmp_path):
    x = np.ones((10, 4), dtype=np.float32)
    inputs = write_inputs(tmp_path / "in", x, shards=1)
    out = tmp_path / "out"
    run = run_cli("score", "--model", models["challenger"], "--input", inputs, "--output", str(out))
    assert run.code == 0, run.stderr
    m = manifest_of(out)
    assert "models" not in m and "models" not in m["settings"]
    assert read_output(str(out)).column_names == ["s", "y", "z"]
    receipts = list((out / "_receipts").rglob("*.json")) if (out / "_receipts").exists() else []
    assert all("models" not in json.loads(r.read_text()) for r in receipts)


def test_every_model_is_checked_before_the_job_starts(models, tmp_path):
    x = np.ones((10, 4), dtype=np.float32)
    inputs = write_inputs(tmp_path / "in", x, shards=1)
    table = pq.read_table(os.path.join(inputs, "part-0.parquet")).rename_columns(["id", "w"])
    pq.write_table(table, os.path.join(inputs, "part-0.parquet"))
    out = tmp_path / "out"
    run = run_cli(
        "score",
        "--model", f"champion={models['champion']}",
        "--model", f"challenger={models['challenger']}",
        "--input", inputs, "--output", str(out),
    )  # fmt: skip
    assert run.code == 2
    assert "model 'champion'" in run.stderr and "'x'" in run.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_model_without_a_name_among_named_ones_is_refused(models, tmp_path):
    run = run_cli(
        "score",
        "--model", f"champion={models['champion']}",
        "--model", models["challenger"],
        "--input", str(tmp_path), "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert run.code == 2
    assert "has no name" in run.stderr
