"""Old and unusual SavedModels through ``show`` and ``run``: TF1 graphs in a v1 Session, ref-typed
outputs, ``saved_model.pbtxt``, TF Serving version dirs, unregistered ops, broken variables,
fixed batch sizes and models without signatures. Every output is compared with a direct call:
a fresh ``tf.compat.v1`` Session for TF1 graphs, ``tf.saved_model.load`` for TF2 ones."""

from __future__ import annotations

import os
import sys

import legacy_models as lm
import numpy as np
import pytest
import tensorflow as tf
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.model.inspect import inspect_model
from beamscore.model.loader import ModelSpec, load_model


def run_saved(capsys, tmp_path, *args: str) -> dict[str, np.ndarray]:
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    code = main(["run", *args, "--outdir", str(out)])
    assert code == 0, capsys.readouterr().err
    return {f[: -len(".npy")]: np.load(out / f) for f in sorted(os.listdir(out))}


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("version", ["123", "00000123", 123])
def test_versions_match_numerically(legacy, version):
    info = inspect_model(legacy["base"], version)
    assert info.path.endswith("00000123") and info.version == "00000123"
    assert info.versions == ("00000123", "00000124")
    assert inspect_model(legacy["base"]).version == "00000124"  # the highest, as TF Serving picks


def test_version_cli_and_unknown_version(legacy, capsys):
    assert main(["show", legacy["base"], "--version", "00000123"]) == 0
    assert "(using 00000123)" in capsys.readouterr().out
    line = one_line_error(capsys, ["show", legacy["base"], "--version", "7"])
    assert "version 7 not found" in line and "00000123, 00000124" in line


def test_computed_fingerprints_tell_versions_apart(legacy):
    a, b = inspect_model(legacy["base"], 123), inspect_model(legacy["base"], 124)
    assert a.fingerprint_computed and b.fingerprint_computed
    assert a.fingerprint.startswith("computed:sha256:") and a.fingerprint != b.fingerprint
    assert inspect_model(legacy["ex"]).fingerprint == a.fingerprint  # same bytes, same fingerprint
    assert not inspect_model(legacy["two"]).fingerprint_computed  # TF2 exports have fingerprint.pb


@pytest.mark.parametrize("tags, b", [("serve", lm.B), ("serve,gpu", lm.B_GPU)])
def test_tf1_example_signatures_match_a_session_call(legacy, capsys, tmp_path, tags, b):
    xs = [1.0, -3.0, 0.25]
    records = lm.examples(xs)
    examples = "inputs=[" + ",".join(f'{{"x":[{v}]}}' for v in xs) + "]"
    for signature, key in (("regress_x_to_y", "outputs"), ("classify_x_to_y", "scores")):
        got = run_saved(
            capsys, tmp_path, legacy["ex"], "--tag-set", tags, "--signature", signature, "--input-examples", examples
        )
        expected = lm.session_call(legacy["ex"], signature, tags, inputs=records)
        assert_scores_close(got[key], expected[key])
        assert_scores_close(got[key][:, 0], lm.A * np.array(xs) + b)
    got = run_saved(
        capsys, tmp_path, legacy["ex"], "--tag-set", tags, "--signature", "predict", "--input-exprs", "x=[[2.0]]"
    )
    assert_scores_close(got["y"], lm.session_call(legacy["ex"], "predict", tags, x=np.array([[2.0]], np.float32))["y"])


def test_tf1_graph_is_run_in_a_session_and_keeps_the_model_interface(legacy):
    loaded = load_model(ModelSpec(path=legacy["ex"], tags="serve"))
    assert loaded.kind == "session"
    fn = loaded.signature("regress_x_to_y")
    assert list(fn.structured_outputs) == ["outputs"]
    out = fn(inputs=tf.constant(lm.examples([4.0])))
    assert_scores_close(out["outputs"], [[4.0]])
    assert load_model(ModelSpec(path=legacy["two"])).kind == "tf2"


def test_ref_typed_outputs_run_where_tf_saved_model_load_cannot(legacy, capsys, tmp_path):
    with pytest.raises(tf.errors.InvalidArgumentError, match="float_ref"):
        tf.saved_model.load(legacy["counter"])
    got = run_saved(capsys, tmp_path, legacy["counter"], "--signature", "incr_counter_by", "--input-exprs", "delta=3.0")
    expected = lm.session_call(legacy["counter"], "incr_counter_by", delta=np.float32(3.0))
    assert got["counter"] == expected["counter"] == 3.0
    for signature, value in (("get_counter", 0.0), ("incr_counter", 1.0)):  # no inputs; a fresh load each run
        got = run_saved(capsys, tmp_path, legacy["counter"], "--signature", signature)
        assert got["counter"] == lm.session_call(legacy["counter"], signature)["counter"] == value
    got = run_saved(capsys, tmp_path, legacy["counter"], "--signature", "scaled", "--input-exprs", "x=[1.0, -2.0]")
    expected = lm.session_call(legacy["counter"], "scaled", x=np.array([1.0, -2.0], np.float32))
    assert_scores_close(got["y"], expected["y"])


