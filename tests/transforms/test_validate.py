"""``check_rows``: which rows of a batch the signature can take, found without per-row Python."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from beamscore.model.binding import InputBinding
from beamscore.transforms.validate import check_rows

X = {"x": InputBinding(input="x", column="x", dtype="float32", shape=(None, 4), cast=False)}


def test_good_batch_passes_untouched():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    checked = check_rows(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)}), X)
    assert checked.good.tolist() == [0, 1, 2] and not len(checked.bad)
    np.testing.assert_array_equal(checked.columns["x"], x)


def test_nulls_wrong_lengths_and_nan_are_rows_not_batches():
    rows = [[1.0, 2, 3, 4], None, [1.0, 2], [1.0, None, 3, 4], [float("nan"), 0, 0, 0], [5.0, 6, 7, 8]]
    table = pa.table({"x": pa.array(rows, type=pa.list_(pa.float32()))})
    checked = check_rows(table, X, reject_nan=True)
    assert checked.good.tolist() == [0, 5]
    assert checked.bad.tolist() == [1, 2, 3, 4]
    assert checked.errors == [
        "column 'x' is null; inputs must not be null",
        "column 'x' has 2 values, input 'x' takes 4 per row "
        "(pass --pad x=LENGTH[:VALUE] to pad or truncate every row to LENGTH values)",
        "column 'x' has a null value inside its list; inputs must not be null",
        "column 'x' holds NaN or infinity (--reject-nan)",
    ]
    np.testing.assert_array_equal(checked.columns["x"], np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32))
    assert check_rows(table.slice(4, 1), X).good.tolist() == [0]  # NaN is fine without --reject-nan


def test_unknown_row_length_takes_the_batch_majority_from_row_zero():
    binding = {"t": InputBinding(input="t", column="t", dtype="int64", shape=(None, None), cast=False)}
    table = pa.table({"t": pa.array([[1, 2, 3], [4, 5, 6], [7]], type=pa.list_(pa.int64()))})
    checked = check_rows(table, binding)
    assert checked.good.tolist() == [0, 1] and checked.bad.tolist() == [2]
    assert "its batch's first row has 3" in checked.errors[0]


def test_a_column_of_the_wrong_type_fails_the_whole_batch_with_one_message():
    table = pa.table({"x": pa.array([["a", "b", "c", "d"]] * 3, type=pa.list_(pa.string()))})
    checked = check_rows(table, X)
    assert checked.bad.tolist() == [0, 1, 2] and not len(checked.good)
    assert len(set(checked.errors)) == 1 and "expects float32" in checked.errors[0]
    safe = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.int8)), 4)})
    assert check_rows(safe, X).columns["x"].dtype == np.float32  # a safe cast is made
    missing = check_rows(pa.table({"y": [1, 2]}), X)
    assert missing.bad.tolist() == [0, 1] and "no column 'x'" in missing.errors[0]


def test_values_a_cast_cannot_hold_are_dead_letters_not_wrapped():
    """``--cast`` int64 -> int32 wrapped 2**31 to -2**31 in silence (uint64 -> int64, NaN
    and 1e300 -> int32, 1e300 -> float32 alike): such rows are dead letters now."""
    cases = [
        ("int32", pa.array([1, 2**31, -(2**31) - 1, -(2**31)], pa.int64()), [0, 3], "2147483648"),
        ("int64", pa.array([1, 2**63, 5, 2**63 - 1], pa.uint64()), [0, 2, 3], "9223372036854775808"),
        ("uint8", pa.array([1, -1, 255, 256], pa.int16()), [0, 2], "-1"),
        ("int32", pa.array([1.9, float("nan"), float("inf"), -5.5], pa.float64()), [0, 3], "nan"),
        ("float32", pa.array([1.5, 1e300, float("inf"), float("nan")], pa.float64()), [0, 2, 3], "1e+300"),
    ]
    for dtype, column, good, first_bad in cases:
        binding = {"x": InputBinding(input="x", column="x", dtype=dtype, shape=(None,), cast=True)}
        checked = check_rows(pa.table({"x": column}), binding)
        assert checked.good.tolist() == good, (dtype, column.type)
        assert checked.errors[0].startswith(f"column 'x' holds {first_bad}, which {dtype} input 'x' cannot hold")
        expected = np.array(column.to_numpy(zero_copy_only=False)[good]).astype(dtype)
        np.testing.assert_array_equal(checked.columns["x"], expected)


def test_a_cast_row_of_a_list_is_a_dead_letter_when_one_of_its_values_does_not_fit():
    binding = {"x": InputBinding(input="x", column="x", dtype="int8", shape=(None, 2), cast=True)}
    table = pa.table({"x": pa.array([[1, 2], [3, 300], [-128, 127]], pa.list_(pa.int64(), 2))})
    checked = check_rows(table, binding)
    assert checked.good.tolist() == [0, 2] and checked.errors[0].startswith("column 'x' holds 300, which int8")
    np.testing.assert_array_equal(checked.columns["x"], np.array([[1, 2], [-128, 127]], np.int8))


def test_a_ragged_row_of_a_list_of_lists_fails_alone():
    binding = {"x": InputBinding(input="x", column="x", dtype="float32", shape=(None, 2, 3), cast=False)}
    grid = np.arange(30, dtype=np.float32).reshape(5, 2, 3)
    rows = [r.tolist() for r in grid]
    rows[1] = [[1.0, 2.0], [3.0, 4.0, 5.0, 6.0]]
    rows[3] = [[1.0, 2.0, 3.0]]
    checked = check_rows(pa.table({"x": pa.array(rows, pa.list_(pa.list_(pa.float32())))}), binding)
    assert checked.good.tolist() == [0, 2, 4] and checked.bad.tolist() == [1, 3]
    assert checked.errors[0].startswith("column 'x' has a list of 2 values at depth 2 where the batch's others have 3")
    np.testing.assert_array_equal(checked.columns["x"], grid[[0, 2, 4]])


def test_a_batch_with_a_bad_row_and_view_columns_is_checked_not_crashed():
    """pyarrow cannot ``take`` rows of ``string_view`` columns: a batch (an Arrow table given
    to ``RunSignature``) with a bad row and a view column, bound or not, raised
    ``ArrowNotImplementedError``."""
    binding = {"s": InputBinding(input="s", column="s", dtype="string", shape=(None,), cast=False)}
    words = ["a", None, "ccc"]
    table = pa.table({"s": pa.array(words, pa.string_view()), "note": pa.array(words, pa.string_view())})
    checked = check_rows(table, binding)
    assert checked.good.tolist() == [0, 2] and checked.bad.tolist() == [1]
    assert checked.columns["s"].tolist() == [b"a", b"ccc"]
