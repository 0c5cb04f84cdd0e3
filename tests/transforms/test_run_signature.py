"""``call_isolating``: a batch that makes the model raise is bisected down to its bad rows."""

from __future__ import annotations

import job_models
import numpy as np
import pytest
import tensorflow as tf
from scores import assert_scores_close

from beamscore.errors import BeamscoreError
from beamscore.model.binding import InputBinding
from beamscore.model.runner import SignatureRunner
from beamscore.transforms.run_signature import call_isolating, model_message

X = {"x": InputBinding(input="x", column="x", dtype="float32", shape=(None, 4), cast=False)}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    path = job_models.build_all(str(tmp_path_factory.mktemp("jm")))["raising"]
    fn = tf.saved_model.load(path).signatures["serving_default"]
    calls = []

    class Counting(SignatureRunner):
        def __call__(self, columns, where="batch"):
            calls.append(len(columns["x"]))
            return super().__call__(columns, where)

    counting = Counting(fn, X, ["s", "y"])
    counting.calls = calls
    return counting


def test_only_the_rows_that_raise_fail_and_the_rest_keep_their_order(runner):
    x = np.random.default_rng(3).normal(size=(64, 4)).astype(np.float32)
    x[[9, 40], 0] = 500.0
    runner.calls.clear()
    results, bad, messages = call_isolating(runner, {"x": x}, 64)
    assert bad == [9, 40]
    assert all("x[:, 0] must be below 100" in m for m in messages)
    good = np.delete(np.arange(64), bad)
    assert_scores_close(results["y"], x[good] * 2)
    assert len(runner.calls) <= 1 + 2 * 2 * 6  # two bad rows: about 2 log2(64) calls each, not 64


def test_no_extra_calls_when_the_model_does_not_raise_and_all_bad(runner):
    x = np.ones((8, 4), np.float32)
    runner.calls.clear()
    results, bad, _ = call_isolating(runner, {"x": x}, 8)
    assert bad == [] and runner.calls == [8] and results["s"].tolist() == [4.0] * 8
    results, bad, _ = call_isolating(runner, {"x": x * 200}, 8)
    assert results is None and bad == list(range(8))


def test_model_message_skips_tensorflow_boilerplate():
    try:
        raise tf.errors.InvalidArgumentError(None, None, "Graph execution error:\n\nDetected at node a\nreal reason")
    except tf.errors.InvalidArgumentError as exc:
        wrapped = BeamscoreError("batch: the model failed")
        wrapped.__cause__ = exc
        assert model_message(wrapped) == "the model failed on this row: real reason"
