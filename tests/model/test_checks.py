"""The launcher's model checks on hand-made signatures (no TensorFlow model needed)."""

from __future__ import annotations

import pytest

from beamscore.errors import BeamscoreError
from beamscore.model.checks import check_outputs, fixed_batch_size, package_for_op
from beamscore.model.inspect import SignatureInfo, TensorSpec


def sig(inputs: dict, outputs: dict) -> SignatureInfo:
    def specs(d):
        return {k: TensorSpec(k, "float32", shape, f"{k}:0") for k, shape in d.items()}

    return SignatureInfo("s", "tensorflow/serving/predict", specs(inputs), specs(outputs))


def test_fixed_batch_size_from_the_inputs():
    assert fixed_batch_size(sig({"x": (None, 3)}, {})) is None
    assert fixed_batch_size(sig({"x": (8, 3), "y": (None,), "z": None}, {})) == 8
    assert fixed_batch_size(sig({"x": (1,), "s": ()}, {})) == 1
    with pytest.raises(BeamscoreError, match=r"different fixed batch sizes for its inputs: x \(8\), y \(1\)"):
        fixed_batch_size(sig({"x": (8, 3), "y": (1,)}, {}))


@pytest.mark.parametrize(
    "inputs, outputs, chosen, message",
    [
        ({}, {"y": (None,)}, ["y"], "has no inputs"),
        ({"x": (None, 4)}, {"t": (), "y": (None,)}, ["t", "y"], r"output 't' .* shape \(\), a scalar.*--outputs y"),
        # the model: col_mean [4] and total [] beside y; the hint names y alone, not col_mean
        # (it used to suggest --outputs col_mean,y, which was refused in turn)
        (
            {"x": (None, 4)},
            {"col_mean": (4,), "total": (), "y": (None,)},
            ["col_mean", "total", "y"],
            r"output 'col_mean' .* fixed first dimension of 4.*leave it out with --outputs y$",
        ),
        ({"x": (None, 4)}, {"t": (), "u": (3,)}, ["t"], r"a scalar, not one row per input row; re-export"),
        ({"x": (None, 4)}, {"g": (1, 10, 10, 1)}, ["g"], "a fixed first dimension of 1.*re-export"),
        ({"x": (2, 4)}, {"g": (3,)}, ["g"], "a fixed first dimension of 3"),
    ],
)
def test_outputs_that_are_not_one_row_per_input_row_are_refused(inputs, outputs, chosen, message):
    with pytest.raises(BeamscoreError, match=message):
        check_outputs("m", sig(inputs, outputs), chosen)


def test_outputs_that_fit_pass():
    check_outputs("m", sig({"x": (None, 4)}, {"y": (None,), "u": None, "t": ()}), ["y", "u"])  # t left out
    check_outputs("m", sig({"x": (2, 4)}, {"y": (2,)}), ["y"])  # the fixed batch itself


def test_known_op_packages():
    assert package_for_op("SentencepieceOp") == "tensorflow_text"
    assert package_for_op("SimpleMLInferenceOpWithHandle") == "tensorflow_decision_forests"
    assert package_for_op("Addons>ImageProjectiveTransformV2") == "tensorflow_addons"
    assert package_for_op("MatMul") is None


DTYPES = (("c", "complex64"), ("h", "bfloat16"), ("v", "variant"))


def test_outputs_of_dtypes_no_file_holds_are_refused():
    s = SignatureInfo(
        "s",
        "tensorflow/serving/predict",
        {"x": TensorSpec("x", "float32", (None, 3), "x:0")},
        {k: TensorSpec(k, d, (None, 3), f"{k}:0") for k, d in DTYPES},
    )
    check_outputs("m", s, ["h"])
    with pytest.raises(BeamscoreError, match=r"output 'c' .* dtype complex64, .*--outputs h,v"):
        check_outputs("m", s, ["c", "h", "v"])
    with pytest.raises(BeamscoreError, match=r"output 'v' .* dtype variant"):
        check_outputs("m", s, ["h", "v"])
