"""RunSignature takes the elements Beam users have and gives the same kind back.

Every check compares the predictions with a direct ``signatures[name](...)`` call, and
every job accounts for each row: scored rows + dead-letter rows = input rows.
"""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call
from scores import assert_scores_close

import beamscore
from beamscore.transforms.dead_letters import SCHEMA

_COLLECTED: dict[str, list] = {}


def _collect(element, name: str) -> None:
    _COLLECTED[name].append(element)  # the in-process runner calls this module's function


def _run(build):
    """Run a pipeline on the in-process runner; each output PCollection's elements as a list."""
    _COLLECTED.clear()
    with beam.Pipeline(runner="FnApiRunner") as p:
        for name, pcoll in build(p).items():
            _COLLECTED[name] = []
            _ = pcoll | f"Collect{name}" >> beam.Map(_collect, name)
    return dict(_COLLECTED)


def _x(rows: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 4)).astype(np.float32)


def _table(x: np.ndarray, ids: np.ndarray) -> pa.Table:
    return pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})


def test_read_from_parquet_batched_to_write_to_parquet_batched(models, tmp_path):
    x = _x(500)
    pq.write_table(_table(x, np.arange(500)), tmp_path / "in.parquet", row_group_size=100)
    score = beamscore.RunSignature(models["two_sig"])
    schema = score.output_schema(pq.read_schema(tmp_path / "in.parquet"))
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = (
            p
            | beam.io.ReadFromParquetBatched(str(tmp_path / "in.parquet"))
            | score
            | beam.io.WriteToParquetBatched(str(tmp_path / "out"), schema=schema, file_name_suffix=".parquet")
        )
    out = pq.read_table([str(tmp_path / f) for f in os.listdir(tmp_path) if f.startswith("out")]).sort_by("id")
    assert out.column_names == ["id", "x", "label", "scores"]
    assert out["id"].to_pylist() == list(range(500))
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack(out["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
    assert_scores_close(out["label"].to_numpy(), expected["label"])


def test_record_batches_and_keyed_numpy_dicts_come_back_as_the_same_kind(models):
    x = _x(40)
    batch = _table(x[:20], np.arange(20)).to_batches()[0]
    numpy_pair = ("b", {"id": np.arange(20, 40), "x": x[20:]})
    got = _run(
        lambda p: {
            "rb": p
            | "RB" >> beam.Create([batch])
            | "S1" >> beamscore.RunSignature(models["two_sig"], outputs=["scores"]),
            "np": p | "NP" >> beam.Create([numpy_pair]) | "S2" >> beamscore.RunSignature(models["two_sig"]),
        }
    )
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    (rb,) = got["rb"]
    assert isinstance(rb, pa.RecordBatch) and rb.schema.names == ["id", "x", "scores"]
    assert_scores_close(np.stack(rb["scores"].to_numpy(zero_copy_only=False)), expected["scores"][:20])
    ((key, columns),) = got["np"]
    assert key == "b" and sorted(columns) == ["id", "label", "scores", "x"]
    np.testing.assert_array_equal(columns["x"], x[20:])
    assert_scores_close(columns["scores"], expected["scores"][20:])
    assert_scores_close(columns["label"], expected["label"][20:])


def test_row_dicts_from_batch_elements(models):
    x = _x(30)
    rows = [{"id": i, "x": x[i]} for i in range(30)]
    got = _run(
        lambda p: {
            "rows": p
            | beam.Create(rows)
            | beam.BatchElements(min_batch_size=8, max_batch_size=8)
            | beamscore.RunSignature(models["two_sig"], outputs=["scores"])
        }
    )
    scored = sorted((row for batch in got["rows"] for row in batch), key=lambda r: r["id"])
    assert [r["id"] for r in scored] == list(range(30))
    expected = direct_call(models["two_sig"], "serving_default", x=x)["scores"]
    assert_scores_close(np.stack([r["scores"] for r in scored]), expected)


def test_tfrecord_examples_from_read_from_tfrecord(models, tmp_path):
    import tensorflow as tf

    x = _x(50)
    path = str(tmp_path / "in.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for row in x:
            feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=row))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    got = _run(
        lambda p: {
            "ex": p
            | beam.io.ReadFromTFRecord(path)
            | beam.BatchElements(min_batch_size=16, max_batch_size=16)
            | beamscore.RunSignature(models["two_sig"])
        }
    )
    scored = [row for batch in got["ex"] for row in batch]
    assert len(scored) == 50
    order = {r: i for i, r in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator())}
    scored.sort(key=lambda r: order[r["example"]])
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack([r["scores"] for r in scored]), expected["scores"])
    assert [int(r["label"]) for r in scored] == expected["label"].tolist()


