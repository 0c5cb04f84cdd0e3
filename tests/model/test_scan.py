"""The op scan (:mod:`beamscore.model.scan`): each signature's reachable ops, read from
``saved_model.pb`` alone; flagged models are flagged where the op hides, real model families
pass the default policy."""

from __future__ import annotations

import os
import shutil

import composite_models
import job_models
import keras2_models
import pytest
import scan_models
import tensorflow as tf
import trial_models

from beamscore.errors import BeamscoreError
from beamscore.model.inspect import inspect_model
from beamscore.model.scan import FLAGGED_OPS, LOAD_SCOPE, check_allow_ops, check_model_ops, scan_model


def scan(path: str):
    return scan_model(inspect_model(path))


@pytest.fixture(scope="module")
def flagged(tmp_path_factory) -> dict[str, str]:
    return scan_models.build_flagged(str(tmp_path_factory.mktemp("flagged")))


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Real model families (name -> {model: path}), each built once."""
    root = str(tmp_path_factory.mktemp("families"))

    def at(name: str) -> str:
        return os.path.join(root, name)

    child = scan_models.build_in_child({"jax2tf": at("jax2tf"), "tf_text": at("tf_text")})
    return {
        "keras3 lookup with assets": {"keras3": scan_models.save_keras3_lookup_model(at("keras3"))},
        "lookup with assets, moved": {"moved": scan_models.save_moved_lookup_model(at("moved"))},
        "TF1 Estimator-style export": {"estimator": scan_models.save_estimator_model(at("estimator"))},
        "jax2tf": {"jax2tf": child["jax2tf"]},
        "tensorflow-text": {"tf_text": child["tf_text"]},
        "TFT and ragged (composite_models)": {
            "tft": composite_models.save_tft_model(at("tft")),
            "ragged": composite_models.save_ragged_embedding_model(at("ragged")),
        },
        "job_models": job_models.build_all(at("job")),
        "trial_models": trial_models.build_all(at("trial")),
        "keras2 (tf_keras model.save)": {"keras2": keras2_models.build(at("keras2"))["model"]},
    }


@pytest.mark.parametrize("name", sorted(scan_models.FLAGGED))
def test_each_model_is_flagged_in_its_signature_with_the_op_it_uses(flagged, name):
    mg = scan(flagged[name]).meta_graph("serve")
    assert set(mg.signatures["serving_default"].flagged_ops()) == scan_models.FLAGGED[name]
    assert mg.load.flagged_ops() == {}


def test_the_op_is_found_where_it_hides(flagged):
    nested = scan(flagged["nested"]).meta_graph("serve").signatures["serving_default"]
    (use,) = nested.flagged
    assert "secret_length" in use.function  # a tf.function the signature's function calls
    (branch,) = scan(flagged["cond"]).meta_graph("serve").signatures["serving_default"].flagged
    assert "cond_true" in branch.function  # a tf.cond branch
    (read,) = scan(flagged["reads"]).meta_graph("serve").signatures["serving_default"].flagged
    assert read.detail == f"path {os.path.join(os.path.dirname(flagged['reads']), 'secret.txt')!r}"
    (printed,) = scan(flagged["prints"]).meta_graph("serve").signatures["serving_default"].flagged
    assert printed.detail.startswith("to file://") and printed.detail.endswith("printed.txt")


def test_only_ops_reachable_from_a_signature_count(tmp_path):
    """One signature reads a file, the other does not: saved_model_cli scan flags the whole
    MetaGraph, this scan flags the one that reaches it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("x")

    class Two(tf.Module):
        @tf.function(input_signature=scan_models.SPEC)
        def clean(self, x):
            return {"y": x * 2.0}

        @tf.function(input_signature=scan_models.SPEC)
        def leak(self, x):
            return {"y": x + tf.cast(tf.strings.length(tf.io.read_file(str(secret))), tf.float32)}

    module = Two()
    path = str(tmp_path / "two")
    tf.saved_model.save(module, path, signatures={"serving_default": module.clean, "leak": module.leak})
    mg = scan(path).meta_graph("serve")
    assert mg.signatures["serving_default"].flagged_ops() == {}
    assert mg.signatures["leak"].flagged_ops() == {"ReadFile": "filesystem"}
    info = inspect_model(path)
    assert check_model_ops(info, "serve", "serving_default", []) == []
    with pytest.raises(BeamscoreError, match=r"signature 'leak' of .* reach the filesystem \(ReadFile\)"):
        check_model_ops(info, "serve", "leak", [])
    assert check_model_ops(info, "serve", "leak", ["ReadFile"]) == ["ReadFile"]


