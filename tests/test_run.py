"""``beamscore run`` end to end through ``beamscore.cli.main``: real SavedModels, outputs compared
with a direct ``tf.saved_model.load(path).signatures[name](...)`` call."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import tensorflow as tf
import trial_models
from conftest import direct_call
from scores import assert_scores_close

from beamscore.cli import main


@pytest.fixture(scope="session")
def trial(tmp_path_factory) -> dict[str, str]:
    return trial_models.build_all(str(tmp_path_factory.mktemp("trial")))


def run_ok(capsys, *args: str) -> str:
    code = main(["run", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def run_fails(capsys, *args: str) -> str:
    """Exit 2 and one line on stderr, never TensorFlow's trace; returns that line."""
    code = main(["run", *args])
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Could not find matching function" not in err
    return lines[0]


def saved(directory) -> dict[str, np.ndarray]:
    return {f[: -len(".npy")]: np.load(os.path.join(directory, f)) for f in sorted(os.listdir(directory))}


def test_input_exprs_match_a_direct_call(models, capsys, tmp_path):
    out = tmp_path / "out"
    run_ok(capsys, models["two_sig"], "--input-exprs", "x=[[1, 2, 3, 4], [0.5, -1.0, 2.5, 0]]", "--outdir", str(out))
    x = np.array([[1, 2, 3, 4], [0.5, -1.0, 2.5, 0]], dtype=np.float32)
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    got = saved(out)
    assert sorted(got) == ["label", "scores"]
    assert_scores_close(got["scores"], expected["scores"])
    assert_scores_close(got["label"], expected["label"])
    assert got["scores"].dtype == np.float32 and got["label"].dtype == np.int64


def test_a_saved_model_cli_command_line_works_with_the_name_changed(models, capsys, tmp_path):
    """``saved_model_cli run --dir M --tag_set serve --signature_def S --input_exprs ...``"""
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    args = ["--dir", models["two_sig"], "--tag_set", "serve", "--signature_def", "embed"]
    assert main(["run", *args, "--input_exprs", "x=[[1, 2, 3, 4]]", "--outdir", str(tmp_path / "o")]) == 0
    assert_scores_close(saved(tmp_path / "o")["embedding"], direct_call(models["two_sig"], "embed", x=x)["embedding"])
    assert main(["show", "--dir", models["two_sig"], "--tag_set", "serve", "--signature_def", "embed"]) == 0
    assert "signature 'embed'" in capsys.readouterr().out
    assert main(["run", "--input_exprs", "x=[[1, 2, 3, 4]]"]) == 2
    assert "give the SavedModel directory (MODEL, or --model MODEL; --dir MODEL" in capsys.readouterr().err


def test_numpy_calls_and_printed_outputs(models, capsys):
    text = run_ok(
        capsys,
        models["two_sig"],
        "--signature",
        "embed",
        "--input-exprs",
        "x=np.full((2, 4), 0.5, dtype=np.float32)",
        "--print-options",
        "precision=3,threshold=1000",
    )
    expected = direct_call(models["two_sig"], "embed", x=np.full((2, 4), 0.5, np.float32))
    assert "output 'embedding': float32 (2, 2, 4)" in text
    assert "output 'norm': float64 (2,)" in text
    with np.printoptions(precision=3):
        assert str(expected["norm"]) in text
        assert str(expected["embedding"]) in text


@pytest.mark.parametrize(
    "model, exprs, feeds",
    [
        ("two_sig", "x=np.zeros((2, 4))", {"x": np.zeros((2, 4))}),
        ("two_sig", "x=np.ones([1, 4], dtype='float32')", {"x": np.ones((1, 4))}),
        ("two_sig", "x=np.eye(4, k=1)", {"x": np.eye(4, k=1)}),
        ("two_sig", "x=numpy.full((3, 4), -2.5)", {"x": np.full((3, 4), -2.5)}),
        ("two_sig", "x=[[-1.5, +2, 3e-3, 0]]", {"x": np.array([[-1.5, 2, 3e-3, 0]])}),
        ("mixed", "a=np.arange(3);b=np.full((3, 2), 2)", {"a": np.arange(3), "b": np.full((3, 2), 2)}),
        (
            "mixed",
            "a=np.linspace(0, 4, 3, dtype=np.int64);b=[[0.5, 1], [2, 3], [4, 5]]",
            {"a": np.array([0, 2, 4]), "b": np.array([[0.5, 1], [2, 3], [4, 5]])},
        ),
    ],
)
def test_each_numpy_constructor(models, capsys, tmp_path, model, exprs, feeds):
    run_ok(capsys, models[model], "--input-exprs", exprs, "--outdir", str(tmp_path))
    spec = {"two_sig": {"x": np.float32}, "mixed": {"a": np.int64, "b": np.float32}}[model]
    expected = direct_call(models[model], "serving_default", **{k: v.astype(spec[k]) for k, v in feeds.items()})
    got = saved(tmp_path)
    for key, value in expected.items():
        assert_scores_close(got[key], value)


