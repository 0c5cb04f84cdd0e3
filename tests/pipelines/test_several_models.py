"""Several models over one read (champion / challenger): ``--model NAME=PATH`` repeated.

Real SavedModels (``job_models``: ``raising`` fails a row whose first value is 100 or more;
``challenger`` here), a real Beam runner over real Parquet files. Each model's columns
(``NAME__output``) are compared with a direct call of its signature (tests/scores.py's
tolerance); every count is exact, for the job and for each model.
"""

from __future__ import annotations

import json
import os
import shutil

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from cli_runs import run_cli
from conftest import read_output
from runner_jobs import beamscore_cli
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
    other = Challenger()
    other.shift = tf.Variable(2.0)  # another model (its own fingerprint), the same outputs
    tf.saved_model.save(other, str(root / "challenger2"), signatures={"serving_default": other.serve})
    # a copy of its own: job_models builds once per process, and a process shares one loaded
    # copy of a model across pipelines, so another module's job could leave this one no load to count
    champion = str(root / "champion")
    shutil.copytree(built["raising"], champion)
    return {"champion": champion, "challenger": path, "challenger2": str(root / "challenger2")}


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


def champion_challenger(models, tmp_path, *runner: str, launch=None) -> tuple:
    """The champion/challenger job over 400 rows in two files (units of 100 rows): its output
    dir and the inputs, launched by ``launch`` (default: ``run_cli`` in this process)."""
    rng = np.random.default_rng(31)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    inputs = write_inputs(tmp_path / "in", x)
    out = tmp_path / "out"
    args = [
        "score",
        "--model", f"champion={models['champion']}",
        "--model", f"challenger={models['challenger']}",
        "--input", inputs, "--output", str(out), "--keep", "id", "--batch-size", "50", "--rows-per-unit", "100",
        *runner,
    ]  # fmt: skip
    run = (launch or run_cli)(*args)
    code, err = (run.code, run.stderr) if hasattr(run, "code") else (run.returncode, run.stderr)
    assert code == 0, err[-3000:]
    return out, x


def assert_champion_challenger(models, out, x) -> dict:
    """Each model's columns equal a direct call of its signature; every count exact."""
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
    return m


def test_champion_and_challenger_over_one_read(models, tmp_path):
    out, x = champion_challenger(models, tmp_path)
    m = assert_champion_challenger(models, out, x)
    assert m["units"] == 4
    assert [e["loads"] for e in m["models"]] == [1, 1]  # each model loaded once in this process


@pytest.mark.slow
@pytest.mark.distributed
def test_champion_and_challenger_on_worker_processes(models, tmp_path):
    out, x = champion_challenger(
        models,
        tmp_path,
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        "--no-progress",
        launch=beamscore_cli,
    )
    m = assert_champion_challenger(models, out, x)
    assert m["metrics"]["workers"] >= 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from dask_cluster import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


@pytest.mark.slow
@pytest.mark.distributed
def test_champion_and_challenger_on_a_dask_cluster(models, cluster, tmp_path):
    out, x = champion_challenger(
        models, tmp_path, "--runner=DaskRunner", f"--dask_client_address={cluster.address}", "--no-progress"
    )
    assert_champion_challenger(models, out, x)


