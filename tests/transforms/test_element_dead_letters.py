"""Every element kind ``RunSignature`` takes gets row-level dead letters, and every element
is accounted for: a bad record, row dict or numpy row is dead alone with its own reason,
the others are scored (compared with a direct call); ``None``, an ndarray or an unknown
value is one dead letter; an empty element gives an empty result. Arguments the signature
settles are checked when the transform is made, and messages name Python parameters."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from conftest import direct_call
from scores import assert_scores_close

import beamscore
from beamscore.transforms.dead_letters import SCHEMA

_COLLECTED: dict[str, list] = {}


def _collect(element, name: str) -> None:
    _COLLECTED[name].append(element)


def _run(elements, transform, dead: bool = True):
    """Run ``elements | transform`` on the in-process runner; (scored, dead letters) as lists."""
    _COLLECTED.clear()
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(elements, reshuffle=False) | transform
        pcolls = dict(zip(("scored", "dead"), out, strict=True)) if dead else {"scored": out}
        for name, pcoll in pcolls.items():
            _COLLECTED[name] = []
            _ = pcoll | f"Collect{name}" >> beam.Map(_collect, name)
    return _COLLECTED["scored"], _COLLECTED.get("dead", [])


def _x(rows: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 4)).astype(np.float32)


def _example(values) -> bytes:
    import tensorflow as tf

    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _scores(model: str, x: np.ndarray) -> np.ndarray:
    return direct_call(model, "serving_default", x=x)["scores"]


def test_a_bad_record_in_a_list_of_examples_is_dead_alone_named_by_its_index(models):
    """F1: one record of 3 values for x (None, 4) dead-lettered all ten, each with record 9's message."""
    x = _x(10)
    records = [_example(row) for row in x]
    records[9] = _example(x[9][:3])
    scored, dead = _run(
        [records], beamscore.RunSignature(models["two_sig"], outputs=["scores"]).with_exception_handling()
    )
    ((rows,),), ((table,),) = [scored], [dead]
    assert [r["example"] for r in rows] == records[:9]
    assert_scores_close(np.stack([r["scores"] for r in rows]), _scores(models["two_sig"], x[:9]))
    assert table.schema == SCHEMA and table["row"].to_pylist() == [9] and table["raw"][0].as_py() == records[9]
    error = table["error"][0].as_py()
    assert error.startswith("record 9: feature 'x' has 3 values, expected 4") and "byte offset" not in error
    assert "--pad" not in error


