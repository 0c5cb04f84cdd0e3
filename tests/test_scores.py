"""The comparison rule of ``scores.py`` accepts kernel rounding and catches real differences."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scores import assert_same_bytes, assert_scores_close


def test_rounding_of_a_dot_product_near_zero_is_accepted_relative_to_the_largest_output():
    want = np.array([49.0, 0.01, -3.0], np.float32)  # vec's outputs: 7.6e-6 apart was measured
    assert_scores_close(want + np.float32(7.6e-6), want)


@pytest.mark.parametrize(
    "got",
    [
        np.array([49.0, 0.02, -3.0], np.float32),  # a wrong row
        np.array([49.0, 0.01, -3.0], np.float16).astype(np.float32) + np.float32([0, 0, 1e-3]),  # lossy cast
    ],
)
def test_a_real_difference_fails(got):
    with pytest.raises(AssertionError):
        assert_scores_close(got, np.array([49.0, 0.01, -3.0], np.float32))


def test_integers_and_strings_are_exact():
    with pytest.raises(AssertionError):
        assert_scores_close(np.array([1, 2]), np.array([1, 3]))
    with pytest.raises(AssertionError):
        assert_scores_close(np.array([b"a", b"b"]), np.array([b"a", b"c"]))


def test_arrow_list_columns_are_stacked_and_reshaped_like_the_reference():
    assert_scores_close(
        pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32())), np.ones((2, 2), np.float32).cumsum().reshape(2, 2)
    )
    assert_scores_close(pa.chunked_array([[[1.0, 2.0, 3.0, 4.0]]]), np.arange(1, 5, dtype=np.float32).reshape(1, 2, 2))


def test_same_bytes_refuses_the_last_bit():
    x = np.array([1.0], np.float32)
    with pytest.raises(AssertionError):
        assert_same_bytes(np.nextafter(x, np.float32(2)), x)
