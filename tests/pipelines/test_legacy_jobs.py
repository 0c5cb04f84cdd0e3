"""``beamscore score`` on TF1 and unusual SavedModels, end to end on the DirectRunner.

TF1 ``tf.Example`` signatures fed TFRecord records, ref-typed outputs run in a v1 Session,
fixed batch sizes, non-batch-major outputs refused on the launcher, outputs whose first
dimension is wrong becoming dead letters, and broken weights refused before anything is
written. Every scored row is compared with a direct call (a fresh v1 Session for TF1 graphs)
and every manifest satisfies ``rows_in == rows_out + rows_failed``.
"""

from __future__ import annotations

import json
import os
import shutil

import legacy_models as lm
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from cli_runs import error_lines
from conftest import read_output
from scores import assert_scores_close

from beamscore import RunSignature
from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.io.parquet_sink import METADATA_KEY


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    return m


def errors_of(out) -> list[dict]:
    return [row for f in sorted((out / "_errors").glob("part-*.parquet")) for row in pq.read_table(f).to_pylist()]


def parquet_input(path, **columns: np.ndarray) -> str:
    arrays = {}
    for name, values in columns.items():
        if values.ndim == 2:
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            arrays[name] = pa.array(values)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.table(arrays), path)
    return str(path)


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = error_lines(err)  # the launch line may come first: a refusal after planning
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


XS = np.linspace(-4, 4, 37).astype(np.float32)


@pytest.mark.parametrize("tags, signature", [("serve", "serving_default"), ("serve,gpu", "classify_x_to_y")])
def test_tf1_example_signature_is_fed_tfrecord_records(legacy, tmp_path, capsys, tags, signature):
    records = lm.write_examples_tfrecord(str(tmp_path / "in.tfrecord"), XS)
    out = tmp_path / "out"
    args = ["score", "--model", legacy["base"], "--version", "123", "--input", records, "--output", str(out)]
    assert main([*args, "--tag-set", tags, "--signature", signature, "--batch-size", "8"]) == 0, capsys.readouterr().err
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (37, 37, 0)
    assert m["model"]["version"] == "00000123" and m["model"]["fingerprint_computed"] is True
    key = "outputs" if signature == "serving_default" else "scores"
    expected = lm.session_call(os.path.join(legacy["base"], "00000123"), signature, tags, inputs=lm.examples(XS))
    got = np.stack(read_output(str(out))[key].to_numpy(zero_copy_only=False))
    assert_scores_close(got, expected[key])
    part = next(out.glob("part-*.parquet"))
    meta = json.loads(pq.read_schema(part).metadata[METADATA_KEY])
    assert meta["tag_set"] == ",".join(sorted(tags.split(","))) and meta["fingerprint"].startswith("computed:")


def test_a_missing_string_column_suggests_the_raw_records(legacy, tmp_path, capsys):
    records = lm.write_examples_tfrecord(str(tmp_path / "in.tfrecord"), XS[:3])
    argv = ["score", "--model", legacy["ex"], "--input", records, "--output", str(tmp_path / "o"), "--map", "inputs=y"]
    line = one_line_error(capsys, argv)
    assert (
        "no column 'y' for signature input 'inputs'" in line and "--map inputs=* feeds the serialized records" in line
    )


def test_versions_have_different_fingerprints_in_the_manifest(legacy, tmp_path, capsys):
    records = lm.write_examples_tfrecord(str(tmp_path / "in.tfrecord"), XS[:5])
    seen = {}
    for version in ("123", "00000124"):
        out = tmp_path / f"out{version}"
        assert (
            main(["score", "--model", legacy["base"], "--version", version, "--input", records, "--output", str(out)])
            == 0
        )
        seen[version] = manifest_of(out)["model"]["fingerprint"]
        b = lm.B if version == "123" else 5.0
        got = np.stack(read_output(str(out))["outputs"].to_numpy(zero_copy_only=False))[:, 0]
        assert_scores_close(got, lm.A * XS[:5] + b)
    assert seen["123"] != seen["00000124"]
    capsys.readouterr()


def test_ref_typed_output_is_scored_in_a_session(legacy, tmp_path, capsys):
    x = np.linspace(0, 1, 20).astype(np.float32)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x)
    for signature in ("scaled", "serving_default"):
        out = tmp_path / signature
        argv = ["score", "--model", legacy["counter"], "--input", data, "--output", str(out), "--signature", signature]
        assert main([*argv, "--batch-size", "64"]) == 0, capsys.readouterr().err
        assert manifest_of(out)["rows_out"] == 20
        expected = lm.session_call(legacy["counter"], signature, x=x)["y"]
        assert_scores_close(read_output(str(out))["y"].to_numpy(), expected)