def test_read_from_tfrecord_batched_loses_only_the_bad_records(models, tmp_path):
    """F1: through ReadFromTFRecord | BatchElements(64), 3 bad records cost 3 rows, not 3 batches."""
    import tensorflow as tf

    x = _x(300)
    bad = {17, 150, 299}
    path = str(tmp_path / "in.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i, row in enumerate(x):
            writer.write(_example(row[:2] if i in bad else row))
    _COLLECTED.clear()
    with beam.Pipeline(runner="FnApiRunner") as p:
        scored, dead = (
            p
            | beam.io.ReadFromTFRecord(path)
            | beam.BatchElements(min_batch_size=64, max_batch_size=64)
            | beamscore.RunSignature(models["two_sig"], outputs=["scores"]).with_exception_handling()
        )
        for name, pcoll in (("scored", scored), ("dead", dead)):
            _COLLECTED[name] = []
            _ = pcoll | f"Collect{name}" >> beam.Map(_collect, name)
    rows = [r for batch in _COLLECTED["scored"] for r in batch]
    dead_rows = pa.concat_tables(_COLLECTED["dead"])
    assert len(rows) == 297 and dead_rows.num_rows == 3
    assert all("has 2 values, expected 4" in e for e in dead_rows["error"].to_pylist())
    order = {_example(row): i for i, row in enumerate(x)}
    index = np.array([order[r["example"]] for r in rows])
    assert sorted(index.tolist()) == sorted(set(range(300)) - bad)
    assert_scores_close(np.stack([r["scores"] for r in rows]), _scores(models["two_sig"], x[index]))


def test_one_bad_row_dict_fails_alone_with_its_own_reason(models):
    """F2: a short, None or float64 row made Arrow type the whole column list<double>."""
    x = _x(10)
    rows = [{"id": i, "x": x[i]} for i in range(10)]
    rows[3]["x"] = x[3][:3]
    rows[5]["x"] = None
    rows[7]["x"] = x[7].astype(np.float64)
    del rows[8]["x"]
    scored, dead = _run([rows], beamscore.RunSignature(models["two_sig"], outputs=["scores"]).with_exception_handling())
    ((good,),), ((table,),) = [scored], [dead]
    ids = [0, 1, 2, 4, 6, 9]
    assert [r["id"] for r in good] == ids
    assert_scores_close(np.stack([r["scores"] for r in good]), _scores(models["two_sig"], x[ids]))
    errors = dict(zip(table["row"].to_pylist(), table["error"].to_pylist(), strict=True))
    assert sorted(errors) == [3, 5, 7, 8]
    assert "3 values per row" in errors[3]
    assert "is null" in errors[5]
    assert "dtype float64" in errors[7] and "cast=True" in errors[7] and "--cast" not in errors[7]
    assert "no key 'x'" in errors[8]
    assert b'"id": 3' in table["raw"][0].as_py()


def test_row_dicts_of_python_lists_are_stacked_and_cast(models):
    x = _x(6)
    rows = [{"x": row.tolist()} for row in x]
    (batch,), dead = _run([rows], beamscore.RunSignature(models["two_sig"], cast=True).with_exception_handling())
    assert not dead and len(batch) == 6
    assert_scores_close(np.stack([r["scores"] for r in batch]), _scores(models["two_sig"], x))


def test_a_bad_row_in_a_dict_of_arrays_fails_alone(models):
    x = _x(5)
    column = np.empty(5, dtype=object)
    for i in range(5):
        column[i] = x[i]
    column[2] = None
    element = ("k", {"id": np.arange(5), "x": column})
    scored, dead = _run(
        [element], beamscore.RunSignature(models["two_sig"], outputs=["scores"]).with_exception_handling()
    )
    ((key, good),), ((dead_key, table),) = scored, dead
    assert key == dead_key == "k"
    assert good["id"].tolist() == [0, 1, 3, 4] and table["row"].to_pylist() == [2]
    assert_scores_close(good["scores"], _scores(models["two_sig"], x[[0, 1, 3, 4]]))


@pytest.mark.parametrize(
    ("element", "kind"),
    [
        (None, "NoneType"),
        (np.zeros((3, 4), dtype=np.float32), "numpy.ndarray"),
        ("text", "str"),
        (("k", None), "NoneType"),
    ],
)
def test_an_element_of_no_kind_is_one_dead_letter(models, element, kind):
    """Item 2 and F3: None or an ndarray stopped the pipeline even with exception handling on."""
    x = _x(2)
    scored, dead = _run(
        [element, {"x": x}], beamscore.RunSignature(models["two_sig"], outputs=["scores"]).with_exception_handling()
    )
    (good,) = scored
    assert_scores_close(good["scores"], _scores(models["two_sig"], x))
    (letter,) = dead
    if isinstance(element, tuple):
        key, letter = letter
        assert key == "k"
    assert letter.schema == SCHEMA and letter.num_rows == 1 and letter["count"].to_pylist() == [1]
    assert f"type {kind}" in letter["error"][0].as_py() and "expected a pyarrow.Table" in letter["error"][0].as_py()


def test_without_exception_handling_an_element_of_no_kind_names_its_type(models):
    with pytest.raises(Exception, match="cannot score an element of type NoneType; expected"):
        _run([None], beamscore.RunSignature(models["two_sig"]), dead=False)


def test_an_empty_list_or_table_gives_an_empty_result(models):
    """F3: an empty list crashed ('NoneType' object is not subscriptable) or sent None as a dead letter."""
    empty = pa.table({"x": pa.array([], pa.list_(pa.float32(), 4))})
    scored, dead = _run(
        [[], empty], beamscore.RunSignature(models["two_sig"], outputs=["scores"]).with_exception_handling()
    )
    assert dead == []
    rows = next(s for s in scored if isinstance(s, list))
    table = next(s for s in scored if isinstance(s, pa.Table))
    assert rows == [] and table.num_rows == 0 and table.column_names == ["x", "scores"]
    scored, _ = _run([[]], beamscore.RunSignature(models["two_sig"]), dead=False)
    assert scored == [[]]


def test_a_keep_column_an_element_lacks_is_a_dead_letter_per_element(models):
    x = _x(3)
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})
    rows = [{"x": x[0], "id": 0}, {"x": x[1]}, {"x": x[2], "id": 2}]
    transform = beamscore.RunSignature(models["two_sig"], keep=["id"], outputs=["scores"]).with_exception_handling()
    scored, dead = _run([table, rows], transform)
    dead_tables = sorted(dead, key=lambda t: t["source"][0].as_py())
    assert dead_tables[0]["source"][0].as_py() == "rows element" and dead_tables[0]["row"].to_pylist() == [1]
    assert "no key 'id' to keep" in dead_tables[0]["error"][0].as_py()
    assert dead_tables[1]["row"].to_pylist() == [0, 1, 2]
    assert "no column 'id' to keep (keep=['id']); columns: x" in dead_tables[1]["error"][0].as_py()
    (good,) = [s for s in scored if isinstance(s, list)]
    assert [r["id"] for r in good] == [0, 2] and sorted(good[0]) == ["id", "scores"]


