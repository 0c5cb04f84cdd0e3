"""The GPU-side options on CPU: fixed padded batches under XLA, machine-wide model copies,
GPU set-up; each checked against a direct ``tf.saved_model.load(...).signatures[...]`` call."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.model.copies import RemoteSignature
from beamscore.model.devices import configure_gpus
from beamscore.model.loader import ModelSpec, load_model
from beamscore.model.runner import FixedBatchSignature

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def test_fixed_batch_pads_the_last_batch_and_compiles_once(models):
    loaded = tf.saved_model.load(models["two_sig"])  # keeps the variables alive
    fixed = FixedBatchSignature(loaded.signatures["serving_default"], batch_size=8, jit_compile=True)
    for n in (8, 3, 11, 1, 24):
        x = _rows(n, seed=n)
        out = fixed(x=tf.constant(x))
        want = direct_call(models["two_sig"], "serving_default", x=x)
        assert out["scores"].shape == (n, 3)
        assert_scores_close(out["scores"].numpy(), want["scores"])
        assert_scores_close(out["label"].numpy(), want["label"])
    assert fixed.traces == 1  # every call, partial or split, ran the one compiled shape


def test_fixed_batch_rank3_output_and_bad_size(models):
    loaded = tf.saved_model.load(models["two_sig"])
    fn = loaded.signatures["embed"]
    x = _rows(5)
    out = FixedBatchSignature(fn, batch_size=4)(x=tf.constant(x))
    assert_scores_close(out["embedding"].numpy(), direct_call(models["two_sig"], "embed", x=x)["embedding"])
    with pytest.raises(BeamscoreError, match="at least 1"):
        FixedBatchSignature(fn, batch_size=0)


def test_jit_spec_gives_a_fixed_batch_signature_that_outlives_its_loader(models):
    loaded = load_model(ModelSpec(path=models["two_sig"], jit_compile=True, fixed_batch=16))
    fn = loaded.signature("serving_default")
    assert isinstance(fn, FixedBatchSignature) and fn.batch_size == 16
    x = _rows(5)
    del loaded  # as in RunSignatureFn.setup, only the function is kept
    gc.collect()
    assert_scores_close(
        fn(x=tf.constant(x))["scores"].numpy(), direct_call(models["two_sig"], "serving_default", x=x)["scores"]
    )
    loaded = load_model(ModelSpec(path=models["two_sig"], jit_compile=True, fixed_batch=16))
    with pytest.raises(BeamscoreError, match="available: embed, serving_default"):
        loaded.signature("nope")


def test_model_copies_one_server_for_the_machine(models):
    spec = ModelSpec(path=models["two_sig"], copies=1)
    fn = load_model(spec).signature("serving_default")
    assert isinstance(fn, RemoteSignature)
    x = _rows(10)
    out = fn(x=tf.constant(x))
    want = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(out["scores"], want["scores"])
    served_by = fn.proxy.pid()
    # another process of the machine gets the same copy, served by the first process
    code = (
        "import json, sys, numpy as np\n"
        "from beamscore.model.loader import ModelSpec, load_model, load_count\n"
        f"fn = load_model(ModelSpec(path={models['two_sig']!r}, copies=1)).signature('serving_default')\n"
        "out = fn(x=np.ones((3, 4), np.float32))\n"
        "print(json.dumps({'pid': fn.proxy.pid(), 'loads': load_count(), 'scores': out['scores'].tolist()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["pid"] == served_by != 0
    assert got["loads"] == 0  # the second process loaded nothing itself
    ones = direct_call(models["two_sig"], "serving_default", x=np.ones((3, 4), np.float32))
    assert_scores_close(got["scores"], ones["scores"])


def test_configure_gpus_is_harmless_without_a_gpu():
    assert configure_gpus() == [d.name for d in tf.config.list_physical_devices("GPU")]
    assert configure_gpus() == configure_gpus()  # once per process, then a no-op


@pytest.mark.parametrize("flags", [["--jit-compile"], ["--model-copies", "1"]], ids=["jit", "copies"])
def test_score_with_gpu_options_matches_a_direct_call(models, shards, tmp_path, flags):
    paths, ids, x = shards
    out = tmp_path / "out"
    args = ["score", "--model", models["two_sig"], "--input", os.path.dirname(paths[0]) + "/*.parquet"]
    args += ["--output", str(out), "--keep", "id", "--batch-size", "64", *flags]
    assert main(args) == 0
    table = read_output(str(out))
    assert table["id"].to_numpy().tolist() == ids.tolist()
    want = direct_call(models["two_sig"], "serving_default", x=x)
    scores = np.stack(table["scores"].to_numpy(zero_copy_only=False))
    assert_scores_close(scores, want["scores"])
    assert_scores_close(table["label"].to_numpy(), want["label"])
    model = json.loads((out / "_manifest.json").read_text())["model"]
    assert (model["jit_compile"], model["copies"]) == (
        ("--jit-compile" in flags),
        (1 if "--model-copies" in flags else None),
    )


class _StringInside(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"n": tf.strings.length(tf.strings.as_string(x))}


def test_an_op_xla_cannot_compile_fails_the_batch_once_not_per_row(tmp_path):
    """Each failing call was bisected down to single rows: about 2 * rows compile failures per
    batch, each row's dead letter saying "the model failed on this row"."""
    from beamscore.model.binding import InputBinding
    from beamscore.model.runner import SignatureRunner, XlaCompileError
    from beamscore.transforms.run_signature import call_isolating

    module = _StringInside()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"serving_default": module.serve})
    fn = load_model(ModelSpec(path=str(tmp_path / "m"), jit_compile=True, fixed_batch=4)).signature("serving_default")
    calls = []

    def counted(**feeds):
        calls.append(1)
        return fn(**feeds)

    counted.structured_outputs = fn.structured_outputs
    binding = InputBinding(input="x", column="x", dtype="float32", shape=(None, 3), cast=False)
    runner = SignatureRunner(counted, {"x": binding})
    with pytest.raises(XlaCompileError, match="XLA cannot compile op 'AsString'"):
        runner({"x": _rows(3)[:, :3]}, "f.parquet rows 0-3")
    calls.clear()
    good, bad, messages = call_isolating(runner, {"x": _rows(16)[:, :3]}, 16)
    assert good is None and bad == list(range(16)) and len(calls) == 1
    assert "--jit-compile: XLA cannot compile op 'AsString'" in messages[0]