def test_dry_run_lists_every_model(models, tmp_path):
    x = np.ones((10, 4), dtype=np.float32)
    inputs = write_inputs(tmp_path / "in", x, shards=1)
    run = run_cli(
        "score",
        "--model", f"champion={models['champion']}",
        "--model", f"challenger={models['challenger']}",
        "--input", inputs, "--output", str(tmp_path / "out"), "--dry-run",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert "models:      2, each batch read once and scored by every model" in run.stdout
    assert "model 'champion':" in run.stdout and "model 'challenger':" in run.stdout
    assert "challenger__z" in run.stdout and "champion__y" in run.stdout


def test_resume_refuses_another_challenger(models, tmp_path):
    x = np.ones((10, 4), dtype=np.float32)
    inputs = write_inputs(tmp_path / "in", x, shards=1)
    out = str(tmp_path / "out")
    first = ["--model", f"champion={models['champion']}", "--model", f"challenger={models['challenger']}"]
    assert run_cli("score", *first, "--input", inputs, "--output", out).code == 0
    again = run_cli("score", *first, "--input", inputs, "--output", out, "--resume")
    assert again.code == 0 and "already complete" in again.stdout, again.stderr
    other = ["--model", f"champion={models['champion']}", "--model", f"challenger={models['challenger2']}"]
    refused = run_cli("score", *other, "--input", inputs, "--output", out, "--resume")
    assert refused.code == 2
    assert "the models" in refused.stderr


def test_a_config_gives_each_model_its_own_settings(models, tmp_path):
    x = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    inputs = write_inputs(tmp_path / "in", x, shards=1)
    table = pq.read_table(os.path.join(inputs, "part-0.parquet"))
    pq.write_table(table.append_column("features", table["x"]), os.path.join(inputs, "part-0.parquet"))
    config = tmp_path / "job.yaml"
    config.write_text(
        f"models:\n"
        f"  champion: {models['champion']}\n"
        f"  challenger:\n"
        f"    path: {models['challenger']}\n"
        f"    outputs: [z]\n"
        f"    map: {{x: features}}\n"
        f"input:\n  paths: {inputs}\n  keep: [id]\n"
        f"output:\n  path: {tmp_path / 'out'}\n"
    )
    run = run_cli("score", "--config", str(config))
    assert run.code == 0, run.stderr
    out = read_output(str(tmp_path / "out")).sort_by("id")
    assert out.column_names == ["champion__s", "champion__y", "challenger__z", "id"]
    assert_scores_close(out["challenger__z"], reference(models["challenger"], x)["z"])
    m = manifest_of(tmp_path / "out")
    assert m["settings"]["models"][1]["map"] == {"x": "features"}


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


def test_the_reading_example_reads_each_model_by_name(models, tmp_path, monkeypatch):
    """docs/reading-output.md's several-models block, as written, on a champion/challenger output."""
    import contextlib
    import io

    from docs_blocks import docs_block

    out, x = champion_challenger(models, tmp_path)
    os.rename(out, tmp_path / "CC")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    namespace: dict = {"__name__": "docs_several_models"}
    with contextlib.redirect_stdout(printed):
        exec(compile(docs_block("reading-output.md", "several-models"), "reading-output.md", "exec"), namespace)
    assert len(namespace["both"]) == 400
    assert namespace["champion"].columns == ["id", "champion__s", "champion__y"]
    assert namespace["table"].schema.names == ["champion__y", "challenger__y"]
    want = np.corrcoef(reference(models["champion"], x)["s"], reference(models["challenger"], x)["s"])[0, 1]
    assert abs(namespace["r"] - want) < 1e-4


def test_report_compares_the_models_of_a_real_job(models, tmp_path):
    out, x = champion_challenger(models, tmp_path)
    run = run_cli("report", str(out), "--json")
    assert run.code == 0, run.stderr
    found = {c["output"]: c for c in json.loads(run.stdout)["comparisons"]}
    assert sorted(found) == ["s", "y"]  # z is the challenger's alone
    want_a, want_b = reference(models["champion"], x), reference(models["challenger"], x)
    assert found["s"]["correlation"] == pytest.approx(np.corrcoef(want_a["s"], want_b["s"])[0, 1], abs=1e-5)
    assert found["y"]["argmax_agreement"] == 1.0  # 3x + 1 and 2x rank the four values alike
    gap = np.abs(want_b["s"] - want_a["s"])
    assert found["s"]["most_different"][0]["keep"] == {"id": int(np.argmax(gap))}


def test_npy_output_has_a_directory_per_model_column(models, tmp_path):
    x = np.random.default_rng(12).normal(size=(30, 4)).astype(np.float32)
    inputs = write_inputs(tmp_path / "in", x, shards=1)
    out = tmp_path / "out"
    run = run_cli(
        "score",
        "--model", f"champion={models['champion']}",
        "--model", f"challenger={models['challenger']}",
        "--input", inputs, "--output", str(out), "--output-format", "npy", "--keep", "id",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    for name in ("champion", "challenger"):
        [path] = (out / f"{name}__y").glob("*.npy")
        assert_scores_close(np.load(path, allow_pickle=False), reference(models[name], x)["y"])
    assert manifest_of(out)["rows_out"] == 30


class Features(tf.Module):
    """``features`` float32 [None, 4] -> ``y`` = x - 1: one input, under another name than ``x``."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def serve(self, features):
        return {"y": features - 1.0}


def test_an_npy_input_feeds_each_one_input_model_by_its_own_input_name(models, tmp_path):
    """A .npy file is one array: it feeds a one-input model whatever the input's name, for each
    of several models too (``x`` for the champion, ``features`` for this one)."""
    module = Features()
    features = str(tmp_path / "features")
    tf.saved_model.save(module, features, signatures={"serving_default": module.serve})
    x = np.random.default_rng(13).normal(size=(30, 4)).astype(np.float32)
    os.makedirs(tmp_path / "in")
    np.save(tmp_path / "in" / "x.npy", x)
    out = tmp_path / "out"
    run = run_cli(
        "score",
        "--model", f"champion={models['champion']}",
        "--model", f"features={features}",
        "--input", str(tmp_path / "in" / "x.npy"), "--output", str(out),
    )  # fmt: skip
    assert run.code == 0, run.stderr
    table = read_output(str(out))
    assert_scores_close(table["champion__y"], reference(models["champion"], x)["y"])
    fn = tf.saved_model.load(features).signatures["serving_default"]
    assert_scores_close(table["features__y"], fn(features=tf.constant(x))["y"].numpy())
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (30, 30, 0)
