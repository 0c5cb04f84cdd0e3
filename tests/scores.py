"""The one rule for comparing model outputs in tests.

A job batches rows differently from a test's direct ``signatures[name](...)`` call, and
TensorFlow's CPU kernels (oneDNN or Eigen, blocked by batch size and by the CPU's vector
width) round differently in the last bits. Measured on the test models (``builders``, the
``vec`` signature of ``test_foreign_inputs``, a 64-256-256-10 MLP), 8,200 rows scored in
batches of 1, 3, 4, 40 and 4096 against one direct call of all rows, with
``TF_ENABLE_ONEDNN_OPTS`` 0 and 1 (and each against the other's reference, as two CPUs would):

- largest absolute difference 7.6e-6, on ``vec`` (``x @ (1..8)``, outputs up to 49): a dot
  product's rounding follows its *terms*, so an output near zero can differ by 1e-4
  relative. A fixed ``atol=1e-6`` failed there (batch 1, oneDNN on: 1.27x the tolerance);
- MLP logits 1.1e-6 (batch 1, oneDNN off), softmax scores 2.4e-7, Keras Dense 4.8e-7.

So the tolerance is relative plus an absolute term scaled by the output's largest magnitude:
``|got - want| <= rtol * |want| + atol * max(1, max|want|)``:

- float32 (and float16/bfloat16/complex): ``rtol=1e-5``, ``atol=2e-6`` (about 16 float32 ULPs
  of the largest value). The worst case measured uses 13% of it; a real bug (a wrong or
  shifted row, a wrong column, a lossy cast to float16) moves a score by 1e-3 relative or more;
- float64: the same tolerance, because a float64 output is often a float32 computation cast
  up (``two_sig``'s ``norm``), and a reference may be a float64 formula of float32 scores;
- integers, bools, strings and bytes: exact.

Bit-exactness is tested only between two beamscore runs with the same batching
(:func:`assert_same_bytes`), never against a differently batched direct call.
"""

from __future__ import annotations

import numpy as np

FLOAT_RTOL = 1e-5
FLOAT_ATOL = 2e-6  # times max(1, max|want|): see the module docstring


def _as_array(value) -> np.ndarray:
    """An ndarray from a numpy array, a tf.Tensor, a pyarrow array/column or a list."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    if hasattr(value, "to_numpy") and not isinstance(value, np.ndarray):
        try:
            value = value.to_numpy(zero_copy_only=False)
        except TypeError:
            value = value.to_numpy()
    array = np.asarray(value)
    if array.dtype == object and array.size and isinstance(array.flat[0], np.ndarray | list):
        array = np.stack([np.asarray(v) for v in array])
    return array


def assert_scores_close(got, want, err_msg: str = "") -> None:
    """Assert a job's output equals a direct call's within the tolerance of its dtype.

    ``got`` may be a pyarrow column of lists (stacked here) and is reshaped to ``want``'s
    shape when it holds the same number of values.
    """
    got, want = _as_array(got), _as_array(want)
    if got.shape != want.shape and got.size == want.size and got.ndim and want.ndim and len(got) == len(want):
        got = got.reshape(want.shape)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape} {err_msg}"
    kind = want.dtype.kind
    if kind in "fc" or want.dtype.name == "bfloat16":
        wide = np.complex128 if kind == "c" else np.float64
        got, want = got.astype(wide), want.astype(wide)
        finite = np.abs(want[np.isfinite(want)])
        scale = max(1.0, float(finite.max()) if finite.size else 1.0)
        np.testing.assert_allclose(got, want, rtol=FLOAT_RTOL, atol=FLOAT_ATOL * scale, err_msg=err_msg)
    else:
        np.testing.assert_array_equal(got, want, err_msg=err_msg)


def assert_same_bytes(got, want, err_msg: str = "") -> None:
    """Bit-exact: for two beamscore runs with the same batching (e.g. resumed vs not)."""
    got, want = _as_array(got), _as_array(want)
    assert got.dtype == want.dtype and got.shape == want.shape, err_msg
    assert got.tobytes() == want.tobytes(), err_msg or "outputs differ in their bytes"