def test_pbtxt_models_show_and_run_like_their_pb(legacy, capsys, tmp_path):
    for pb, txt in (("ex", "ex_txt"), ("two", "two_txt")):
        a, b = inspect_model(legacy[pb]), inspect_model(legacy[txt])
        assert [(m.tags, m.signatures) for m in a.meta_graphs] == [(m.tags, m.signatures) for m in b.meta_graphs]
    assert main(["show", legacy["ex_txt"], "--all"]) == 0
    assert "regress_x_to_y" in capsys.readouterr().out
    got = run_saved(capsys, tmp_path, legacy["ex_txt"], "--signature", "predict", "--input-exprs", "x=[[2.0],[6.0]]")
    assert_scores_close(got["y"], [[3.0], [5.0]])
    x = np.ones((2, 4), np.float32)
    got = run_saved(capsys, tmp_path, legacy["two_txt"], "--input-exprs", "x=np.ones((2, 4))")
    fn = tf.saved_model.load(legacy["two"]).signatures["serving_default"]
    assert_scores_close(got["scores"], fn(x=tf.constant(x))["scores"].numpy())


def test_unregistered_ops_are_named_with_their_package(legacy, capsys):
    line = one_line_error(capsys, ["run", legacy["text_op"], "--input-exprs", "x=np.ones((1, 4))"])
    assert "'WordpieceTokenizeWithOffsets'" in line and "--import tensorflow_text" in line
    line = one_line_error(capsys, ["run", legacy["odd_op"], "--input-exprs", "x=np.ones((1, 4))"])
    assert "'BeamscoreNoSuchOp'" in line and "pass --import MODULE" in line


def test_import_runs_before_the_model_loads(legacy, capsys, tmp_path, monkeypatch):
    (tmp_path / "beamscore_probe_plugin.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    load_model(ModelSpec(path=legacy["two"], imports=("beamscore_probe_plugin",)))
    assert sys.modules["beamscore_probe_plugin"].LOADED
    line = one_line_error(
        capsys, ["run", legacy["two"], "--import", "no_such_beamscore_plugin", "--input-exprs", "x=[[1,2,3,4]]"]
    )
    assert line.startswith("beamscore: error: --import no_such_beamscore_plugin: cannot import it: ModuleNotFoundError")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("no_index", "the graph has variables but variables/variables.index is missing"),
        ("bad_index", "cannot read variables/variables.index"),
        ("bad_data", "cannot load model"),
    ],
)
def test_broken_variables_are_one_line(legacy, capsys, name, expected):
    line = one_line_error(capsys, ["run", legacy[name], "--input-exprs", "x=[[1,2,3,4]]"])
    assert expected in line and legacy[name] in line


def test_empty_saved_model_pb_is_one_line(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"")
    line = one_line_error(capsys, ["show", str(tmp_path / "m")])
    assert "saved_model.pb is empty" in line


def test_show_warns_when_variables_are_missing(legacy, capsys):
    assert main(["show", legacy["no_vars_dir"]]) == 0
    err = capsys.readouterr().err
    assert "has no variables/ directory" in err and "will not load" in err


def test_fixed_batch_inputs_are_fed_in_batches_of_that_size(legacy, capsys, tmp_path):
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    got = run_saved(capsys, tmp_path, legacy["fixed"], "--input-exprs", f"x={x.tolist()}")
    fn = tf.saved_model.load(legacy["fixed"]).signatures["serving_default"]
    padded = np.concatenate([x, x[4:5]])  # the last batch padded with its first row
    expected = np.concatenate([fn(x=tf.constant(padded[i : i + 2]))["y"].numpy() for i in range(0, 6, 2)])[:5]
    assert_scores_close(got["y"], expected)


def test_a_model_without_signatures_lists_its_functions(legacy, capsys):
    line = one_line_error(capsys, ["run", legacy["nosig"], "--input-exprs", "x=[1.0]"])
    assert "has no signatures" in line and "double(x: float32 (-1))" in line and "triple(" in line
    with pytest.raises(BeamscoreError, match="saved functions: double"):
        inspect_model(legacy["nosig"]).signature("serving_default")
