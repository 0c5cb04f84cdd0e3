"""The one rule for comparing model outputs in tests.

A job batches rows differently from a test's direct ``signatures[name](...)`` call, and
TensorFlow's CPU kernels (oneDNN or Eigen, blocked by batch size and by the CPU's vector
width) round differently in the last bits: the same MLP row scored in a batch of 4 and of 40
differed by up to ~1.1e-6 relative on an AVX2 AMD EPYC, and matched exactly on an AVX-512
Xeon (FACTS.md, 2026-12-02). So a job is compared with a direct call within a tolerance that
holds on any CPU and batch size:

- float32 (and float16/bfloat16 widened): ``rtol=1e-5, atol=1e-6``: ten times the largest
  difference measured, well below any real bug (a wrong column, a wrong cast, a shifted row
  moves a score by 1e-2 or more);
- float64: ``rtol=1e-12, atol=1e-12``;
- integers, bools, strings and bytes: exact.

Bit-exactness is tested only between two beamscore runs with the same batching
(:func:`assert_same_bytes`), never against a differently batched direct call.
"""

from __future__ import annotations

import numpy as np

FLOAT32_RTOL = 1e-5
FLOAT32_ATOL = 1e-6
FLOAT64_RTOL = 1e-12
FLOAT64_ATOL = 1e-12


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
    """Assert a job's output equals a direct call's within the tolerance of its dtype."""
    got, want = _as_array(got), _as_array(want)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape} {err_msg}"
    kind = want.dtype.kind
    if kind == "f" or kind == "c" or want.dtype.name == "bfloat16":
        if want.dtype == np.float64 and got.dtype == np.float64:
            rtol, atol = FLOAT64_RTOL, FLOAT64_ATOL
        else:
            rtol, atol = FLOAT32_RTOL, FLOAT32_ATOL
        np.testing.assert_allclose(
            got.astype(np.complex128 if kind == "c" else np.float64),
            want.astype(np.complex128 if kind == "c" else np.float64),
            rtol=rtol,
            atol=atol,
            err_msg=err_msg,
        )
    else:
        np.testing.assert_array_equal(got, want, err_msg=err_msg)


def assert_same_bytes(got, want, err_msg: str = "") -> None:
    """Bit-exact: for two beamscore runs with the same batching (e.g. resumed vs not)."""
    got, want = _as_array(got), _as_array(want)
    assert got.dtype == want.dtype and got.shape == want.shape, err_msg
    assert got.tobytes() == want.tobytes(), err_msg or "outputs differ in their bytes"
