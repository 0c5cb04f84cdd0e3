"""``inspect_model`` against what TensorFlow itself reports for the same SavedModels."""

from __future__ import annotations

import os
import shutil

import fsspec
import pytest
import tensorflow as tf
import trial_models

from beamscore.errors import BeamscoreError
from beamscore.model.inspect import inspect_model, parse_tags


@pytest.fixture(scope="session")
def trial(tmp_path_factory) -> dict[str, str]:
    return trial_models.build_all(str(tmp_path_factory.mktemp("trial")))


def _specs(structure) -> dict[str, tuple[str, tuple[int | None, ...]]]:
    return {k: (v.dtype.name, tuple(v.shape.as_list())) for k, v in structure.items()}


@pytest.mark.parametrize("name", ["two_sig", "image", "mixed", "keras", "edge", "examples"])
def test_signatures_match_tf_saved_model_load(models, trial, name):
    path = {**models, **trial}[name]
    info = inspect_model(path)
    loaded = tf.saved_model.load(path)
    mg = info.meta_graph("serve")
    assert sorted(mg.signatures) == sorted(loaded.signatures.keys())
    for key, fn in loaded.signatures.items():
        sig = mg.signatures[key]
        assert sig.method_name == "tensorflow/serving/predict"
        assert _specs(fn.structured_input_signature[1]) == {k: (s.dtype, s.shape) for k, s in sig.inputs.items()}
        assert _specs(fn.structured_outputs) == {k: (s.dtype, s.shape) for k, s in sig.outputs.items()}
    assert info.fingerprint == tf.saved_model.experimental.read_fingerprint(path).singleprint()
    variables = os.path.join(path, "variables")
    assert info.variables_bytes == sum(os.path.getsize(os.path.join(variables, f)) for f in os.listdir(variables))
    assert "Placeholder" in mg.ops and mg.ops == tuple(sorted(mg.ops))


def test_saved_functions_are_listed_without_loading(models):
    mg = inspect_model(models["two_sig"]).meta_graph()
    assert {f.name: f.calls for f in mg.functions} == {
        "embed": ("embed(x: float32 (-1, 4))",),
        "serve": ("serve(x: float32 (-1, 4))",),
    }


def test_tf1_model_with_two_tag_sets(trial):
    info = inspect_model(trial["tf1"])
    assert [mg.tags for mg in info.meta_graphs] == [("serve",), ("gpu", "serve")]
    assert info.meta_graph("serve,gpu") is info.meta_graph(" gpu , serve ")
    # no fingerprint.pb: beamscore's content hash, marked as computed
    assert info.fingerprint.startswith("computed:sha256:") and info.fingerprint_computed
    assert info.fingerprint_fields == {}
    for tags, key, out in (("serve", "serving_default", "y"), ("serve,gpu", "predict", "y2")):
        loaded = tf.saved_model.load(trial["tf1"], tags=tags.split(","))
        assert list(loaded.signatures.keys()) == [key]
        sig = info.signature(key, tags)
        fn = loaded.signatures[key]
        assert _specs(fn.structured_input_signature[1]) == {"x": ("float32", (None, 2))}
        assert {k: (s.dtype, s.shape) for k, s in sig.inputs.items()} == {"x": ("float32", (None, 2))}
        assert {k: (s.dtype, s.shape, s.name) for k, s in sig.outputs.items()} == {
            out: ("float32", (None, 2), f"{out}:0")
        }
        assert _specs(fn.structured_outputs) == {out: ("float32", (None, 2))}
    assert {"MatMul", "VarHandleOp", "Placeholder"} <= set(info.meta_graph("serve").ops)
    assert info.meta_graph("serve").functions == ()
    with pytest.raises(BeamscoreError, match=r"signature 'predict' not found in .*; available: serving_default"):
        info.signature("predict")
    with pytest.raises(BeamscoreError, match=r"tag set 'gpu' not found in .*; available: serve; gpu,serve"):
        info.meta_graph("gpu")