def test_non_batch_major_outputs_are_refused_unless_left_out(legacy, tmp_path, capsys):
    x = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x)
    argv = ["score", "--model", legacy["shape"], "--input", data, "--output", str(tmp_path / "refused")]
    line = one_line_error(capsys, argv)
    assert "output 'grid'" in line and "(1, 10, 10, 1)" in line and "--outputs y" in line
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "out"
    assert main(["score", "--model", legacy["shape"], "--input", data, "--output", str(out), "--outputs", "y"]) == 0
    assert manifest_of(out)["rows_out"] == 30
    fn = tf.saved_model.load(legacy["shape"]).signatures["serving_default"]
    assert_scores_close(read_output(str(out))["y"].to_numpy(), fn(x=tf.constant(x))["y"].numpy())


def test_an_output_of_the_wrong_length_makes_its_batch_dead_letters(legacy, tmp_path, capsys):
    x = np.random.default_rng(2).normal(size=(25, 4)).astype(np.float32)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x)
    out = tmp_path / "out"
    argv = ["score", "--model", legacy["shape"], "--signature", "head", "--input", data, "--output", str(out)]
    assert main([*argv, "--batch-size", "8"]) == 1  # ran, rows failed: not 2
    m = manifest_of(out)
    # batches of 8, 8, 8 fail whole (never bisected into one-row calls); the last single row fits
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (25, 1, 24)
    errors = errors_of(out)
    assert sorted(e["row"] for e in errors) == list(range(24))
    assert all("not one row per input row" in e["error"] for e in errors)
    assert_scores_close(np.stack(read_output(str(out))["first"].to_numpy(zero_copy_only=False)), x[24:25])
    capsys.readouterr()


def test_fixed_batch_inputs_score_like_run(legacy, tmp_path, capsys):
    x = np.arange(21, dtype=np.float32).reshape(7, 3)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x)
    out = tmp_path / "out"
    assert main(["score", "--model", legacy["fixed"], "--input", data, "--output", str(out), "--batch-size", "5"]) == 0
    assert manifest_of(out)["rows_out"] == 7
    assert_scores_close(read_output(str(out))["y"].to_numpy(), x.sum(axis=1) * 10.0)
    code = main(["run", legacy["fixed"], "--input-exprs", f"x={x.tolist()}", "--outdir", str(tmp_path / "run")])
    assert code == 0
    assert_scores_close(np.load(tmp_path / "run" / "y.npy"), read_output(str(out))["y"].to_numpy())
    capsys.readouterr()


def test_corrupt_weights_fail_on_the_launcher(legacy, tmp_path, capsys):
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((4, 4), np.float32))
    out = tmp_path / "out"
    line = one_line_error(capsys, ["score", "--model", legacy["bad_data"], "--input", data, "--output", str(out)])
    assert "cannot load model" in line and legacy["bad_data"] in line
    assert not out.exists()  # refused before anything was written


