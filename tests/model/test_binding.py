"""Unit tests of signature-input binding: casts, reshapes and the errors' wording."""

from __future__ import annotations

import numpy as np
import pytest

from beamscore.errors import BeamscoreError
from beamscore.model.binding import ColumnSpec, bind_inputs
from beamscore.model.inspect import SignatureInfo, TensorSpec


def sig(**inputs: tuple[str, tuple]) -> SignatureInfo:
    specs = {k: TensorSpec(k, dtype, shape, f"{k}:0") for k, (dtype, shape) in inputs.items()}
    return SignatureInfo("serving_default", "tensorflow/serving/predict", specs, {})


@pytest.mark.parametrize(
    ("have", "want", "cast"),
    [("int32", "int64", True), ("float16", "float32", True), ("uint8", "float32", True), ("float32", "float32", False)],
)
def test_lossless_casts_are_silent(have, want, cast):
    b = bind_inputs(sig(x=(want, (None,))), {"x": ColumnSpec("x", have, ())})["x"]
    assert b.cast is cast
    out = b.prepare(np.arange(3, dtype=have), "f")
    assert out.dtype == np.dtype(want)


@pytest.mark.parametrize(("have", "want"), [("float64", "float32"), ("int64", "int32"), ("int64", "float64")])
def test_lossy_casts_are_refused_unless_cast(have, want):
    with pytest.raises(BeamscoreError, match=f"column 'x' has dtype {have}, signature input 'x' expects {want}"):
        bind_inputs(sig(x=(want, (None,))), {"x": ColumnSpec("x", have, ())})
    assert bind_inputs(sig(x=(want, (None,))), {"x": ColumnSpec("x", have, ())}, allow_cast=True)["x"].cast


def test_strings_only_feed_strings():
    assert not bind_inputs(sig(s=("string", (None,))), {"s": ColumnSpec("s", "string", ())})["s"].cast
    with pytest.raises(BeamscoreError, match="has dtype string, signature input 'x' expects float32"):
        bind_inputs(sig(x=("float32", (None,))), {"x": ColumnSpec("x", "string", ())})


def test_flat_column_reshaped_to_image():
    b = bind_inputs(sig(img=("float32", (None, 4, 4, 3))), {"img": ColumnSpec("img", "float32", (48,))})["img"]
    assert b.prepare(np.zeros((2, 48), np.float32), "f").shape == (2, 4, 4, 3)


def test_unknown_inner_dimension_is_inferred():
    b = bind_inputs(sig(x=("float32", (None, None, 3))), {"x": ColumnSpec("x", "float32", (12,))})["x"]
    assert b.prepare(np.zeros((5, 12), np.float32), "f").shape == (5, 4, 3)


def test_shape_mismatch_names_both_sides():
    with pytest.raises(BeamscoreError, match=r"column 'x' has 5 values per row .* input 'x' of shape \(-1, 4\)"):
        bind_inputs(sig(x=("float32", (None, 4))), {"x": ColumnSpec("x", "float32", (5,))})


def test_variable_lists_are_checked_per_batch():
    b = bind_inputs(sig(x=("float32", (None, 4))), {"x": ColumnSpec("x", "float32", None)})["x"]
    with pytest.raises(BeamscoreError, match=r"f: column 'x' has 3 values per row"):
        b.prepare(np.zeros((2, 3), np.float32), "f")


def test_map_and_missing_columns():
    b = bind_inputs(sig(x=("float32", (None,))), {"feat": ColumnSpec("feat", "float32", ())}, {"x": "feat"})
    assert b["x"].column == "feat"
    with pytest.raises(BeamscoreError, match="no column 'x' for signature input 'x'; columns: feat"):
        bind_inputs(sig(x=("float32", (None,))), {"feat": ColumnSpec("feat", "float32", ())})
    with pytest.raises(BeamscoreError, match="--map names 'y', not inputs of signature"):
        bind_inputs(sig(x=("float32", (None,))), {"x": ColumnSpec("x", "float32", ())}, {"y": "x"})


def test_a_missing_column_error_names_the_one_column_that_fits():
    """Keras names a Sequential model's input ``keras_tensor``: the error says which column fits."""
    columns = {
        "id": ColumnSpec("id", "int64", ()),
        "x": ColumnSpec("x", "float32", (4,)),
        "y": ColumnSpec("y", "float32", (3,)),
        "n": ColumnSpec("n", "int32", (4,)),
    }
    with pytest.raises(BeamscoreError, match=r"\(column 'x' fits it: use --map keras_tensor=x\)$"):
        bind_inputs(sig(keras_tensor=("float32", (None, 4))), columns)
    both = {**columns, "z": ColumnSpec("z", "float32", (4,))}
    with pytest.raises(BeamscoreError, match=r"\(use --map keras_tensor=COLUMN\)$"):  # two fit: no guess
        bind_inputs(sig(keras_tensor=("float32", (None, 4))), both)
    # a column already bound by name to another input is not offered
    with pytest.raises(BeamscoreError, match=r"\(use --map a=COLUMN\)$"):
        bind_inputs(sig(x=("float32", (None, 4)), a=("float32", (None, 4))), columns)


def test_decimal_columns_feed_number_inputs_with_cast_only():
    """BigQuery NUMERIC and Spark DecimalType arrive as ``decimal128(38, 9)``: ``--cast``
    converts them to a float or integer input (lossy, so never silently). An integer input
    was refused even with ``--cast``, whose docs say it allows this."""
    column = {"x": ColumnSpec("x", "decimal128(38, 9)", ())}
    with pytest.raises(BeamscoreError, match=r"has type decimal128\(38, 9\), .* expects float32; pass --cast"):
        bind_inputs(sig(x=("float32", (None,))), column)
    assert bind_inputs(sig(x=("float32", (None,))), column, allow_cast=True)["x"].cast
    with pytest.raises(BeamscoreError, match=r"expects int64; pass --cast to convert decimals to int64$"):
        bind_inputs(sig(x=("int64", (None,))), column)
    assert bind_inputs(sig(x=("int64", (None,))), column, allow_cast=True)["x"].cast
    with pytest.raises(BeamscoreError, match=r"has dtype decimal128\(38, 9\), signature input 'x' expects string$"):
        bind_inputs(sig(x=("string", (None,))), column, allow_cast=True)