def test_npy_and_npz_inputs(models, capsys, tmp_path):
    a = np.array([1, 2, 3], dtype=np.int32)  # int32 -> int64: lossless
    b = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "one.npz", b)
    np.savez(tmp_path / "many.npz", first=b * 2, second=b * 3)
    expected = direct_call(models["mixed"], "serving_default", a=a.astype(np.int64), b=b)
    for spec in (f"b={tmp_path}/one.npz", f"b={tmp_path}/many.npz[second]"):
        out = tmp_path / ("out-" + spec.rsplit("/", 1)[1])
        run_ok(capsys, models["mixed"], "--inputs", f"a={tmp_path}/a.npy;{spec}", "--outdir", str(out))
        factor = 3 if "second" in spec else 1
        want = direct_call(models["mixed"], "serving_default", a=a.astype(np.int64), b=b * factor)
        assert_scores_close(saved(out)["out"], want["out"])
    assert expected["out"].shape == (3,)


def test_forms_mix_and_flags_repeat(models, capsys, tmp_path):
    b = np.ones((2, 2), dtype=np.float64)  # float64 -> float32 for literal-like values
    np.save(tmp_path / "b.npy", b)
    run_ok(
        capsys,
        models["mixed"],
        "--input-exprs",
        "a=[7, 8]",
        "--inputs",
        f"b={tmp_path}/b.npy",
        "--outdir",
        str(tmp_path / "out"),
    )
    want = direct_call(models["mixed"], "serving_default", a=np.array([7, 8]), b=b.astype(np.float32))
    assert_scores_close(saved(tmp_path / "out")["out"], want["out"])


def test_input_examples_are_serialized_examples(trial, capsys, tmp_path):
    text = '[{"age": [22, 24], "education": ["BS", "MS"]}, {"age": [30, 31], "weight": 0.5, "education": []}]'
    run_ok(
        capsys,
        trial["examples"],
        "--signature",
        "parse",
        "--input-examples",
        f"examples={text}",
        "--outdir",
        str(tmp_path),
    )

    def example(**features):
        return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()

    ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))  # noqa: E731
    serialized = np.array(
        [
            example(
                age=ints([22, 24]), education=tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"BS", b"MS"]))
            ),
            example(age=ints([30, 31]), weight=tf.train.Feature(float_list=tf.train.FloatList(value=[0.5]))),
        ],
        dtype=object,
    )
    expected = direct_call(trial["examples"], "parse", examples=serialized)
    got = saved(tmp_path)
    for key in ("age_sum", "n_education", "weight"):
        assert_scores_close(got[key], expected[key])
    assert got["age_sum"].tolist() == [46, 61] and got["n_education"].tolist() == [2, 0]


def test_multi_tag_set_model(trial, capsys, tmp_path):
    x = np.array([[1.0, 2.0], [-3.0, 0.5]], dtype=np.float32)
    for tags, sig, key in ((None, "serving_default", "y"), ("gpu,serve", "predict", "y2")):
        out = tmp_path / sig
        args = ["--input-exprs", f"x={x.tolist()}", "--outdir", str(out)]
        run_ok(capsys, trial["tf1"], *args, *(["--tag-set", tags] if tags else []))
        loaded = tf.saved_model.load(trial["tf1"], tags=(tags or "serve").split(","))
        expected = loaded.signatures[sig](x=tf.constant(x))[key].numpy()
        assert_scores_close(saved(out)[key], expected)
    assert_scores_close(saved(tmp_path / "predict")["y2"], 2 * (x @ trial_models.W + trial_models.B))


def test_outdir_keeps_odd_keys_inside_and_refuses_to_overwrite(trial, capsys, tmp_path):
    out = tmp_path / "a" / "b" / "out"
    args = [trial["edge"], "--input-exprs", 'n=[1, 2];s=["ab", "c;d"]', "--outdir", str(out)]
    text = run_ok(capsys, *args)
    names = sorted(os.listdir(out))
    assert names == ["%2E.%2F..%2Fescaped.npy", "a%2Fb.npy", "text.npy"]
    assert sorted(os.listdir(tmp_path)) == ["a"] and sorted(os.listdir(tmp_path / "a")) == ["b"]
    assert "output '../../escaped': int32 (2,) ->" in text
    got = {name: np.load(out / name, allow_pickle=False) for name in names}
    assert got["%2E.%2F..%2Fescaped.npy"].tolist() == [2, 4]
    assert got["a%2Fb.npy"].tolist() == [2, 3]
    assert got["text.npy"].tolist() == [b"AB", b"C;D"]

    before = {name: (out / name).stat().st_mtime_ns for name in names}
    line = run_fails(capsys, trial["edge"], "--input-exprs", 'n=[5];s=["x"]', "--outdir", str(out))
    assert "exists" in line and "--overwrite" in line
    assert {name: (out / name).stat().st_mtime_ns for name in names} == before
    run_ok(capsys, trial["edge"], "--input-exprs", 'n=[5];s=["x"]', "--outdir", str(out), "--overwrite")
    assert np.load(out / "%2E.%2F..%2Fescaped.npy").tolist() == [10]