def test_imports_run_on_the_launcher_before_anything_is_written(legacy, tmp_path, capsys, monkeypatch):
    (tmp_path / "beamscore_job_plugin.py").write_text("import os\nos.environ['BEAMSCORE_JOB_PLUGIN'] = 'loaded'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("BEAMSCORE_JOB_PLUGIN", raising=False)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((3, 4), np.float32))
    out = tmp_path / "out"
    argv = ["score", "--model", legacy["two"], "--input", data, "--output", str(out)]
    line = one_line_error(capsys, [*argv, "--import", "no_such_beamscore_plugin"])
    assert "--import no_such_beamscore_plugin: cannot import it" in line and not out.exists()
    assert main([*argv, "--import", "beamscore_job_plugin"]) == 0
    assert os.environ["BEAMSCORE_JOB_PLUGIN"] == "loaded" and manifest_of(out)["rows_out"] == 3
    capsys.readouterr()


def test_resume_tells_a_replaced_export_without_fingerprint_pb_apart(legacy, tmp_path, capsys):
    model = shutil.copytree(os.path.join(legacy["base"], "00000123"), tmp_path / "model")
    records = lm.write_examples_tfrecord(str(tmp_path / "in.tfrecord"), XS[:4])
    out = tmp_path / "out"
    argv = ["score", "--model", str(model), "--input", records, "--output", str(out)]
    assert main(argv) == 0
    (out / "_manifest.json").unlink()  # as if the job had stopped before its commit
    shutil.rmtree(model)
    shutil.copytree(os.path.join(legacy["base"], "00000124"), model)  # re-exported in place, other weights
    line = one_line_error(capsys, [*argv, "--resume"])
    assert "was started by a different job: the model (fingerprint) was" in line


def test_launcher_refuses_broken_models_before_writing(legacy, tmp_path, capsys):
    odd = lm.with_renamed_op(legacy["two"], str(tmp_path / "odd"), "Softmax", "BeamscoreNoSuchOp")
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((3, 4), np.float32))
    out = tmp_path / "out"
    line = one_line_error(capsys, ["score", "--model", odd, "--input", data, "--output", str(out)])
    assert "uses op 'BeamscoreNoSuchOp'" in line
    argv = ["score", "--model", legacy["shape"], "--signature", "constant", "--input", data, "--output", str(out)]
    assert "has no inputs" in one_line_error(capsys, argv)
    assert not out.exists()


def test_pbtxt_model_scores_like_its_pb(legacy, tmp_path, capsys):
    txt = lm.to_pbtxt(legacy["ex"], str(tmp_path / "ex_txt"))
    records = lm.write_examples_tfrecord(str(tmp_path / "in.tfrecord"), XS)
    out = tmp_path / "out"
    assert main(["score", "--model", txt, "--input", records, "--output", str(out)]) == 0
    assert manifest_of(out)["rows_out"] == len(XS)
    expected = lm.session_call(legacy["ex"], "serving_default", inputs=lm.examples(XS))["outputs"]
    assert_scores_close(np.stack(read_output(str(out))["outputs"].to_numpy(zero_copy_only=False)), expected)
    capsys.readouterr()


def test_jit_compile_is_refused_for_a_tf1_graph(legacy, tmp_path, capsys):
    records = lm.write_examples_tfrecord(str(tmp_path / "in.tfrecord"), XS[:2])
    out = tmp_path / "out"
    line = one_line_error(
        capsys, ["score", "--model", legacy["ex"], "--input", records, "--output", str(out), "--jit-compile"]
    )
    assert "--jit-compile needs a TF2 SavedModel" in line and not out.exists()


def test_bfloat16_output_is_written_as_float32_and_complex_is_refused(legacy, tmp_path, capsys):
    """A bfloat16 output has no Arrow type: every batch failed with "Unsupported numpy type 256".
    It is written widened to float32 (exact); a complex output is refused on the launcher."""
    x = np.linspace(-3, 3, 21, dtype=np.float32).reshape(7, 3)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x)
    out = tmp_path / "out"
    line = one_line_error(capsys, ["score", "--model", legacy["dtypes"], "--input", data, "--output", str(out)])
    assert "output 'wave'" in line and "dtype complex64" in line and "--outputs half,y" in line
    assert not out.exists()
    for fmt in ("parquet", "npy"):
        out = tmp_path / f"out_{fmt}"
        argv = ["score", "--model", legacy["dtypes"], "--input", data, "--output", str(out), "--outputs", "half", "y"]
        assert main([*argv, "--output-format", fmt]) == 0, capsys.readouterr().err
        assert manifest_of(out)["rows_out"] == 7
        fn = tf.saved_model.load(legacy["dtypes"]).signatures["serving_default"]
        expected = fn(x=tf.constant(x))["half"].numpy().astype(np.float32)
        if fmt == "parquet":
            got = np.stack(read_output(str(out))["half"].to_numpy(zero_copy_only=False))
        else:
            got = np.concatenate([np.load(f) for f in sorted((out / "half").glob("*.npy"))])
        assert got.dtype == np.float32
        assert_scores_close(got, expected)