def test_the_savers_functions_are_machinery_and_table_files_in_assets_are_listed(models, families):
    mg = scan(models["two_sig"]).meta_graph("serve")
    assert {u.op for u in mg.machinery} >= {"SaveV2", "RestoreV2", "MergeV2Checkpoints"}
    assert all(not s.flagged for s in mg.scopes())
    moved = scan(families["lookup with assets, moved"]["moved"]).meta_graph("serve")
    (asset,) = moved.load.assets
    assert (asset.op, asset.detail) == ("InitializeTableFromTextFileV2", "reads assets/vocab.txt")
    estimator = scan(families["TF1 Estimator-style export"]["estimator"]).meta_graph("serve")
    assert [u.op for u in estimator.load.assets] == ["InitializeTableFromTextFileV2"]


def test_a_signature_reading_its_own_asset_passes(tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("hello")

    class Reads(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.note = tf.saved_model.Asset(str(note))

        @tf.function(input_signature=scan_models.SPEC)
        def serve(self, x):
            return {"y": x + tf.cast(tf.strings.length(tf.io.read_file(self.note)), tf.float32)}

    module = Reads()
    path = str(tmp_path / "m")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    sig = scan(path).meta_graph("serve").signatures["serving_default"]
    assert sig.flagged_ops() == {}
    assert [(u.op, u.detail) for u in sig.assets] == [("ReadFile", "reads assets/note.txt")]


def test_a_table_initialised_from_a_file_outside_the_model_is_flagged_at_load(tmp_path):
    """A TF1 export whose vocabulary file is not among its assets reads that absolute path
    whenever it loads."""
    path = scan_models.save_estimator_model(str(tmp_path / "est"), assets=False)
    mg = scan(path).meta_graph("serve")
    assert mg.signatures["serving_default"].flagged_ops() == {}
    assert mg.load.flagged_ops() == {"InitializeTableFromTextFileV2": "filesystem"}
    with pytest.raises(BeamscoreError, match=r"the model's load step \(init op\) of .*InitializeTableFromTextFileV2"):
        check_model_ops(inspect_model(path), "serve", "serving_default", [])
    assert mg.load.name == LOAD_SCOPE


FAMILIES = [
    "builders (conftest models)",
    "legacy_models",
    "keras3 lookup with assets",
    "lookup with assets, moved",
    "TF1 Estimator-style export",
    "jax2tf",
    "tensorflow-text",
    "TFT and ragged (composite_models)",
    "job_models",
    "trial_models",
    "keras2 (tf_keras model.save)",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_real_model_families_pass_the_default_policy(family, models, legacy, families):
    paths = {"builders (conftest models)": models, "legacy_models": legacy, **families}[family]
    assert paths
    flagged = {}
    for name, path in paths.items():
        if not os.path.isdir(path):  # legacy's base dirs and pbtxt copies are dirs; files are not models
            continue
        result = scan(path)
        found = {f"{mg.tag_str}/{s.name}": s.flagged_ops() for mg in result.meta_graphs for s in mg.scopes()}
        if any(found.values()):
            flagged[name] = found
    assert flagged == {}


def test_custom_ops_are_listed_with_their_package_not_flagged(families, legacy):
    mg = scan(families["tensorflow-text"]["tf_text"]).meta_graph("serve")
    sig = mg.signatures["serving_default"]
    assert sig.flagged_ops() == {}
    assert {(u.op, u.detail) for u in sig.custom} == {("TFText>WhitespaceTokenizeWithOffsetsV2", "tensorflow_text")}
    odd = scan(legacy["odd_op"]).meta_graph("serve").signatures["serving_default"]
    assert [(u.op, u.detail) for u in odd.custom] == [("BeamscoreNoSuchOp", "unregistered")]
    jax = scan(families["jax2tf"]["jax2tf"]).meta_graph("serve").signatures["serving_default"]
    assert "XlaCallModule" in jax.ops and not jax.custom


def test_saved_model_cli_denylist_is_covered_and_allow_ops_names_are_checked():
    assert {"ReadFile", "WriteFile", "PrintV2"} <= set(FLAGGED_OPS)  # saved_model_cli's _OP_DENYLIST
    assert check_allow_ops(["ReadFile", "EagerPyFunc"]) == ["ReadFile", "EagerPyFunc"]
    typo = r"--allow-ops: 'ReadFlie' is no op the scan flags \(did you mean ReadFile\?\)"
    with pytest.raises(BeamscoreError, match=typo):
        check_allow_ops(["ReadFlie"])


def test_a_pbtxt_model_is_scanned_too(flagged, tmp_path):
    import legacy_models

    copy = legacy_models.to_pbtxt(flagged["reads"], str(tmp_path / "txt"))
    assert not os.path.exists(os.path.join(copy, "saved_model.pb"))
    assert scan(copy).meta_graph("serve").signatures["serving_default"].flagged_ops() == {"ReadFile": "filesystem"}
    shutil.rmtree(copy)
