"""Arrow <-> numpy at the edges of a job: model outputs Arrow has no type for.

bfloat16 outputs are widened to float32 where they leave the model
(``beamscore.model.binding.widen_output``) and complex ones are refused on the launcher
(``beamscore.model.checks``); both end to end in ``tests/pipelines/test_legacy_jobs.py``.
``from_numpy`` still refuses a complex batch in one line, for whatever reaches it."""

from __future__ import annotations

import numpy as np
import pytest

from beamscore.errors import BeamscoreError
from beamscore.io.arrow import from_numpy


def test_a_complex_batch_is_refused_in_one_line():
    with pytest.raises(BeamscoreError, match="an output has dtype complex64, which Arrow and Parquet cannot hold"):
        from_numpy(np.ones((2, 3), np.complex64))
    assert from_numpy(np.ones((2, 3), np.float32)).type.list_size == 3