@pytest.mark.parametrize("make", [beamscore.RunSignature, beamscore.SignatureModelHandler])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep": "id"}, r"keep must be a list of names, got 'id'; e.g. keep=\['id'\]"),
        ({"outputs": "scores"}, "outputs must be a list of names"),
        ({"input_map": {"y": "x"}}, "input_map names 'y', not inputs of signature 'serving_default'; its inputs: x"),
        ({"input_map": {"x": 3}}, r"input_map\['x'\] must be a column name"),
        ({"keep": ["scores"], "outputs": ["scores"]}, r"keep=\['scores'\] names 'scores', which is also a prediction"),
        ({"batch_size": 0}, "batch_size must be a whole number of at least 1, got 0"),
    ],
)
def test_arguments_are_checked_when_the_transform_is_made(models, make, kwargs, message):
    with pytest.raises(beamscore.BeamscoreError, match=message):
        make(models["two_sig"], **kwargs)


def test_max_batch_rows_is_checked_when_the_handler_is_made(models):
    with pytest.raises(
        beamscore.BeamscoreError, match="max_batch_rows must be a whole number of at least 1, got 'big'"
    ):
        beamscore.SignatureModelHandler(models["two_sig"], max_batch_rows="big")


def test_the_handler_given_none_raises_one_beamscore_error(models):
    """SignatureModelHandler given None raised a raw TypeError (len(None) in its batch sizing)."""
    from beamscore.inference import num_rows

    handler = beamscore.SignatureModelHandler(models["two_sig"])
    assert num_rows(None) == 1
    with pytest.raises(beamscore.BeamscoreError, match="cannot score an element of type NoneType"):
        handler.run_inference([None], handler.load_model())


def test_messages_name_python_parameters_not_cli_flags(models):
    """A ragged list column in a table: the CLI says --pad; RunSignature has no pad."""
    table = pa.table({"x": pa.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], pa.list_(pa.float32()))})
    _, dead = _run([table], beamscore.RunSignature(models["two_sig"]).with_exception_handling())
    (letter,) = dead
    error = letter["error"][0].as_py()
    assert letter["row"].to_pylist() == [1] and "--" not in error and "before RunSignature" in error
    with pytest.raises(Exception, match=r"column 'y' fits it: use input_map=\{'x': 'y'\}") as info:
        _run([pa.table({"y": table["x"]})], beamscore.RunSignature(models["two_sig"]), dead=False)
    assert "--map" not in str(info.value)
