"""``RunSignature`` and ``SignatureModelHandler`` check a model on the launcher, as
``beamscore score`` does, so that a model that cannot run fails when the pipeline is built,
not in a worker's log: unregistered ops (and ``imports`` that register them), a missing or
unreadable variables index, a signature with no inputs, outputs that are not one row per
input row or that the signature does not produce."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import direct_call

import beamscore


@pytest.mark.parametrize("make", [beamscore.RunSignature, beamscore.SignatureModelHandler])
@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("odd_op", {}, "uses op 'BeamscoreNoSuchOp'.*not registered in this TensorFlow"),
        ("text_op", {}, r"it is registered by tensorflow_text: install it and pass imports=\['tensorflow_text'\]"),
        ("no_index", {}, "the graph has variables but variables/variables.index is missing"),
        ("bad_index", {}, "cannot read variables/variables.index"),
        ("shape", {}, r"output 'grid' .* has shape \(1, 10, 10, 1\), a fixed first dimension of 1"),
        ("shape", {"outputs": ["nope"]}, "outputs nope not produced by signature 'serving_default'"),
        ("shape", {"signature": "constant"}, "signature 'constant' of .* has no inputs"),
        (
            "two",
            {"imports": ["beamscore_no_such_module"]},
            r"imports=\['beamscore_no_such_module'\]: cannot import it",
        ),
    ],
)
def test_a_model_that_cannot_run_fails_when_the_transform_is_made(legacy, make, model, kwargs, message):
    """The messages name the Python parameters (``imports=[...]``), not the CLI's flags."""
    with pytest.raises(beamscore.BeamscoreError, match=message) as info:
        make(legacy[model], **kwargs)
    assert "--" not in str(info.value)


def test_leaving_a_non_batch_major_output_out_scores_the_rest(legacy):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    transform = beamscore.RunSignature(legacy["shape"], outputs=["y"])
    expected = direct_call(legacy["shape"], "serving_default", x=x)["y"].tolist()
    with beam.Pipeline() as p:
        scored = p | beam.Create([{"x": x}]) | transform | beam.Map(lambda el: el["y"].tolist())
        assert_that(scored, equal_to([expected]))


def test_imports_are_imported_on_the_launcher_and_before_each_load(models, tmp_path, monkeypatch):
    """The module is imported when the transform is made, and a worker (a fresh process
    given the pickled transform's model spec) imports it before it loads the model."""
    (tmp_path / "beamscore_test_ops.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    transform = beamscore.RunSignature(models["two_sig"], imports=["beamscore_test_ops"])
    assert "beamscore_test_ops" in sys.modules
    spec = pickle.loads(pickle.dumps(transform)).fn.model
    worker = (
        "import pickle, sys; from beamscore.model.loader import load_model; "
        "load_model(pickle.loads(sys.stdin.buffer.read())); print('beamscore_test_ops' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [sys.executable, "-c", worker], input=pickle.dumps(spec), capture_output=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert run.stdout.decode().split() == ["True"]
