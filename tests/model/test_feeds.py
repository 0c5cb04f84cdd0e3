"""Parsing ``beamscore run`` inputs: pair splitting, the no-eval evaluator, Examples, files over fsspec."""

from __future__ import annotations

import io

import fsspec
import numpy as np
import pytest
import tensorflow as tf

from beamscore.errors import BeamscoreError
from beamscore.model import feeds


def test_split_pairs_respects_quotes_and_brackets():
    text = 'x=[1;2];s=["a;b", \'c;d\'];t=np.full((2,), "=");'
    assert feeds.split_pairs(text, "--f") == [("x", "[1;2]"), ("s", "[\"a;b\", 'c;d']"), ("t", 'np.full((2,), "=")')]
    with pytest.raises(BeamscoreError, match="unterminated string"):
        feeds.split_pairs('x=["a]', "--f")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[[1, 2], [3, 4]]", [[1, 2], [3, 4]]),
        ("(-1.5, +2, 1j)", (-1.5, 2, 1j)),
        ("['a', b'b', True, None]", ["a", b"b", True, None]),
        ("{'k': [1]}", {"k": [1]}),
        ("np.zeros(3, dtype=np.int32)", np.zeros(3, dtype=np.int32)),
        ("numpy.eye(2, 3)", np.eye(2, 3)),
        ("np.full(shape=(2, 1), fill_value=7)", np.full((2, 1), 7)),
        ("np.ones(shape=2, dtype='int8')", np.ones(2, dtype=np.int8)),
        ("np.arange(1, 10, 3)", np.arange(1, 10, 3)),
        ("np.linspace(0, 1, num=5, endpoint=False)", np.linspace(0, 1, num=5, endpoint=False)),
    ],
)
def test_evaluate_allowed(text, expected):
    got = feeds.evaluate_expression(text)
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype
    else:
        assert got == expected


@pytest.mark.parametrize(
    "text, what",
    [
        ("os.system('id')", "the call of 'os.system'"),
        ("np.load('x.npy')", "the call of 'np.load'"),
        ("np.ones(3).sum()", "the call of 'np.ones(3).sum'"),
        ("getattr(np, 'load')", "the call of 'getattr'"),
        ("np.lib", "the attribute 'np.lib'"),
        ("x", "the name 'x'"),
        ("1 + 1", "the expression '1 + 1'"),
        ("-'a'", "the operator in"),
        ("[np.ones(2)]", "the call 'np.ones(2)'"),
        ("np.zeros(*[2])", "the * in"),
        ("np.zeros(2, **{})", "the ** in"),
        ("...", "the literal"),
        ("np.ones((20000, 20000))", "would make 400,000,000 values"),
        ("np.arange(0, 1e9, 1)", "would make 1,000,000,000 values"),
        ("np.zeros('a')", "bad arguments for np.zeros"),
        ("np.zeros()", "bad arguments for np.zeros"),
        ("np.zeros(-1)", "bad arguments for np.zeros"),
        ("np.full(shape=(10**5,), fill_value=1)", "the expression '10**5'"),
        ("np.eye(20000)", "would make 400,000,000 values"),
        ("np.linspace(0, 1, 200000000)", "would make 200,000,000 values"),
    ],
)
def test_evaluate_refused(text, what):
    with pytest.raises(BeamscoreError, match=r"^where: ") as info:
        feeds.evaluate_expression(text, "where")
    assert what in str(info.value)


def test_examples_to_array_kinds():
    out = feeds.examples_to_array([{"i": [1, True], "f": [1, 2.5], "s": ["a", b"b"], "one": 3, "none": []}])
    assert out.dtype == object and out.shape == (1,)
    ex = tf.train.Example.FromString(out[0]).features.feature
    assert list(ex["i"].int64_list.value) == [1, 1]
    assert list(ex["f"].float_list.value) == [1.0, 2.5]
    assert list(ex["s"].bytes_list.value) == [b"a", b"b"]
    assert list(ex["one"].int64_list.value) == [3]
    assert ex["none"].WhichOneof("kind") is None
    with pytest.raises(BeamscoreError, match=r"example 0, feature 'm': values must be all ints.*float, str"):
        feeds.examples_to_array([{"m": [1.5, "x"]}], "w")
    with pytest.raises(BeamscoreError, match="feature name 1 is not a string"):
        feeds.examples_to_array([{1: [1]}], "w")


def test_files_over_fsspec_memory():
    fs = fsspec.filesystem("memory")
    buf = io.BytesIO()
    np.savez(buf, only=np.arange(3))
    fs.pipe("/feeds/one.npz", buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 2)))
    fs.pipe("/feeds/x.npy", buf.getvalue())
    fs.pipe("/feeds/bad.npy", b"not numpy")
    got = feeds.parse_inputs("a=memory://feeds/one.npz;b=memory://feeds/one.npz[only];c=memory://feeds/x.npy")
    np.testing.assert_array_equal(got["a"], np.arange(3))
    np.testing.assert_array_equal(got["b"], np.arange(3))
    np.testing.assert_array_equal(got["c"], np.ones((2, 2)))
    with pytest.raises(BeamscoreError, match=r"is a .npy file with one array; drop the \[z\]"):
        feeds.parse_inputs("c=memory://feeds/x.npy[z]")
    with pytest.raises(BeamscoreError, match=r"is not a \.npy or \.npz file"):
        feeds.parse_inputs("c=memory://feeds/bad.npy")
    with pytest.raises(BeamscoreError, match="input 'a' is given twice"):
        feeds.parse_inputs("a=memory://feeds/x.npy;a=memory://feeds/x.npy")


def test_ragged_lists_and_calls_where_only_literals_go():
    with pytest.raises(BeamscoreError, match=r"^--input-exprs x: '\[\[1, 2\], \[3\]\]' is not one rectangular array"):
        feeds.parse_expressions("x=[[1, 2], [3]]")
    with pytest.raises(BeamscoreError, match=r"^w: the call 'np\.ones\(3\)' is not allowed"):
        feeds.evaluate_expression("np.ones(3)", "w", allow_calls=False)