def test_a_sparse_placeholder_input_is_refused_in_one_line(legacy, tmp_path, capsys):
    """A TF1 ``sparse_placeholder`` input has no tensor name (``coo_sparse``): fed a column, every
    row failed with "Cannot interpret feed_dict key as Tensor: The name '' ..."."""
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    data = parquet_input(tmp_path / "in" / "a.parquet", sp=np.ones((5, 5), np.float32), x=x)
    out = tmp_path / "out"
    line = one_line_error(capsys, ["score", "--model", legacy["sparse"], "--input", data, "--output", str(out)])
    assert "input 'sp' is a SparseTensor (coo_sparse" in line and "tf.SparseTensorSpec" in line and not out.exists()
    argv = ["run", legacy["sparse"], "--input-exprs", "sp=[[1.0, 2, 3, 4, 5]];x=[[1.0, 2, 3]]"]
    assert "input 'sp' is a SparseTensor" in one_line_error(capsys, argv)
    argv = ["score", "--model", legacy["sparse"], "--signature", "dense_only", "--input", data, "--output", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert manifest_of(out)["rows_out"] == 5
    expected = lm.session_call(legacy["sparse"], "dense_only", x=x)["y"]
    assert_scores_close(read_output(str(out))["y"].to_numpy(), expected)


def test_an_input_of_a_dtype_no_column_holds_is_named(legacy, tmp_path, capsys):
    """A bfloat16 input was refused as "signature dtype bfloat16 is not supported", naming no input."""
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((2, 3), np.float32))
    out = tmp_path / "out"
    argv = ["score", "--model", legacy["dtypes"], "--signature", "from_half", "--input", data, "--output", str(out)]
    line = one_line_error(capsys, [*argv, "--cast"])
    assert "signature 'from_half' input 'x' has dtype bfloat16, which beamscore cannot feed" in line
    argv = ["run", legacy["dtypes"], "--signature", "from_half", "--input-exprs", "x=[[1.0, 2.0, 3.0]]"]
    assert "input 'x' has dtype bfloat16" in one_line_error(capsys, argv)


@pytest.mark.parametrize("signature", ["serving_default", "sparse"])
def test_a_ragged_or_sparse_tf2_signature_is_fed_from_a_list_column(legacy, tmp_path, capsys, signature):
    """TensorFlow flattens a RaggedTensorSpec argument into inputs ``x`` (values) and ``x_1`` (row
    splits): ``score`` refused them; a list column named ``x`` now feeds them whole."""
    lists = [[1.0, 2.0], [], [3.0, 4.0, 5.0], [6.0]]
    data = tmp_path / "in" / "a.parquet"
    data.parent.mkdir()
    pq.write_table(pa.table({"x": pa.array(lists, pa.list_(pa.float32()))}), data)
    out = tmp_path / "out"
    argv = ["score", "--model", legacy["ragged"], "--signature", signature, "--input", str(data), "--output", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    fn = tf.saved_model.load(legacy["ragged"]).signatures[signature]
    rt = tf.ragged.constant(lists, dtype=tf.float32)
    if signature == "sparse":  # the declared width, 5
        st = rt.to_sparse()
        direct = fn(x=st.indices, x_1=st.values, x_2=tf.constant([4, 5], tf.int64))["y"].numpy()
    else:
        direct = fn(x=rt.values, x_1=rt.row_splits)["y"].numpy()
    assert_scores_close(read_output(str(out))["y"].to_numpy(), direct)


def test_run_feeds_a_ragged_signature_its_components(legacy, tmp_path, capsys):
    assert main(["show", legacy["ragged"], "--signature", "serving_default"]) == 0
    assert "x  ragged float32 (-1, -1)  <- a list column of any length" in capsys.readouterr().out
    exprs = "x=[1.0, 2, 3];x_1=[0, 1, 3]"
    assert main(["run", legacy["ragged"], "--input-exprs", exprs, "--outdir", str(tmp_path)]) == 0
    fn = tf.saved_model.load(legacy["ragged"]).signatures["serving_default"]
    expected = fn(x=tf.constant([1.0, 2, 3]), x_1=tf.constant([0, 1, 3], tf.int64))["y"].numpy()
    assert_scores_close(np.load(tmp_path / "y.npy"), expected)
    capsys.readouterr()


def test_a_base_dir_whose_version_is_a_symbolic_link(legacy, tmp_path, capsys):
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(legacy["sparse"], base / "5")
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x)
    out = tmp_path / "out"
    argv = ["score", "--model", str(base), "--signature", "dense_only", "--input", data, "--output", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert manifest_of(out)["model"]["version"] == "5"
    expected = lm.session_call(legacy["sparse"], "dense_only", x=x)["y"]
    assert_scores_close(read_output(str(out))["y"].to_numpy(), expected)


def test_a_defaulted_argument_traced_into_a_scalar_input_is_refused_first(legacy, tmp_path, capsys):
    """It said "no column 'scale' (use --map scale=COLUMN)", and once mapped, "is a scalar"."""
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((2, 3), np.float32), s=np.ones(2, np.float32))
    out = tmp_path / "out"
    argv = ["score", "--model", legacy["dtypes"], "--signature", "scaled", "--input", data, "--output", str(out)]
    for extra in ([], ["--map", "scale=s"]):
        line = one_line_error(capsys, [*argv, *extra])
        assert "signature input 'scale' is a scalar (shape ())" in line and "argument with a default" in line
    assert not out.exists()


