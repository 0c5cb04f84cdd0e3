"""Model and batch errors are not bad rows (issue 33, item 3).

A row that fails alone but scores in a batch of another size is the batch's fault (a shape
rule): the job pads every call to the multiple the signature needs, found from the failure
or given as ``--batch-multiple``. A model that fails on every row of the first batch stops
the job with its error instead of dead-lettering every row. Scores are compared with a
direct call of the SavedModel on an even batch.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import shape_models
from builders import write_parquet_shards
from cli_runs import run_cli
from conftest import direct_call, read_output
from scores import assert_scores_close


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    root = tmp_path_factory.mktemp("shape")
    paths = shape_models.build(str(root / "models"))
    files, ids, x = write_parquet_shards(str(root / "data"), rows=100, shards=1)
    return paths, files[0], ids, x


def _manifest(out) -> dict:
    return json.loads((out / "_manifest.json").read_text())


@pytest.mark.parametrize("flags", [["--batch-size", "33"], ["--batch-size", "7", "--rows-per-unit", "50"]])
def test_rows_that_fail_only_in_odd_batches_are_scored_not_dead_lettered(shaped, tmp_path, flags, caplog):
    paths, data, ids, x = shaped
    out = tmp_path / "out"
    run = run_cli("score", "--model", paths["even"], "--input", data, "--output", str(out), "--keep", "id", *flags)
    assert run.code == 0, run.stderr
    m = _manifest(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (100, 100, 0)
    assert not (out / "_errors").exists()
    table = read_output(str(out))
    assert table["id"].to_numpy().tolist() == ids.tolist()
    assert_scores_close(table["y"].to_numpy(), direct_call(paths["even"], "serving_default", x=x)["y"])
    said = [r.getMessage() for r in caplog.records if "multiple of 2 rows" in r.getMessage()]
    assert said and "--batch-multiple 2" in said[0]


def test_batch_multiple_pads_every_call(shaped, tmp_path, caplog):
    paths, data, _, x = shaped
    out = tmp_path / "out"
    args = ["--model", paths["even"], "--input", data, "--output", str(out), "--batch-size", "33"]
    run = run_cli("score", *args, "--batch-multiple", "2")
    assert run.code == 0, run.stderr
    assert "multiple of 2 rows" not in caplog.text  # nothing to find: it was given
    assert_scores_close(read_output(str(out))["y"].to_numpy(), direct_call(paths["even"], "serving_default", x=x)["y"])


def test_a_model_that_fails_on_every_row_stops_the_job_with_its_error(shaped, tmp_path):
    paths, data, _, _ = shaped
    out = tmp_path / "out"
    run = run_cli("score", "--model", paths["broken"], "--input", data, "--output", str(out), "--no-trial")
    assert run.code == 3, run.stderr
    lines = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, run.stderr
    assert "the model failed on all 100 rows of the first batch" in lines[0]
    assert "this model cannot run here" in lines[0]
    assert "Traceback" not in run.stderr
    assert not (out / "_manifest.json").exists() and not (out / "_errors").exists()


def test_a_row_that_fails_in_every_batch_size_is_still_a_bad_row(tmp_path):
    """The probe does not hide a real bad row: NaN asserted by the model fails padded too."""
    import tensorflow as tf

    class NanCheck(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            with tf.control_dependencies([tf.debugging.assert_all_finite(x, "row is not finite")]):
                return {"y": tf.reduce_sum(x, axis=1)}

    module = NanCheck()
    model = str(tmp_path / "nan")
    tf.saved_model.save(module, model, signatures={"serving_default": module.serve})
    files, _, x = write_parquet_shards(str(tmp_path / "data"), rows=40, shards=1)
    table = pq.read_table(files[0])
    xs = x.copy()
    xs[7, 2] = np.nan
    import pyarrow as pa

    table = table.set_column(1, "x", pa.FixedSizeListArray.from_arrays(pa.array(xs.reshape(-1)), 4))
    pq.write_table(table, files[0])
    out = tmp_path / "out"
    run = run_cli("score", "--model", model, "--input", files[0], "--output", str(out), "--max-failed-rows", "1")
    assert run.code == 0, run.stderr
    m = _manifest(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (40, 39, 1)
    errors = pq.read_table(os.path.join(out, "_errors", os.listdir(out / "_errors")[0])).to_pylist()
    assert [e["row"] for e in errors] == [7] and "row is not finite" in errors[0]["error"]
