"""Fixtures of the IO tests: the rows every source is tested with and the IO-only models."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.append(os.path.dirname(__file__))  # after tests/, so `conftest` stays tests/conftest.py

from source_files import save_example_model, save_tokens_model, write_rows


@pytest.fixture(scope="session")
def rows() -> dict[str, np.ndarray]:
    """300 rows: ``id`` int64 and ``x`` float32[4] (the ``two_sig`` model's input)."""
    rng = np.random.default_rng(7)
    return {"id": np.arange(300, dtype=np.int64) + 5000, "x": rng.normal(size=(300, 4)).astype(np.float32)}


@pytest.fixture(name="write_rows", scope="session")
def write_rows_fixture():
    """:func:`write_rows`, for tests: ``write_rows(fmt, stem, columns) -> path``."""
    return write_rows


@pytest.fixture(scope="session")
def io_models(tmp_path_factory) -> dict[str, str]:
    """The models only the IO tests need (see the builders above)."""
    root = tmp_path_factory.mktemp("io_models")
    return {
        "examples": save_example_model(str(root / "examples")),
        "tokens": save_tokens_model(str(root / "tokens")),
    }