def _with_bad_rows() -> tuple[pa.Table, np.ndarray]:
    x = _x(10)
    values = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)
    mask = np.zeros(10, dtype=bool)
    mask[[2, 7]] = True
    x_col = pa.FixedSizeListArray.from_arrays(values.flatten(), 4, mask=pa.array(mask))
    return pa.table({"id": np.arange(10), "x": x_col}), x


def test_bad_rows_go_to_the_dead_letter_output(models):
    table, x = _with_bad_rows()
    got = _run(
        lambda p: dict(
            zip(
                ["good", "bad"],
                p | beam.Create([("k", table)]) | beamscore.RunSignature(models["two_sig"]).with_exception_handling(),
                strict=True,
            )
        )
    )
    ((key, good),) = got["good"]
    ((bad_key, bad),) = got["bad"]
    assert key == bad_key == "k"
    assert good["id"].to_pylist() == [0, 1, 3, 4, 5, 6, 8, 9]
    assert bad.schema == SCHEMA and bad["row"].to_pylist() == [2, 7]
    assert bad["stage"].to_pylist() == ["validate"] * 2
    assert "column 'x' is null" in bad["error"][0].as_py() and bad["source"][0].as_py() == "element with key 'k'"
    assert good.num_rows + bad.num_rows == table.num_rows
    keep = np.array([0, 1, 3, 4, 5, 6, 8, 9])
    expected = direct_call(models["two_sig"], "serving_default", x=x[keep])["scores"]
    assert_scores_close(np.stack(good["scores"].to_numpy(zero_copy_only=False)), expected)


def test_without_exception_handling_a_bad_row_fails_the_pipeline_with_its_message(models):
    table, _ = _with_bad_rows()
    with pytest.raises(Exception, match=r"table element: row 2: column 'x' is null.*2 of 10 rows failed"):
        _run(lambda p: {"out": p | beam.Create([table]) | beamscore.RunSignature(models["two_sig"])})


def test_an_unknown_element_type_is_a_clear_error(models):
    with pytest.raises(Exception, match="cannot score an element of type str"):
        _run(lambda p: {"out": p | beam.Create(["nope"]) | beamscore.RunSignature(models["two_sig"])})


def test_one_row_per_element_without_per_row_says_to_pass_it(models):
    """A row dict (or one record) per element is what RunInference users hold: the refusal
    names ``per_row=True`` instead of listing batch kinds only."""
    x = _x(2)
    for element in ({"id": 0, "x": x[0]}, {"x": x[0].tolist()}, b"record"):
        with pytest.raises(Exception, match=r"looks like one row; pass per_row=True"):
            _run(lambda p, e=element: {"out": p | beam.Create([e]) | beamscore.RunSignature(models["two_sig"])})


