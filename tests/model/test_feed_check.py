"""Checking given arrays against a signature's inputs: lossless casts only, errors with both sides."""

from __future__ import annotations

import numpy as np
import pytest

from beamscore.errors import BeamscoreError
from beamscore.model.feed_check import check_feeds, check_one
from beamscore.model.inspect import SignatureInfo, TensorSpec


def spec(dtype: str, shape=(None,)) -> TensorSpec:
    return TensorSpec(key="t", dtype=dtype, shape=shape, name="t:0")


@pytest.mark.parametrize(
    "dtype, value, expected_dtype",
    [
        ("float32", np.array([1, 2]), np.float32),  # int64 literal, exact in float32
        ("float32", np.array([0.1, 1e30]), np.float32),  # float64 -> float32 in range
        ("float64", np.array([1], dtype=np.float32), np.float64),  # safe cast
        ("int32", np.array([-5, 2**31 - 1]), np.int32),
        ("int64", np.array([1.0, 2.0]), np.int64),  # integral floats
        ("bool", np.array([0, 1]), np.bool_),
        ("float32", np.array([np.nan, np.inf]), np.float32),  # non-finite stays non-finite
        ("string", np.array(["ä", "b"]), np.dtype("S2")),  # unicode -> utf-8 bytes
    ],
)
def test_lossless_casts(dtype, value, expected_dtype):
    got = check_one(spec(dtype), value)
    assert got.dtype == expected_dtype
    if dtype == "string":
        assert got.tolist() == ["ä".encode(), b"b"]
    else:
        np.testing.assert_array_equal(got, value.astype(expected_dtype))


@pytest.mark.parametrize(
    "dtype, value, message",
    [
        ("int32", np.array([2**31]), "value 2147483648 at index (0,) does not fit int32"),
        ("int64", np.array([1.5]), "value 1.5 at index (0,) does not fit int64"),
        ("int64", np.array([np.nan]), "value nan at index (0,) does not fit int64"),
        ("uint8", np.array([-1]), "value -1 at index (0,) does not fit uint8"),
        ("bool", np.array([2]), "value 2 at index (0,) does not fit bool"),
        ("float32", np.array([1e40]), "value 1e+40 at index (0,) does not fit float32"),
        ("float32", np.array([1 + 2j]), "given complex128 of shape (1,)"),
        ("float32", np.array(["1"]), "given string of shape (1,)"),
        ("string", np.array([1]), "expected string of shape (-1,), given int64 of shape (1,)"),
    ],
)
def test_lossy_casts_refused(dtype, value, message):
    with pytest.raises(BeamscoreError, match=r"^input 't': expected ") as info:
        check_one(spec(dtype), value)
    assert message in str(info.value)


def test_shapes():
    assert check_one(spec("float32", None), np.zeros((2, 3, 4))).shape == (2, 3, 4)  # unknown rank
    assert check_one(spec("float32", ()), np.float32(1)).shape == ()
    with pytest.raises(BeamscoreError, match=r"expected float32 of shape \(-1, 3\), given float64 of shape \(2, 4\)"):
        check_one(spec("float32", (None, 3)), np.zeros((2, 4)))
    with pytest.raises(BeamscoreError, match=r"shape \(\), given int64 of shape \(1,\)"):
        check_one(spec("int64", ()), np.array([1]))


def test_missing_and_unknown_inputs():
    sig = SignatureInfo(key="s", method_name="", inputs={"a": spec("int64"), "b": spec("string")}, outputs={})
    with pytest.raises(BeamscoreError, match=r"signature 's' needs input b \(string of shape \(-1,\)\)"):
        check_feeds(sig, {"a": np.array([1])})
    with pytest.raises(BeamscoreError, match="input 'c' is not an input of signature 's'; its inputs: a, b"):
        check_feeds(sig, {"a": np.array([1]), "b": np.array(["x"]), "c": np.array([1])})
    out = check_feeds(sig, {"b": np.array(["x"]), "a": np.array([1], dtype=np.int8)})
    assert list(out) == ["a", "b"] and out["a"].dtype == np.int64