def test_versioned_base_dir(models):
    base = models["versioned"]
    info = inspect_model(base)
    assert (info.versions, info.version, info.path) == (("1", "2"), "2", os.path.join(base, "2"))
    one = inspect_model(base, version=1)
    assert (one.version, one.path) == ("1", os.path.join(base, "1"))
    assert one.fingerprint == tf.saved_model.experimental.read_fingerprint(one.path).singleprint()
    assert inspect_model(os.path.join(base, "2")).version == "2"
    with pytest.raises(BeamscoreError, match=r"version 3 not found in .*versioned; versions found: 1, 2"):
        inspect_model(base, version=3)
    # a version asked of an export itself: say what it is, not "versions found: none"
    with pytest.raises(BeamscoreError, match=r"version 2 not found: .*/2 is a SavedModel itself, not a base dir"):
        inspect_model(os.path.join(base, "2"), version=2)


def test_model_on_fsspec_memory(models):
    fs = fsspec.filesystem("memory")
    fs.put(models["two_sig"], "/inspect/two_sig", recursive=True)
    info = inspect_model("memory://inspect/two_sig")
    assert info.path == "memory:///inspect/two_sig"
    assert info.fingerprint == inspect_model(models["two_sig"]).fingerprint
    assert sorted(info.meta_graph().signatures) == ["embed", "serving_default"]


def test_errors(tmp_path):
    with pytest.raises(BeamscoreError, match="does not exist"):
        inspect_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BeamscoreError, match=r"is not a SavedModel: no saved_model\.pb"):
        inspect_model(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "saved_model.pb").write_bytes(b"\xff\xff not a protobuf")
    with pytest.raises(BeamscoreError, match="is not a SavedModel protobuf"):
        inspect_model(str(tmp_path / "bad"))


def test_a_model_file_gets_how_to_export_a_saved_model(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save(str(tmp_path / "model.keras"))
    with pytest.raises(
        BeamscoreError, match=r"model\.keras is a file, not a SavedModel directory \(a Keras model file\)"
    ):
        inspect_model(str(tmp_path / "model.keras"))
    with pytest.raises(BeamscoreError, match=r"load_model\('model\.keras'\)\.export\(DIR\)"):
        inspect_model(str(tmp_path / "model.keras"))
    model.export(str(tmp_path / "exported"), verbose=False)
    with pytest.raises(BeamscoreError, match=r"takes the directory that holds saved_model\.pb and variables/"):
        inspect_model(str(tmp_path / "exported" / "saved_model.pb"))
    assert inspect_model(str(tmp_path / "exported")).signature("serving_default", "serve").inputs


def test_parse_tags():
    assert parse_tags("serve, gpu") == ("gpu", "serve")
    assert parse_tags(["serve"]) == ("serve",)


@pytest.mark.parametrize("damage", [b"", b"\x0a\x05abc"])
def test_an_empty_or_corrupt_fingerprint_pb_falls_back_to_the_content_hash(models, tmp_path, damage):
    """TensorFlow loads such a model (it logs the error); beamscore raised DecodeError, and an
    empty file read as fingerprint 0/0/0/0, the same cache key for every such model."""
    infos = []
    for name in ("two_sig", "keras"):
        path = shutil.copytree(models[name], str(tmp_path / name))
        with open(os.path.join(path, "fingerprint.pb"), "wb") as f:
            f.write(damage)
        loaded = tf.saved_model.load(path)  # TensorFlow's own loader takes it
        assert loaded.signatures["serving_default"] is not None
        infos.append(inspect_model(path))
    assert all(i.fingerprint.startswith("computed:sha256:") and i.fingerprint_computed for i in infos)
    assert infos[0].fingerprint != infos[1].fingerprint and infos[0].fingerprint_fields == {}


def test_versions_that_are_symbolic_links(models, tmp_path):
    """TF Serving base dirs often link each version to an export dir; fsspec lists a link as
    type "other", so such a base dir was "not a SavedModel"."""
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(os.path.join(models["versioned"], "1"), base / "3")
    os.symlink(os.path.join(models["versioned"], "2"), base / "10")
    os.symlink(str(tmp_path / "missing"), base / "11")  # dangling: not a version
    info = inspect_model(str(base))
    assert (info.versions, info.version, info.path) == (("3", "10"), "10", str(base / "10"))
    assert info.fingerprint == tf.saved_model.experimental.read_fingerprint(str(base / "10")).singleprint()
    assert inspect_model(str(base), version=3).path == str(base / "3")
