"""Several models over one TFRecord read: the records are parsed once, against the union of
what every model's signature (and its ``map``) needs.

Real SavedModels that read different features (``x`` and an int32 ``age``; ``x`` and ``w``;
whole serialized Examples), a real Beam runner over real TFRecord files of
``tf.train.Example``s. Each model's values are compared with a direct call of its signature
(tests/scores.py's tolerance); every count is exact, for the job and for each model. A
feature two models would parse differently is refused before the job starts, naming both.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from cli_runs import run_cli
from conftest import read_output
from runner_jobs import beamscore_cli
from scores import assert_scores_close

ROWS = 300
#: record 123's age does not fit the int32 ``age`` input of the ``aged`` model: a dead letter
BAD_AGE = 123


class Aged(tf.Module):
    """``x`` float32 [None, 4] and ``age`` int32 [None] -> ``y`` = 2 sum(x) + age."""

    @tf.function(
        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"), tf.TensorSpec([None], tf.int32, name="age")]
    )
    def serve(self, x, age):
        return {"y": 2.0 * tf.reduce_sum(x, axis=1) + tf.cast(age, tf.float32)}


class Weighted(tf.Module):
    """``x`` float32 [None, 4] and ``w`` float32 [None, 2] -> ``y`` = sum(x) + 3 sum(w)."""

    @tf.function(
        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"), tf.TensorSpec([None, 2], tf.float32, name="w")]
    )
    def serve(self, x, w):
        return {"y": tf.reduce_sum(x, axis=1) + 3.0 * tf.reduce_sum(w, axis=1)}


class Parsing(tf.Module):
    """``examples`` string [None] (serialized Examples, parsed in the graph) -> ``y`` = mean(x)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        parsed = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([4], tf.float32)})
        return {"y": tf.reduce_mean(parsed["x"], axis=1)}