def test_a_tf1_scalar_placeholder_is_refused_with_a_tf1_hint(tmp_path, capsys):
    """The hint about tf.function defaults does not apply to a TF1 graph."""
    v1 = tf.compat.v1
    model = str(tmp_path / "scalar")
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        k = v1.placeholder(tf.float32, [], name="k")
        info = v1.saved_model.build_tensor_info
        sig = v1.saved_model.build_signature_def({"x": info(x), "k": info(k)}, {"y": info(x * k)}, "predict")
        builder = v1.saved_model.Builder(model)
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.save()
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((2, 3), np.float32), k=np.ones(2, np.float32))
    line = one_line_error(capsys, ["score", "--model", model, "--input", data, "--output", str(tmp_path / "o")])
    assert "'k' is a scalar" in line and "TF1 placeholder (k:0)" in line and "tf.function" not in line


def test_a_signature_with_no_outputs_is_refused(tmp_path, capsys):
    """A TF1 SignatureDef may have no outputs: the job wrote only the --keep columns and said scored."""
    v1 = tf.compat.v1
    model = str(tmp_path / "noout")
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        x = v1.placeholder(tf.float32, [None, 3], name="x")
        info = v1.saved_model.build_tensor_info(x)
        sig = v1.saved_model.build_signature_def({"x": info}, {}, "tensorflow/serving/predict")
        builder = v1.saved_model.Builder(model)
        builder.add_meta_graph_and_variables(sess, ["serve"], {"serving_default": sig})
        builder.save()
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((2, 3), np.float32), id=np.arange(2))
    out = tmp_path / "out"
    line = one_line_error(capsys, ["score", "--model", model, "--input", data, "--output", str(out), "--keep", "id"])
    assert "signature 'serving_default' of" in line and "has no outputs" in line and not out.exists()