class _FakeRunner:
    """Doubles ``x``; raises on a row holding -1 (a fake: the point is the slicing)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, columns):
        from beamscore.errors import BeamscoreError

        x = columns["x"]
        self.calls.append(len(x))
        if (x == -1).any():
            raise BeamscoreError("batch: the model failed on this batch: bad value")
        return {"y": x * 2}


def test_call_in_batches_slices_calls_and_still_isolates_bad_rows():
    from beamscore.transforms.run_signature import call_in_batches

    x = np.arange(10.0)
    x[7] = -1
    runner = _FakeRunner()
    out, bad, messages = call_in_batches(runner, {"x": x}, 10, 4)
    assert bad == [7] and "bad value" in messages[0]
    assert_scores_close(out["y"], np.delete(x, 7) * 2)
    assert max(runner.calls) <= 4 and runner.calls[:2] == [4, 4]


def test_a_none_in_a_row_dict_is_a_dead_letter_of_that_row(models):
    x = _x(4)
    rows = [{"id": i, "x": x[i].tolist()} for i in range(4)]
    rows[1]["x"] = None
    got = _run(
        lambda p: dict(
            zip(
                ["good", "bad"],
                p
                | beam.Create([rows])
                | beamscore.RunSignature(models["two_sig"], outputs=["scores"], cast=True).with_exception_handling(),
                strict=True,
            )
        )
    )
    ((good,),), ((bad,),) = [got["good"]], [got["bad"]]
    assert [r["id"] for r in good] == [0, 2, 3]
    assert bad["row"].to_pylist() == [1] and "is null" in bad["error"][0].as_py()
    expected = direct_call(models["two_sig"], "serving_default", x=x[[0, 2, 3]])["scores"]
    assert_scores_close(np.stack([r["scores"] for r in good]), expected)


def test_a_struct_field_feeds_an_input_through_input_map(models, tmp_path):
    """``ReadFromParquetBatched`` of a file whose features are nested in a struct column."""
    x = _x(60)
    features = pa.StructArray.from_arrays([_table(x, np.arange(60))["x"].combine_chunks()], names=["x"])
    pq.write_table(pa.table({"id": np.arange(60), "features": features}), tmp_path / "in.parquet", row_group_size=25)
    score = beamscore.RunSignature(models["two_sig"], input_map={"x": "features.x"}, keep=["id"])
    out = _run(lambda p: {"scored": p | beam.io.ReadFromParquetBatched(str(tmp_path / "in.parquet")) | score})
    table = pa.concat_tables(out["scored"]).sort_by("id")
    assert table.column_names == ["id", "label", "scores"]
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack(table["scores"].to_numpy(zero_copy_only=False)), expected["scores"])


def test_a_bad_row_beside_a_string_view_column_is_a_dead_letter_and_the_view_kept(models):
    """pyarrow cannot ``take`` rows of ``string_view`` columns (duckdb, pyarrow >= 16): a bad row
    among them raised ``ArrowNotImplementedError`` where the others are kept."""
    x = _x(4)
    x[2, 1] = np.nan
    table = _table(x, np.arange(4)).append_column("name", pa.array(list("abcd")).cast(pa.string_view()))
    score = beamscore.RunSignature(models["two_sig"], reject_nan=True).with_exception_handling()
    out = _run(lambda p: dict(zip(("scored", "dead"), p | beam.Create([table]) | score, strict=True)))
    (scored,) = out["scored"]
    assert scored.schema.field("name").type == pa.string_view()
    assert scored["name"].to_pylist() == ["a", "b", "d"] and scored["id"].to_pylist() == [0, 1, 3]
    (dead,) = out["dead"]
    assert dead["row"].to_pylist() == [2] and b'"name": "c"' in dead["raw"][0].as_py()


def test_a_path_like_model_and_output(models, tmp_path):
    """``RunSignature(pathlib.Path(model))`` failed inside fs.py (``argument of type
    'PosixPath' is not iterable``)."""
    import pathlib

    x = _x(3)
    got = _run(lambda p: {"out": p | beam.Create([{"x": x}]) | beamscore.RunSignature(pathlib.Path(models["two_sig"]))})
    assert_scores_close(got["out"][0]["scores"], direct_call(models["two_sig"], "serving_default", x=x)["scores"])
    assert beamscore.WriteParquet(tmp_path / "o").sink.output == str(tmp_path / "o")
    assert beamscore.plan_units(beamscore.ParquetSource(), []) == []
