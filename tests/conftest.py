"""Session fixtures: real SavedModels and Parquet shards, built once per test session."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Error and warning lines of a real ``beamscore`` process start with the time when stderr is a
# pipe (beamscore.console.stamps): tests compare the lines themselves; tests/test_timestamps.py
# tests the stamps (it sets the variable itself).
os.environ.setdefault("BEAMSCORE_TIMESTAMPS", "never")

import builders


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, str]:
    """Paths of every test model (see ``builders`` for what each one is)."""
    root = tmp_path_factory.mktemp("models")
    paths = {
        "two_sig": builders.save_two_signature_model(str(root / "two_sig")),
        "image": builders.save_image_model(str(root / "image")),
        "mixed": builders.save_mixed_model(str(root / "mixed")),
        "keras": builders.save_keras_model(str(root / "keras")),
    }
    base = root / "versioned"
    builders.save_two_signature_model(str(base / "1"))
    shutil.copytree(paths["two_sig"], base / "2")
    paths["versioned"] = str(base)
    return paths


@pytest.fixture(scope="session")
def legacy(tmp_path_factory) -> dict[str, str]:
    """TF1, TF Serving and broken models (see ``legacy_models.build_all``), built once."""
    import legacy_models

    return legacy_models.build_all(str(tmp_path_factory.mktemp("legacy")))


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Two Parquet shards of 700 rows in all (id, x[4], name), row groups of 128 rows."""
    root = tmp_path_factory.mktemp("shards")
    return builders.write_parquet_shards(str(root), rows=700, shards=2, row_group_size=128)


def direct_call(model: str, signature: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The reference: ``tf.saved_model.load(model).signatures[signature](**inputs)``."""
    import tensorflow as tf

    fn = tf.saved_model.load(model).signatures[signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def read_output(directory: str):
    """All ``part-*.parquet`` files of an output dir as one table, in file order."""
    import pyarrow as pa

    files = sorted(f for f in os.listdir(directory) if f.startswith("part-"))
    return pa.concat_tables([pq.read_table(os.path.join(directory, f)) for f in files])
