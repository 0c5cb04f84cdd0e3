"""The Python API of several models: ``RunSignatures`` (one step, every model, per-model dead
letters), ``SignatureModelHandler`` inside Beam's ``KeyedModelHandler``, and a model used by
two steps loaded once per process. Real SavedModels on the in-process DirectRunner; each
model's values against a direct call of its signature (tests/scores.py's tolerance)."""

from __future__ import annotations

import contextlib
import io
import os

import apache_beam as beam
import job_models
import numpy as np
import pytest
import tensorflow as tf
from docs_blocks import docs_block
from scores import assert_scores_close

import beamscore
from beamscore.errors import BeamscoreError
from beamscore.model.loader import load_count


class Challenger(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * 3.0 + 1.0, "s": tf.reduce_mean(x, axis=1), "z": x[:, 1] - x[:, 2]}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("run_models")
    built = job_models.build_all(str(root / "job"))
    module = Challenger()
    tf.saved_model.save(module, str(root / "challenger"), signatures={"serving_default": module.serve})
    return {"champion": built["raising"], "challenger": str(root / "challenger")}


def reference(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(model).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(x=tf.constant(x)).items()}


_COLLECTED: dict[str, list] = {}


def _collect(element, name: str) -> None:
    _COLLECTED[name].append(element)  # the in-process runner calls this module's function


def collect(pcoll, into: list) -> None:
    """Gather a PCollection's elements into ``into`` (the in-process runner's memory)."""
    name = f"c{len(_COLLECTED)}"
    _COLLECTED[name] = into
    _ = pcoll | f"Collect{name}" >> beam.Map(_collect, name)


def test_run_signatures_scores_every_model_and_holds_back_a_row_one_fails(models):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    x[7, 0] = 500.0  # the champion raises on it
    elements = [("k1", {"x": x[:25], "id": np.arange(25)}), ("k2", {"x": x[25:], "id": np.arange(25, 40)})]
    scored, dead = [], []
    with beam.Pipeline(runner="FnApiRunner") as p:
        out, letters = (
            p
            | beam.Create(elements)
            | beamscore.RunSignatures(
                {"champion": models["champion"], "challenger": {"path": models["challenger"], "outputs": ["s", "z"]}},
                keep=["id"],
            ).with_exception_handling()
        )
        collect(out, scored)
        collect(letters, dead)
    by_key = dict(scored)
    assert sorted(by_key["k1"]) == ["challenger__s", "challenger__z", "champion__s", "champion__y", "id"]
    ids = np.concatenate([by_key["k1"]["id"], by_key["k2"]["id"]])
    assert 7 not in ids and len(ids) == 39
    for name, keys in (("champion", ["s", "y"]), ("challenger", ["s", "z"])):
        want = reference(models[name], x[ids])
        for key in keys:
            got = np.concatenate([by_key["k1"][f"{name}__{key}"], by_key["k2"][f"{name}__{key}"]])
            assert_scores_close(got, want[key], err_msg=f"{name}.{key}")
    [(key, table)] = dead
    assert key == "k1" and table.num_rows == 1 and table["row"][0].as_py() == 7
    assert table["error"][0].as_py().startswith("model 'champion': ")


def test_run_signatures_refuses_a_bad_mapping(models):
    with pytest.raises(BeamscoreError, match="models must be a dict"):
        beamscore.RunSignatures([models["champion"]])
    with pytest.raises(BeamscoreError, match="unknown: 'sig'"):
        beamscore.RunSignatures({"a": {"path": models["champion"], "sig": "x"}})
    with pytest.raises(BeamscoreError, match="model name 'a__b'"):
        beamscore.RunSignatures({"a__b": models["champion"]})


def test_signature_model_handler_inside_keyed_model_handler(models):
    from apache_beam.ml.inference.base import KeyedModelHandler, KeyModelMapping, RunInference

    handler = KeyedModelHandler(
        [
            KeyModelMapping(["champion"], beamscore.SignatureModelHandler(models["champion"])),
            KeyModelMapping(["challenger"], beamscore.SignatureModelHandler(models["challenger"])),
        ]
    )
    x = np.random.default_rng(5).normal(size=(12, 4)).astype(np.float32)
    elements = [("champion", {"x": x[:5]}), ("challenger", {"x": x[5:]}), ("champion", {"x": x[5:9]})]
    got = []
    with beam.Pipeline(runner="FnApiRunner") as p:
        collect(p | beam.Create(elements) | RunInference(handler) | beam.Map(lambda kv: (kv[0], kv[1].inference)), got)
    assert sorted(k for k, _ in got) == ["challenger", "champion", "champion"]
    for key, inference in got:
        rows = inference["x"]
        want = reference(models[key], rows)
        assert sorted(k for k in inference if k != "x") == sorted(want)
        for name, values in want.items():
            assert_scores_close(inference[name], values, err_msg=f"{key}.{name}")


def test_one_model_in_two_steps_is_loaded_once(tmp_path):
    module = Challenger()  # a model no other test has loaded
    path = str(tmp_path / "once")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    models = {"challenger": path}
    x = np.random.default_rng(6).normal(size=(6, 4)).astype(np.float32)
    before = load_count()
    got = []
    with beam.Pipeline(runner="FnApiRunner") as p:
        rows = p | beam.Create([{"x": x}])
        first = rows | "A" >> beamscore.RunSignature(models["challenger"], outputs=["s"], keep=["x"])
        second = first | "B" >> beamscore.RunSignatures({"again": models["challenger"]}, keep=["x", "s"])
        collect(second, got)
    assert load_count() - before == 1
    [batch] = got
    assert_scores_close(batch["again__s"], reference(models["challenger"], x)["s"])


def test_the_api_page_example(models, tmp_path, monkeypatch):
    os.makedirs(tmp_path / "models")
    os.symlink(models["champion"], tmp_path / "models" / "champion")
    os.symlink(models["challenger"], tmp_path / "models" / "challenger")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(docs_block("api.md", "run-signatures"), "docs/api.md", "exec"), {"__name__": "docs_rs"})
    assert (
        "['challenger__s', 'challenger__y', 'challenger__z', 'champion__s', 'champion__y', 'x']" in printed.getvalue()
    )
