"""Models routed by a key column: ``--route-by COLUMN`` with ``--model VALUE=PATH``.

Real SavedModels over real Parquet files on a real Beam runner: each row is scored only by
the model its value names (a ``default`` model takes the rest, or they are dead letters),
in input order, each value equal to a direct call of that model's signature; every count
exact, for the job and for each model; ``--max-models-per-worker`` bounds the models held.
"""

from __future__ import annotations

import gc
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from cli_runs import run_cli
from conftest import read_output
from runner_jobs import beamscore_cli
from scores import assert_scores_close


class Segment(tf.Module):
    """``x`` float32 [None, 4] -> ``y`` = a * x + b and ``s`` = sum(y): one per segment."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = tf.Variable(a), tf.Variable(b)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        y = x * self.a + self.b
        return {"y": y, "s": tf.reduce_sum(y, axis=1)}


class Other(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x, "s": tf.cast(tf.reduce_sum(x, axis=1), tf.float64)}  # s: another dtype


SEGMENTS = ["de", "fr", "it", "es", "pt", "nl", "be", "at", "ch", "pl"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("routed")
    found = {}
    for i, name in enumerate([*SEGMENTS, "default"]):
        module = Segment(float(i + 1), float(i) / 10)
        found[name] = str(root / name)
        tf.saved_model.save(module, found[name], signatures={"serving_default": module.serve})
    other = Other()
    found["other"] = str(root / "other")
    tf.saved_model.save(other, found["other"], signatures={"serving_default": other.serve})
    return found


def reference(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(model).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(x=tf.constant(x)).items()}


def write_inputs(directory, x: np.ndarray, country: list) -> str:
    os.makedirs(directory, exist_ok=True)
    ids = np.arange(len(x), dtype=np.int64)
    for i, part in enumerate(np.array_split(np.arange(len(x)), 2)):
        table = pa.table(
            {
                "id": ids[part],
                "country": pa.array([country[j] for j in part], pa.string()),
                "x": pa.FixedSizeListArray.from_arrays(pa.array(x[part].reshape(-1)), 4),
            }
        )
        pq.write_table(table, os.path.join(directory, f"part-{i}.parquet"), row_group_size=50)
    return str(directory)


def model_args(models, names) -> list[str]:
    return [a for name in names for a in ("--model", f"{name}={models[name]}")]


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    for model in m["models"]:
        assert model["rows_in"] == model["rows_out"] + model["rows_failed"], model
    return m


def assert_routed(models, out, x, country, route) -> None:
    """Each written row equals a direct call of the model its country routes to."""
    table = read_output(str(out))
    ids = table["id"].to_numpy()
    assert list(ids) == sorted(ids)  # input order
    for name in sorted({route(country[i]) for i in ids}):
        mine = np.asarray([i for i, j in enumerate(ids) if route(country[j]) == name])
        want = reference(models[name], x[ids[mine]])
        for key in ("y", "s"):
            got = table[key].take(pa.array(mine))
            assert_scores_close(got, want[key], err_msg=f"{name}.{key}")


def test_each_row_is_scored_by_the_model_its_value_names(models, tmp_path):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    country = [["de", "fr", "it", "xx"][i % 4] if i % 7 else None for i in range(300)]
    inputs = write_inputs(tmp_path / "in", x, country)
    out = tmp_path / "out"
    run = run_cli(
        "score", *model_args(models, ["de", "fr", "it"]), "--route-by", "country",
        "--input", inputs, "--output", str(out), "--keep", "id", "--batch-size", "40", "--max-failed-fraction", "0.5",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    unrouted = sum(1 for c in country if c not in ("de", "fr", "it"))
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (300, 300 - unrouted, unrouted)
    assert m["route_by"] == "country" and m["settings"]["route_by"] == "country"
    routed = {e["name"]: e["rows_in"] for e in m["models"]}
    assert routed == {n: country.count(n) for n in ("de", "fr", "it")}
    assert read_output(str(out)).column_names == ["s", "y", "id"]
    assert_routed(models, out, x, country, lambda c: c)
    errors = [r for f in sorted((out / "_errors").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(errors) == unrouted
    assert all("names no model" in r["error"] and "column 'country'" in r["error"] for r in errors)


def test_a_default_model_takes_the_other_rows(models, tmp_path):
    x = np.random.default_rng(9).normal(size=(120, 4)).astype(np.float32)
    country = [["de", "zz", None][i % 3] for i in range(120)]
    inputs = write_inputs(tmp_path / "in", x, country)
    out = tmp_path / "out"
    run = run_cli(
        "score", *model_args(models, ["de", "default"]), "--route-by", "country",
        "--input", inputs, "--output", str(out), "--keep", "id",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    m = manifest_of(out)
    assert (m["rows_out"], m["rows_failed"]) == (120, 0)
    assert {e["name"]: e["rows_in"] for e in m["models"]} == {"de": 40, "default": 80}
    assert_routed(models, out, x, country, lambda c: "de" if c == "de" else "default")


def test_ten_models_with_at_most_three_loaded(models, tmp_path):
    x = np.random.default_rng(10).normal(size=(400, 4)).astype(np.float32)
    country = [SEGMENTS[(i // 7) % 10] for i in range(400)]  # runs of 7 rows: models come and go
    inputs = write_inputs(tmp_path / "in", x, country)
    out = tmp_path / "out"
    frozen = gc.get_freeze_count()
    run = run_cli(
        "score", *model_args(models, SEGMENTS), "--route-by", "country", "--max-models-per-worker", "3",
        "--input", inputs, "--output", str(out), "--keep", "id", "--batch-size", "30",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    m = manifest_of(out)
    assert (m["rows_out"], m["rows_failed"]) == (400, 0)
    assert sum(e["loads"] for e in m["models"]) > 10  # released and loaded again
    assert_routed(models, out, x, country, lambda c: c)
    # the collector's view the bounded DoFns froze (to collect cheaply at each release) is thawed
    # when the runner tears them down: an in-process job leaves the process's collector as it was
    assert gc.get_freeze_count() == frozen


def test_routed_models_must_agree_on_outputs(models, tmp_path):
    x = np.ones((10, 4), dtype=np.float32)
    inputs = write_inputs(tmp_path / "in", x, ["de"] * 10)
    run = run_cli(
        "score", *model_args(models, ["de", "other"]), "--route-by", "country",
        "--input", inputs, "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert run.code == 2
    assert "routed models must write the same outputs" in run.stderr and "'s'" in run.stderr
    missing = run_cli(
        "score", *model_args(models, ["de", "fr"]), "--route-by", "land",
        "--input", inputs, "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert missing.code == 2 and "no column 'land' to --route-by" in missing.stderr


@pytest.mark.slow
@pytest.mark.distributed
def test_routed_on_worker_processes(models, tmp_path):
    x = np.random.default_rng(11).normal(size=(200, 4)).astype(np.float32)
    country = [["de", "fr"][i % 2] for i in range(200)]
    inputs = write_inputs(tmp_path / "in", x, country)
    out = tmp_path / "out"
    run = beamscore_cli(
        "score", *model_args(models, ["de", "fr"]), "--route-by", "country", "--rows-per-unit", "50",
        "--input", inputs, "--output", str(out), "--keep", "id", "--no-progress",
        "--direct_running_mode=multi_processing", "--direct_num_workers=2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    m = manifest_of(out)
    assert (m["rows_out"], m["rows_failed"]) == (200, 0)
    assert_routed(models, out, x, country, lambda c: c)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from dask_cluster import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


@pytest.mark.slow
@pytest.mark.distributed
def test_routed_on_a_dask_cluster(models, cluster, tmp_path):
    x = np.random.default_rng(12).normal(size=(200, 4)).astype(np.float32)
    country = [["de", "fr", "it"][i % 3] for i in range(200)]
    inputs = write_inputs(tmp_path / "in", x, country)
    out = tmp_path / "out"
    run = run_cli(
        "score", *model_args(models, ["de", "fr", "it"]), "--route-by", "country", "--rows-per-unit", "50",
        "--input", inputs, "--output", str(out), "--keep", "id", "--no-progress",
        "--runner=DaskRunner", f"--dask_client_address={cluster.address}",
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    m = manifest_of(out)
    assert (m["rows_out"], m["rows_failed"]) == (200, 0)
    assert_routed(models, out, x, country, lambda c: c)
