"""Several models and models routed by a key honour ``--batch-multiple`` and find a model's
batch multiple themselves, as one model's step does (issue 31 with issue 33's shape rule).

``even`` (tests/shape_models.py) fails on any odd batch, as a jax2tf export with a
polymorphic ``(2*b, 8)`` shape does; ``plain`` takes any batch. Batches of 33 rows over
real Parquet files on a real Beam runner: no row may be dead-lettered, and each model's
values equal a direct call of its signature (tests/scores.py's tolerance).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shape_models
import tensorflow as tf
from cli_runs import run_cli
from conftest import direct_call, read_output
from scores import assert_scores_close

ROWS = 100


class Plain(tf.Module):
    """``x`` float32 [None, 4] -> ``y`` = 2 (x @ W), any batch size."""

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": 2.0 * tf.reduce_sum(x * shape_models.W, axis=1)}


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiple")
    paths = shape_models.build(str(root / "models"))
    plain = Plain()
    paths["plain"] = str(root / "models" / "plain")
    tf.saved_model.save(plain, paths["plain"], signatures={"serving_default": plain.serve})
    rng = np.random.default_rng(35)
    x = rng.normal(size=(ROWS, 4)).astype(np.float32)
    segment = np.array(["a", "b", "b", "a", "b"] * (ROWS // 5))  # unequal groups: odd calls per model
    os.makedirs(root / "data")
    table = pa.table(
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4),
            "segment": segment,
        }
    )
    pq.write_table(table, root / "data" / "part-0.parquet")
    return paths, str(root / "data" / "part-0.parquet"), x, segment


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    for model in m["models"]:
        assert model["rows_in"] == model["rows_out"] + model["rows_failed"] + model.get("rows_held", 0), model
    return m


def found_multiple(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "multiple of 2 rows" in r.getMessage()]


@pytest.mark.parametrize("given", [True, False], ids=["batch-multiple", "found"])
def test_several_models_pad_to_the_multiple(shaped, tmp_path, caplog, given):
    paths, data, x, _ = shaped
    out = tmp_path / "out"
    flags = ["--batch-multiple", "2"] if given else []
    run = run_cli(
        "score",
        "--model", f"plain={paths['plain']}",
        "--model", f"even={paths['even']}",
        "--input", data, "--output", str(out), "--keep", "id", "--batch-size", "33", *flags,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (ROWS, ROWS, 0)
    assert not (out / "_errors").exists()
    table = read_output(str(out)).sort_by("id")
    assert table["id"].to_numpy().tolist() == list(range(ROWS))
    for name in ("plain", "even"):
        want = direct_call(paths[name], "serving_default", x=x)["y"]
        assert_scores_close(table[f"{name}__y"].to_numpy(), want, err_msg=name)
    if given:
        assert not found_multiple(caplog)  # nothing to find: it was given
    else:
        assert found_multiple(caplog) and "--batch-multiple 2" in found_multiple(caplog)[0]


@pytest.mark.parametrize("given", [True, False], ids=["batch-multiple", "found"])
def test_routed_models_pad_to_the_multiple(shaped, tmp_path, caplog, given):
    paths, data, x, segment = shaped
    out = tmp_path / "out"
    flags = ["--batch-multiple", "2"] if given else []
    run = run_cli(
        "score", "--route-by", "segment",
        "--model", f"a={paths['plain']}",
        "--model", f"b={paths['even']}",
        "--max-models-per-worker", "1",
        "--input", data, "--output", str(out), "--keep", "id", "--batch-size", "33", *flags,
    )  # fmt: skip
    assert run.code == 0, run.stderr
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (ROWS, ROWS, 0)
    assert {e["name"]: e["rows_out"] for e in m["models"]} == {"a": 40, "b": 60}
    table = read_output(str(out))
    assert table["id"].to_numpy().tolist() == list(range(ROWS))
    y = table["y"].to_numpy()
    for value, name in (("a", "plain"), ("b", "even")):
        picked = segment == value
        want = direct_call(paths[name], "serving_default", x=x[picked])["y"]
        assert_scores_close(y[picked], want, err_msg=name)
    if given:
        assert not found_multiple(caplog)
    else:  # found once, and kept when the model is released and loaded again (--max-models-per-worker 1)
        assert len(found_multiple(caplog)) == 1, found_multiple(caplog)


@pytest.mark.parametrize("several", [False, True], ids=["RunSignature", "RunSignatures"])
def test_the_python_transforms_take_batch_multiple(shaped, caplog, several):
    """``RunSignature(batch_multiple=2)`` and ``RunSignatures(..., batch_multiple=2)``, as
    ``--batch-multiple 2``: calls of 33 rows padded to 34, nothing to find, no row failed."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that

    from beamscore import RunSignature, RunSignatures

    paths, data, x, _ = shaped
    table = pq.read_table(data, columns=["id", "x"])
    if several:
        step = RunSignatures({"plain": paths["plain"], "even": paths["even"]}, batch_size=33, batch_multiple=2)
        columns = {"plain__y": "plain", "even__y": "even"}
    else:
        step = RunSignature(paths["even"], batch_size=33, batch_multiple=2)
        columns = {"y": "even"}

    def check(tables):
        got = pa.concat_tables(tables).sort_by("id")
        assert got["id"].to_pylist() == list(range(ROWS))
        for column, name in columns.items():
            want = direct_call(paths[name], "serving_default", x=x)["y"]
            assert_scores_close(got[column].to_numpy(), want, err_msg=column)

    with beam.Pipeline(runner="FnApiRunner") as p:
        assert_that(p | beam.Create([table]) | step, check)
    assert not found_multiple(caplog)  # given, so nothing was found by failing


def test_a_multiple_found_through_the_python_transform_is_told_as_its_keyword(shaped, caplog):
    import apache_beam as beam

    from beamscore import RunSignature

    paths, data, _x, _ = shaped
    table = pq.read_table(data, columns=["id", "x"])
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create([table]) | RunSignature(paths["even"], batch_size=33)
    (found,) = found_multiple(caplog)
    assert "(set batch_multiple=2 to say so)" in found and "--batch-multiple" not in found


def test_the_python_transforms_refuse_a_batch_multiple_that_is_no_count(shaped):
    from beamscore import RunSignature, RunSignatures
    from beamscore.errors import BeamscoreError

    paths = shaped[0]
    with pytest.raises(BeamscoreError, match=r"^batch_multiple must be a whole number of at least 1, got 0$"):
        RunSignature(paths["even"], batch_multiple=0)
    with pytest.raises(BeamscoreError, match=r"^batch_multiple must be a whole number of at least 1, got '2'$"):
        RunSignatures({"even": paths["even"]}, batch_multiple="2")
