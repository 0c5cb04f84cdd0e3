""".npy sink: one file per column per unit, fixed-width strings, no pickle, nothing outside DIR.

The unit tests drive :class:`NpySink` directly; the end-to-end tests run ``beamscore score
--output-format npy`` with real models and compare ``np.load`` of the files with a direct call.
"""

from __future__ import annotations

import json
import os

import job_models
import numpy as np
import pyarrow as pa
import pytest
from conftest import direct_call
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.io import sink_for
from beamscore.io.base import WorkUnit
from beamscore.io.npy_sink import NpySink, column_dir


def unit(index: int = 0) -> WorkUnit:
    return WorkUnit(shard=1, index=index, path="in.parquet", start=0, stop=1, rows=5)


def load(path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def test_batches_stream_into_one_file_per_column(tmp_path):
    writer = NpySink(str(tmp_path)).open(unit(3), {})
    scores = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    for rows in (slice(0, 4), slice(4, 6)):
        writer.write(
            pa.table(
                {
                    "scores": pa.FixedShapeTensorArray.from_numpy_ndarray(scores[rows]),
                    "label": pa.array(np.arange(6)[rows]),
                    "name": pa.array(["a", "bb", "ccc", "d", "eeeee", "f"][rows]),
                    "key": pa.array([b"\x00k", b"k2", b"k3", b"k4", b"k5", b"k6"][rows], type=pa.binary()),
                }
            )
        )
    files = writer.close()
    assert sorted(os.path.relpath(f, tmp_path) for f in files) == [
        "key/part-00001-00003.npy",
        "label/part-00001-00003.npy",
        "name/part-00001-00003.npy",
        "scores/part-00001-00003.npy",
    ]
    np.testing.assert_array_equal(load(tmp_path / "scores" / "part-00001-00003.npy"), scores)
    np.testing.assert_array_equal(load(tmp_path / "label" / "part-00001-00003.npy"), np.arange(6))
    names = load(tmp_path / "name" / "part-00001-00003.npy")
    assert names.dtype == np.dtype("<U5") and names.tolist() == ["a", "bb", "ccc", "d", "eeeee", "f"]
    keys = load(tmp_path / "key" / "part-00001-00003.npy")
    assert keys.dtype.kind == "S" and keys[1] == b"k2"
    assert not os.listdir(tmp_path / "_temporary")  # written under a temporary name, then renamed


def test_empty_unit_and_abort(tmp_path):
    writer = NpySink(str(tmp_path)).open(unit(), {})
    writer.write(pa.table({"y": pa.FixedSizeListArray.from_arrays(pa.array([], pa.float32()), 3)}))
    (path,) = writer.close()
    assert load(path).shape == (0, 3)
    aborted = NpySink(str(tmp_path / "b")).open(unit(), {})
    aborted.write(pa.table({"y": pa.array([1.0])}))
    aborted.abort()
    assert not (tmp_path / "b").exists()


def test_column_names_cannot_escape_or_shadow(tmp_path):
    assert column_dir("../x") == "%2E.%2Fx"  # a leading dot is escaped too (hidden files)
    assert column_dir("a/b") == "a%2Fb"
    assert column_dir("..") == "%2E%2E"
    assert column_dir("_errors") == "%5Ferrors"
    assert column_dir(".hidden") == "%2Ehidden"
    assert len({column_dir(n) for n in ("a/b", "a%2Fb", "a_b")}) == 3


def test_refuses_what_npy_cannot_hold_without_pickle(tmp_path):
    writer = NpySink(str(tmp_path)).open(unit(), {})
    with pytest.raises(BeamscoreError, match="column 'name' has nulls"):
        writer.write(pa.table({"name": pa.array(["a", None])}))
    writer = NpySink(str(tmp_path)).open(unit(), {})
    writer.write(pa.table({"y": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(4, np.float32)), 2)}))
    with pytest.raises(BeamscoreError, match="rows of shape"):
        writer.write(pa.table({"y": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(3, np.float32)), 3)}))
    writer.abort()
    assert sink_for("npy", str(tmp_path)).format == "npy"


# --- end to end ---------------------------------------------------------------------------------


def test_npy_outputs_line_up_and_match_a_direct_call(models, shards, tmp_path):
    paths, ids, x = shards
    out = tmp_path / "out"
    args = ["score", "--model", models["two_sig"], "--input", os.path.dirname(paths[0]), "--output", str(out)]
    assert main([*args, "--output-format", "npy", "--keep", "id", "name", "--rows-per-unit", "256"]) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["output_format"] == "npy"
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"] == len(ids)
    parts = sorted(os.listdir(out / "scores"))
    assert (
        parts == sorted(os.listdir(out / "label")) == sorted(os.listdir(out / "id")) == sorted(os.listdir(out / "name"))
    )
    assert len(parts) == manifest["units"] == 4  # 350 rows per shard in 128-row groups: 256 + 94, twice
    assert len(manifest["outputs"]) == 4 * len(parts)
    cat = {key: np.concatenate([load(out / key / p) for p in parts]) for key in ("scores", "label", "id", "name")}
    assert cat["id"].tolist() == ids.tolist()
    assert cat["name"].tolist() == [f"row-{i}" for i in ids]
    for p in parts:  # rows line up part by part across keys
        assert len({len(load(out / key / p)) for key in cat}) == 1
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(cat["scores"], expected["scores"])
    assert_scores_close(cat["label"], expected["label"])


def test_output_keys_that_look_like_paths_stay_inside(shards, tmp_path):
    jm = job_models.build_all(str(tmp_path / "models"))
    paths, _ids, x = shards
    parent = tmp_path / "jail"
    out = parent / "out"
    out.mkdir(parents=True)
    args = ["score", "--model", jm["escape"], "--input", paths[0], "--output", str(out)]
    assert main([*args, "--output-format", "npy"]) == 0
    assert os.listdir(parent) == ["out"]  # nothing next to the output dir, let alone above it
    assert not (tmp_path / "x").exists()
    assert sorted(os.listdir(out)) == ["%2E.%2Fx", "%5Ferrors", "_SUCCESS", "_manifest.json", "_units", "a%2Fb"]
    n = 350
    expected = job_models.reference(jm["escape"], x[:n])
    assert_scores_close(load(out / "%2E.%2Fx" / "part-00000-00000.npy"), expected["../x"])
    assert_scores_close(load(out / "a%2Fb" / "part-00000-00000.npy"), expected["a/b"])
    assert_scores_close(load(out / "%5Ferrors" / "part-00000-00000.npy"), expected["_errors"])
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == n and manifest["rows_failed"] == 0
    assert all(os.path.realpath(f).startswith(str(out) + os.sep) for f in manifest["outputs"])
    # Parquet keeps the keys as column names: no file is named after them
    assert main([*args, "--overwrite"]) == 0
    assert sorted(os.listdir(out)) == ["_SUCCESS", "_manifest.json", "_units", "part-00000-00000.parquet"]