def test_pickle_refused_unless_allowed(trial, capsys, tmp_path):
    strings = np.array(["a", "bcd"], dtype=object)
    np.save(tmp_path / "s.npy", strings, allow_pickle=True)
    with open(tmp_path / "s.pkl", "wb") as f:
        pickle.dump(np.array(["a"]), f)
    for name in ("s.npy", "s.pkl"):
        line = run_fails(capsys, trial["edge"], "--inputs", f"s={tmp_path}/{name}", "--input-exprs", "n=[1, 2]")
        assert "pickled" in line and "--allow-pickle" in line and name in line
    text = run_ok(
        capsys, trial["edge"], "--inputs", f"s={tmp_path}/s.npy", "--input-exprs", "n=[1, 2]", "--allow-pickle"
    )
    assert "[b'A' b'BCD']" in text


@pytest.mark.parametrize(
    "expr",
    [
        '__import__("os").system("touch PWNED")',
        'open("PWNED", "w")',
        'np.save("PWNED", [1])',
        'np.ones(2).tofile("PWNED")',
        "np.zeros(np.ones(2))",
        "[[1.0] * 4]",
        "(lambda: 1)()",
        "[x for x in range(4)]",
        "np.ones((100000, 100000))",
        "np.arange(10**9)",
        "{**{}}",
        "np.zeros(*[4])",
    ],
)
def test_expressions_may_not_call_anything_else(models, capsys, tmp_path, monkeypatch, expr):
    monkeypatch.chdir(tmp_path)
    line = run_fails(capsys, models["two_sig"], "--input-exprs", f"x={expr}")
    assert line.startswith("beamscore: error: --input-exprs x:")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--input-exprs", "x=[[1, 2, 3]]"],
            "input 'x': expected float32 of shape (-1, 4), given int64 of shape (1, 3)",
        ),
        (["--input-exprs", "x=[1, 2, 3, 4]"], "expected float32 of shape (-1, 4), given int64 of shape (4,)"),
        (
            ["--input-exprs", 'x=[["a", "b", "c", "d"]]'],
            "expected float32 of shape (-1, 4), given string of shape (1, 4)",
        ),
        (["--input-exprs", "x=[[1, 2, 3, 1e300]]"], "value 1e+300 at index (0, 3) does not fit float32"),
        (
            ["--input-exprs", "y=[[1, 2, 3, 4]]"],
            "input 'y' is not an input of signature 'serving_default'; its inputs: x",
        ),
        ([], "signature 'serving_default' needs input x (float32 of shape (-1, 4))"),
        (["--input-exprs", "x=[[1,2,3,4]]", "--input-exprs", "x=[[1,2,3,4]]"], "input 'x' is given twice"),
        (["--input-exprs", "x=[[1,2,3,4]]", "--signature", "nope"], "signature 'nope' not found"),
        (["--input-exprs", "x=[[1,2,3,4]]", "--tag-set", "gpu"], "tag set 'gpu' not found"),
        (["--input-exprs", "x"], "--input-exprs 'x': expected INPUT_KEY=VALUE"),
        (["--input-exprs", "x=[[1,2"], "--input-exprs x: '[[1,2' is not a Python expression"),
        (["--inputs", "x=/no/such.npy"], "--inputs x=/no/such.npy: file /no/such.npy does not exist"),
        (["--input-examples", "x=[1, 2]"], "--input-examples x: expected a list of dicts"),
        (["--input-examples", 'x=[{"a": [1, "b"]}]'], "example 0, feature 'a': values must be all ints"),
        (["--input-exprs", "x=[[1,2,3,4]]", "--print-options", "color=1"], "--print-options 'color=1'"),
    ],
)
def test_errors_name_input_expected_and_given(models, capsys, args, message):
    line = run_fails(capsys, models["two_sig"], *args)
    assert message in line


def test_int_overflow_and_npz_names(trial, models, capsys, tmp_path):
    line = run_fails(capsys, trial["edge"], "--input-exprs", 'n=[1, 3000000000];s=["a", "b"]')
    assert "input 'n': expected int32 of shape (-1,), given int64 of shape (2,)" in line
    assert "value 3000000000 at index (1,) does not fit int32" in line
    np.savez(tmp_path / "many.npz", p=np.zeros((1, 4)), q=np.ones((1, 4)))
    line = run_fails(capsys, models["two_sig"], "--inputs", f"x={tmp_path}/many.npz")
    assert "holds 2 arrays (p, q); name one as x=" in line
    line = run_fails(capsys, models["two_sig"], "--inputs", f"x={tmp_path}/many.npz[r]")
    assert "no array 'r'" in line and "arrays: p, q" in line