class Square(tf.Module):
    """``x`` float32 [None, 2, 2]: the same 4 values a record holds, another shape."""

    @tf.function(input_signature=[tf.TensorSpec([None, 2, 2], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.reduce_sum(x, axis=[1, 2])}


class Aged64(tf.Module):
    """``age`` int64 [None]: the feature ``aged`` narrows to int32, read whole."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="age")])
    def serve(self, age):
        return {"y": tf.cast(age, tf.float32)}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tfrecord_models")
    found = {}
    for name, module in (
        ("aged", Aged()),
        ("weighted", Weighted()),
        ("parsing", Parsing()),
        ("square", Square()),
        ("aged64", Aged64()),
    ):
        found[name] = str(root / name)
        tf.saved_model.save(module, found[name], signatures={"serving_default": module.serve})
    return found


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> tuple[str, dict[str, np.ndarray], list[bytes]]:
    """Two TFRecord files of ``ROWS`` Examples (``id``, ``x``, ``age``, ``w``, ``country``);
    record ``BAD_AGE`` holds an age no int32 holds."""
    rng = np.random.default_rng(33)
    data = {
        "id": np.arange(ROWS, dtype=np.int64),
        "x": rng.normal(size=(ROWS, 4)).astype(np.float32),
        "age": rng.integers(18, 90, size=ROWS).astype(np.int64),
        "w": rng.normal(size=(ROWS, 2)).astype(np.float32),
        "country": np.array(["de", "fr", "it"] * (ROWS // 3), dtype=object),
    }
    data["age"][BAD_AGE] = 1 << 40
    serialized = []
    for i in range(ROWS):
        feature = {
            "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[data["id"][i]])),
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=data["x"][i])),
            "age": tf.train.Feature(int64_list=tf.train.Int64List(value=[data["age"][i]])),
            "w": tf.train.Feature(float_list=tf.train.FloatList(value=data["w"][i])),
            "country": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data["country"][i].encode()])),
        }
        serialized.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    directory = tmp_path_factory.mktemp("records")
    for shard, rows in enumerate(np.array_split(np.arange(ROWS), 2)):
        with tf.io.TFRecordWriter(str(directory / f"part-{shard}.tfrecord")) as writer:
            for i in rows:
                writer.write(serialized[i])
    return str(directory / "*.tfrecord"), data, serialized


def direct(model: str, rows: np.ndarray, data: dict, serialized: list[bytes]) -> np.ndarray:
    """The model's ``y`` for ``rows``, from a direct call of its signature."""
    fn = tf.saved_model.load(model).signatures["serving_default"]
    keys = set(fn.structured_input_signature[1])
    feeds = {"examples": tf.constant([serialized[i] for i in rows])} if keys == {"examples"} else {}
    if "x" in keys:
        feeds["x"] = tf.constant(data["x"][rows])
    if "age" in keys:
        feeds["age"] = tf.constant(data["age"][rows].astype(np.int32))
    if "w" in keys:
        feeds["w"] = tf.constant(data["w"][rows])
    return fn(**feeds)["y"].numpy()


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    for model in m["models"]:
        held = model.get("rows_held", 0)
        assert model["rows_in"] == model["rows_out"] + model["rows_failed"] + held, model
    return m


def several_over_tfrecord(models, records, tmp_path, *runner: str, launch=None) -> None:
    """Three models reading different features of one TFRecord read; each model's values
    against a direct call, the bad record held back for all, every count exact."""
    pattern, data, serialized = records
    out = tmp_path / "out"
    args = [
        "score",
        "--model", f"aged={models['aged']}",
        "--model", f"weighted={models['weighted']}",
        "--model", f"parsing={models['parsing']}",
        "--input", pattern, "--output", str(out), "--keep", "id", "--batch-size", "64", "--max-failed-rows", "1",
        *runner,
    ]  # fmt: skip
    run = (launch or run_cli)(*args)
    code, err = (run.code, run.stderr) if hasattr(run, "code") else (run.returncode, run.stderr)
    assert code == 0, err[-3000:]
    table = read_output(str(out)).sort_by("id")
    assert table.column_names == ["aged__y", "weighted__y", "parsing__y", "id"]
    ids = table["id"].to_numpy()
    assert list(ids) == [i for i in range(ROWS) if i != BAD_AGE]  # held back for all models
    for name in ("aged", "weighted", "parsing"):
        assert_scores_close(table[f"{name}__y"], direct(models[name], ids, data, serialized), err_msg=name)
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (ROWS, ROWS - 1, 1)
    assert {e["name"]: e["rows_in"] for e in m["models"]} == dict.fromkeys(("aged", "weighted", "parsing"), ROWS)
    errors = (out / "_errors").glob("*.parquet")
    letters = [r for f in errors for r in pq.read_table(f).to_pylist()]
    assert len(letters) == 1 and f"part-0.tfrecord: record {BAD_AGE} " in letters[0]["error"], letters
    assert "'age'" in letters[0]["error"] and "int32" in letters[0]["error"]


def test_each_model_reads_its_own_features_from_one_parse(models, records, tmp_path):
    several_over_tfrecord(models, records, tmp_path)


@pytest.mark.slow
@pytest.mark.distributed
def test_each_model_reads_its_own_features_on_worker_processes(models, records, tmp_path):
    runner = ("--direct_running_mode=multi_processing", "--direct_num_workers=2", "--no-progress")
    several_over_tfrecord(models, records, tmp_path, *runner, launch=beamscore_cli)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from dask_cluster import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


@pytest.mark.slow
@pytest.mark.distributed
def test_each_model_reads_its_own_features_on_a_dask_cluster(models, records, cluster, tmp_path):
    runner = ("--runner=DaskRunner", f"--dask_client_address={cluster.address}", "--no-progress")
    several_over_tfrecord(models, records, tmp_path, *runner)


def test_routed_models_read_their_own_features(models, records, tmp_path):
    pattern, data, serialized = records
    out = tmp_path / "out"
    run = run_cli(
        "score", "--route-by", "country",
        "--model", f"de={models['aged']}",
        "--model", f"fr={models['weighted']}",
        "--model", f"default={models['parsing']}",
        "--input", pattern, "--output", str(out), "--keep", "id", "--keep", "country",
        "--batch-size", "64", "--max-failed-rows", "1",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    table = read_output(str(out))
    ids = table["id"].to_numpy()
    assert list(ids) == [i for i in range(ROWS) if i != BAD_AGE]  # input order
    countries = np.array([c.decode() if isinstance(c, bytes) else c for c in table["country"].to_pylist()])
    y = table["y"].to_numpy()
    for value, name in (("de", "aged"), ("fr", "weighted"), ("it", "parsing")):
        picked = countries == value
        assert picked.sum() > 90
        assert_scores_close(y[picked], direct(models[name], ids[picked], data, serialized), err_msg=value)
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (ROWS, ROWS - 1, 1)
    assert sum(e["rows_out"] for e in m["models"]) == ROWS - 1


@pytest.mark.parametrize(
    "other, feature, said",
    [
        ("square", "x", "model 'aged' reads it as float32 (-1, 4) and model 'other' as float32 (-1, 2, 2)"),
        ("aged64", "age", "model 'aged' reads it as int32 (-1) and model 'other' as int64 (-1)"),
    ],
)
def test_a_feature_two_models_parse_differently_is_refused(models, records, tmp_path, other, feature, said):
    pattern, _, _ = records
    out = tmp_path / "out"
    run = run_cli(
        "score",
        "--model", f"aged={models['aged']}",
        "--model", f"other={models[other]}",
        "--input", pattern, "--output", str(out),
    )  # fmt: skip
    assert run.code == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"TFRecord feature {feature!r} is parsed once for every model" in lines[0], lines
    assert said in lines[0]
    assert not out.exists() or not any(out.iterdir())