class VocabModule(tf.Module):
    def __init__(self, vocab: str):
        init = tf.lookup.TextFileInitializer(
            vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticHashTable(init, -1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
    def serve(self, s):
        return {"index": self.table.lookup(s)}


def test_a_missing_vocabulary_asset_is_named_not_graph_execution_error(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    model = str(tmp_path / "m")
    module = VocabModule(str(vocab))
    tf.saved_model.save(module, model, signatures={"serving_default": module.serve})
    data = parquet_input(tmp_path / "in" / "a.parquet", s=np.array(["c", "a", "zz"]))
    out = tmp_path / "out"
    assert main(["score", "--model", model, "--input", data, "--output", str(out)]) == 0, capsys.readouterr().err
    direct = tf.saved_model.load(model).signatures["serving_default"](s=tf.constant(["c", "a", "zz"]))
    assert_scores_close(read_output(str(out))["index"].to_numpy(), direct["index"].numpy())
    os.remove(os.path.join(model, "assets", "vocab.txt"))
    out = tmp_path / "out2"
    line = one_line_error(capsys, ["score", "--model", model, "--input", data, "--output", str(out)])
    assert "cannot load model" in line and "assets/vocab.txt; No such file or directory" in line
    assert "Graph execution error" not in line
    line = one_line_error(capsys, ["run", model, "--input-exprs", "s=['a']"])
    assert "assets/vocab.txt; No such file or directory" in line


def test_jit_compile_is_refused_for_string_tensors(tmp_path, capsys):
    """XLA has no string type: TensorFlow aborted the process (``Check failed:
    DataTypeCanUseMemcpy``, exit 134, a claim left in the output dir) at the first call."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n")
    model = str(tmp_path / "m")
    module = VocabModule(str(vocab))
    tf.saved_model.save(module, model, signatures={"serving_default": module.serve})
    data = parquet_input(tmp_path / "in" / "a.parquet", s=np.array(["b", "a"]))
    out = tmp_path / "out"
    line = one_line_error(capsys, ["score", "--model", model, "--input", data, "--output", str(out), "--jit-compile"])
    assert "--jit-compile cannot compile signature 'serving_default': its input 's' is a string tensor" in line
    assert not out.exists()
    with pytest.raises(BeamscoreError, match="its input 's' is a string tensor"):
        RunSignature(model, jit_compile=True, fixed_batch=8)


def test_tf1_scalar_inputs_with_defaults_are_left_to_their_defaults(legacy, tmp_path, capsys):
    """``keep_prob``/``is_training`` placeholder_with_default inputs were refused ("is a scalar",
    ``run``: "needs input is_training"), though a Session runs the graph without them."""
    x = np.linspace(-2, 2, 15, dtype=np.float32).reshape(5, 3)
    scale = np.full((5, 3), 3.0, np.float32)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x, scale=scale, keep_prob=np.full(5, 0.5, np.float32))
    out = tmp_path / "out"
    assert main(["score", "--model", legacy["defaults"], "--input", data, "--output", str(out)]) == 0
    assert manifest_of(out)["rows_out"] == 5
    expected = lm.session_call(legacy["defaults"], "serving_default", x=x, scale=scale)["y"]
    assert_scores_close(np.stack(read_output(str(out))["y"].to_numpy(zero_copy_only=False)), expected)
    capsys.readouterr()
    assert main(["show", legacy["defaults"], "--signature", "serving_default"]) == 0
    shown = capsys.readouterr().out
    assert "inputs with a default (not fed by score; run may give them):" in shown and "keep_prob:0" in shown
    exprs = "x=[[1.0, 2.0, 3.0]];scale=[[1.0, 1.0, 1.0]];is_training=True"
    assert main(["run", legacy["defaults"], "--input-exprs", exprs, "--outdir", str(tmp_path / "run")]) == 0
    fed = {"x": np.array([[1.0, 2.0, 3.0]], np.float32), "scale": np.ones((1, 3), np.float32), "is_training": True}
    expected = lm.session_call(legacy["defaults"], "serving_default", **fed)["y"]
    assert_scores_close(np.load(tmp_path / "run" / "y.npy"), expected)
    assert not expected.any()  # is_training=True was fed (it zeroes y)
    capsys.readouterr()


def test_a_tf1_signature_naming_a_tensor_its_graph_lacks_is_refused(legacy, tmp_path, capsys):
    """A graph stripped after export: every row failed in the Session (each batch bisected)."""
    from tensorflow.core.protobuf import saved_model_pb2

    model = shutil.copytree(legacy["sparse"], str(tmp_path / "m"))
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(model, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    sm.meta_graphs[0].signature_def["dense_only"].outputs["y"].name = "stripped/Sum:0"
    with open(os.path.join(model, "saved_model.pb"), "wb") as f:
        f.write(sm.SerializeToString())
    data = parquet_input(tmp_path / "in" / "a.parquet", x=np.ones((3, 3), np.float32))
    out = tmp_path / "out"
    argv = ["score", "--model", model, "--signature", "dense_only", "--input", data, "--output", str(out)]
    line = one_line_error(capsys, argv)
    assert "names tensors its graph does not have: output 'y' (stripped/Sum:0)" in line and not out.exists()


def test_a_model_path_with_glob_characters_loads(legacy, tmp_path, capsys):
    """TensorFlow globs the checkpoint prefix: ``model[1]`` failed with "cannot read
    variables/variables.index: ... Failed to find any matching files" though the files are there."""
    model = shutil.copytree(legacy["two"], str(tmp_path / "model[1]"))
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    data = parquet_input(tmp_path / "in" / "a.parquet", x=x)
    out = tmp_path / "out"
    assert main(["score", "--model", model, "--input", data, "--output", str(out)]) == 0, capsys.readouterr().err
    m = manifest_of(out)
    assert m["rows_out"] == 3 and m["model"]["path"] == model
    direct = tf.saved_model.load(legacy["two"]).signatures["serving_default"](x=tf.constant(x))
    got = np.stack(read_output(str(out))["scores"].to_numpy(zero_copy_only=False))
    assert_scores_close(got, direct["scores"].numpy())
    assert main(["run", model, "--input-exprs", "x=[[1.0, 2.0, 3.0, 4.0]]"]) == 0, capsys.readouterr().err
    capsys.readouterr()