def test_model_on_remote_storage_is_copied_then_run(models, capsys, tmp_path, monkeypatch):
    import fsspec

    monkeypatch.setenv("BEAMSCORE_CACHE", str(tmp_path / "cache"))
    fsspec.filesystem("memory").put(models["two_sig"], "/run/two_sig", recursive=True)
    run_ok(capsys, "memory://run/two_sig", "--input-exprs", "x=np.ones((1, 4))", "--outdir", str(tmp_path / "out"))
    expected = direct_call(models["two_sig"], "serving_default", x=np.ones((1, 4), np.float32))
    assert_scores_close(saved(tmp_path / "out")["scores"], expected["scores"])


def test_console_run_is_quiet_and_imports_no_beam(models, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from beamscore.cli import main; "
        f"rc = main(['run', {models['mixed']!r}, '--input-exprs', 'a=[1];b=[[2, 3]]']); "
        "print('beam imported' if 'apache_beam' in sys.modules else 'no beam'); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["output 'out': float32 (1,)", "[6.]", "no beam"]
    assert done.stderr == ""


@pytest.mark.parametrize("signature", ["serve", "serving_default"])
def test_keras_export(models, capsys, tmp_path, signature):
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    exprs = f"features={x.tolist()}"
    run_ok(capsys, models["keras"], "--signature", signature, "--input-exprs", exprs, "--outdir", str(tmp_path))
    expected = direct_call(models["keras"], signature, features=x)
    got = saved(tmp_path)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert_scores_close(got[key], value)


def test_version_of_a_base_dir(models, capsys, tmp_path):
    args = ["--input-exprs", "x=[[1, 2, 3, 4]]", "--signature", "embed", "--version", "1", "--outdir", str(tmp_path)]
    run_ok(capsys, models["versioned"], *args)
    path = os.path.join(models["versioned"], "1")
    expected = direct_call(path, "embed", x=np.array([[1, 2, 3, 4]], np.float32))
    assert_scores_close(saved(tmp_path)["norm"], expected["norm"])
    line = run_fails(capsys, models["versioned"], "--input-exprs", "x=[[1, 2, 3, 4]]", "--version", "7")
    assert "version 7 not found in" in line and "versions found: 1, 2" in line


def test_model_failure_is_one_line_with_tensorflows_reason(trial, capsys):
    line = run_fails(capsys, trial["examples"], "--input-examples", 'examples=[{"age": [1, 2], "education": [3]}]')
    assert "signature 'serving_default' of" in line and "failed on these inputs:" in line
    assert "Key: education, Index: 0.  Data types don't match. Expected type: string, Actual type: int64" in line


def test_bfloat16_output_is_saved_as_float32(legacy, capsys, tmp_path):
    """``np.save`` of a bfloat16 array writes a 2-byte void type that reads back as raw bytes."""
    out = tmp_path / "out"
    printed = run_ok(capsys, legacy["dtypes"], "--input-exprs", "x=[[1.5, -2.0, 3.0]]", "--outdir", str(out))
    assert "output 'half': float32 (1, 3)" in printed
    x = np.array([[1.5, -2.0, 3.0]], dtype=np.float32)
    expected = tf.saved_model.load(legacy["dtypes"]).signatures["serving_default"](x=tf.constant(x))
    got = saved(out)
    assert got["half"].dtype == np.float32 and got["wave"].dtype == np.complex64
    assert_scores_close(got["half"], expected["half"].numpy().astype(np.float32))
    assert_scores_close(got["wave"], expected["wave"].numpy())


def test_outdir_keeps_trailing_nul_bytes_of_string_outputs(trial, capsys, tmp_path):
    """``S`` arrays drop trailing NULs; such outputs are saved as object arrays of the exact bytes."""
    text = run_ok(capsys, trial["edge"], "--input-exprs", r'n=[1, 2];s=[b"1\x00\x00", b"x"]', "--outdir", str(tmp_path))
    assert "allow_pickle=True" in text
    assert np.load(tmp_path / "text.npy", allow_pickle=True).tolist() == [b"1\x00\x00", b"X"]
    assert np.load(tmp_path / "a%2Fb.npy").tolist() == [3, 1]  # the input kept its NULs too
    assert run_ok(capsys, trial["edge"], "--input-exprs", 'n=[1];s=["ab"]', "--outdir", str(tmp_path / "plain"))
    assert np.load(tmp_path / "plain" / "text.npy", allow_pickle=False).tolist() == [b"AB"]
