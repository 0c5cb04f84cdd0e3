"""Arrow <-> numpy at the edges of a job: model outputs Arrow has no type for.

bfloat16 outputs are widened to float32 where they leave the model
(``beamscore.model.binding.widen_output``) and complex ones are refused on the launcher
(``beamscore.model.checks``); both end to end in ``tests/pipelines/test_legacy_jobs.py``.
``from_numpy`` still refuses a complex batch in one line, for whatever reaches it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from beamscore.errors import BeamscoreError
from beamscore.io.arrow import from_numpy, to_numpy


def test_a_complex_batch_is_refused_in_one_line():
    with pytest.raises(BeamscoreError, match="an output has dtype complex64, which Arrow and Parquet cannot hold"):
        from_numpy(np.ones((2, 3), np.complex64))
    assert from_numpy(np.ones((2, 3), np.float32)).type.list_size == 3


def test_a_bool_tensor_column_comes_back_as_numpy():
    """A rank-3 bool output is a ``fixed_shape_tensor`` of bool, which pyarrow's
    ``to_numpy_ndarray`` refuses ("bool is not valid data type for a tensor"): the .npy
    sink failed the job on it."""
    values = np.random.default_rng(3).random((5, 2, 3)) > 0.5
    column = from_numpy(values)
    assert isinstance(column.type, pa.FixedShapeTensorType)
    back = to_numpy(column, "mask", "batch")
    assert back.dtype == np.bool_ and back.shape == (5, 2, 3)
    np.testing.assert_array_equal(back, values)
