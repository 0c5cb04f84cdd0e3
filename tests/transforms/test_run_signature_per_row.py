"""``RunSignature(per_row=True)``: one row dict or one serialized Example per element, as Beam's
``RunInference`` takes them, batched inside the DoFn; one output per input row.

Each test compares the predictions with a direct ``signatures[name](...)`` call and accounts
for every row: scored + dead-lettered = rows in.
"""

from __future__ import annotations

import typing

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.transforms import window
from conftest import direct_call
from scores import assert_scores_close

import beamscore
from beamscore.transforms.dead_letters import SCHEMA

_COLLECTED: dict[str, list] = {}


def _collect(element, name: str, win=beam.DoFn.WindowParam, ts=beam.DoFn.TimestampParam) -> None:
    _COLLECTED[name].append((element, win, ts))  # the in-process runner calls this module's function


def _run(elements, transform, dead: bool = True, windowed: bool = False):
    """``elements | transform`` on the in-process runner: (scored, dead letters, metrics),
    each output as ``(element, window, timestamp)``. ``windowed``: elements are
    ``(value, timestamp)`` put into fixed windows of 10 s first."""
    _COLLECTED.clear()
    p = beam.Pipeline(runner="FnApiRunner")
    pcoll = p | beam.Create(elements, reshuffle=False)
    if windowed:
        pcoll = (
            pcoll | beam.Map(lambda e: window.TimestampedValue(e[0], e[1])) | beam.WindowInto(window.FixedWindows(10))
        )
    out = pcoll | transform
    pcolls = dict(zip(("scored", "dead"), out, strict=True)) if dead else {"scored": out}
    for name, pc in pcolls.items():
        _COLLECTED[name] = []
        _ = pc | f"Collect{name}" >> beam.Map(_collect, name)
    result = p.run()
    result.wait_until_finish()
    batch_rows = result.metrics().query(beam.metrics.MetricsFilter().with_name("batch_rows"))["distributions"]
    return _COLLECTED["scored"], _COLLECTED.get("dead", []), batch_rows[0].committed if batch_rows else None


def _x(rows: int, seed: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, 4)).astype(np.float32)


def _example(values) -> bytes:
    import tensorflow as tf

    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _expected(model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    return direct_call(model, "serving_default", x=x)


def test_row_dicts_are_scored_one_output_per_row_flushed_at_batch_size_and_bundle_end(models):
    x = _x(25)
    rows = [{"id": i, "x": x[i], "name": f"r{i}"} for i in range(25)]
    scored, _, batches = _run(rows, beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=10), dead=False)
    out = sorted((e for e, _, _ in scored), key=lambda r: r["id"])
    assert [r["id"] for r in out] == list(range(25))  # rows in = rows out
    assert sorted(out[0]) == ["id", "label", "name", "scores", "x"] and out[3]["name"] == "r3"
    want = _expected(models["two_sig"], x)
    assert_scores_close(np.stack([r["scores"] for r in out]), want["scores"])
    assert [int(r["label"]) for r in out] == want["label"].tolist()
    # no batch above batch_size; the rows left at the end of a bundle are scored too
    assert batches.max <= 10 and batches.sum == 25 and batches.count >= 3 and batches.min < 10
    # as RunInference's outputs, in the global window at its end
    assert all(w == window.GlobalWindow() and ts == window.GlobalWindow().max_timestamp() for _, w, ts in scored)


class _Point(typing.NamedTuple):
    id: int
    x: np.ndarray


def test_schema_rows_beam_row_and_namedtuple_are_rows_by_field_name(models):
    """Beam's schema'd rows (``beam.Row``, a ``NamedTuple``) are read by field name, as a row
    dict is, and come back as dicts; mixed in one batch with plain dicts."""
    x = _x(9)
    # (a plain dict first: Beam's Create takes every element for a beam.Row when the first is one)
    kinds = [lambda i: {"id": i, "x": x[i]}, lambda i: beam.Row(id=i, x=x[i]), lambda i: _Point(i, x[i])]
    rows = [kinds[i % 3](i) for i in range(9)]
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=4, keep=["id"])
    scored, dead, _ = _run(rows, transform.with_exception_handling())
    assert dead == []
    out = sorted((e for e, _, _ in scored), key=lambda r: r["id"])
    assert [r["id"] for r in out] == list(range(9)) and all(type(r) is dict for r in out)
    want = _expected(models["two_sig"], x)
    assert_scores_close(np.stack([r["scores"] for r in out]), want["scores"])
    assert [int(r["label"]) for r in out] == want["label"].tolist()


def test_serialized_examples_one_per_element(models):
    x = _x(30)
    records = [_example(row) for row in x]
    scored, _, _ = _run(records, beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=8), dead=False)
    assert len(scored) == 30
    order = {r: i for i, r in enumerate(records)}
    out = sorted((e for e, _, _ in scored), key=lambda r: order[r["example"]])
    assert sorted(out[0]) == ["example", "label", "scores"]
    want = _expected(models["two_sig"], x)
    assert_scores_close(np.stack([r["scores"] for r in out]), want["scores"])
    assert [int(r["label"]) for r in out] == want["label"].tolist()


def test_one_bad_row_is_dead_alone_with_its_reason(models):
    x = _x(12)
    rows = [{"id": i, "x": x[i]} for i in range(12)]
    rows[4] = {"id": 4, "x": x[4][:3]}  # 3 values for x: (None, 4)
    rows[9] = None  # not a row at all
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=5, outputs=["scores"])
    scored, dead, _ = _run(rows, transform.with_exception_handling())
    out = sorted((e for e, _, _ in scored), key=lambda r: r["id"])
    good = [i for i in range(12) if i not in (4, 9)]
    assert [r["id"] for r in out] == good
    assert_scores_close(np.stack([r["scores"] for r in out]), _expected(models["two_sig"], x[good])["scores"])
    assert len(dead) == 2 and all(d.schema == SCHEMA and d.num_rows == 1 for d, _, _ in dead)
    by_error = sorted((d.to_pylist()[0] for d, _, _ in dead), key=lambda d: d["error"])
    none, short = by_error  # "cannot score..." sorts before "column..."
    assert short["source"] == "row" and short["stage"] == "validate" and "3 values" in short["error"]
    assert b'"id": 4' in short["raw"]
    assert none["source"] == "row" and "cannot score a NoneType" in none["error"] and "per_row=True" in none["error"]


def test_a_row_of_other_dimensions_among_1d_rows_is_dead_alone(models):
    """Rows of 1-D arrays are joined by one concatenate; a 2-D or 0-D array of the same
    dtype among them (same length, or no length) is that row's dead letter, not a crash."""
    x = _x(8)
    rows = [{"id": i, "x": x[i]} for i in range(8)]
    rows[2] = {"id": 2, "x": np.stack([x[2]] * 4)}  # (4, 4): its len is 4, as the others'
    rows[6] = {"id": 6, "x": np.float32(1.0) * np.ones((), np.float32)}  # 0-D
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=8, outputs=["scores"])
    scored, dead, _ = _run(rows, transform.with_exception_handling())
    out = sorted((e for e, _, _ in scored), key=lambda r: r["id"])
    good = [0, 1, 3, 4, 5, 7]
    assert [r["id"] for r in out] == good
    assert_scores_close(np.stack([r["scores"] for r in out]), _expected(models["two_sig"], x[good])["scores"])
    assert len(dead) == 2 and all(d.num_rows == 1 and d.to_pylist()[0]["stage"] == "validate" for d, _, _ in dead)


def test_a_bad_record_is_dead_alone_without_a_batch_index(models):
    x = _x(10)
    records = [_example(row) for row in x]
    records[6] = _example(x[6][:2])
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=4, outputs=["scores"])
    scored, dead, _ = _run(records, transform.with_exception_handling())
    assert len(scored) == 9
    ((table, _, _),) = dead
    letter = table.to_pylist()[0]
    assert letter["source"] == "record" and letter["raw"] == records[6] and letter["count"] == 1
    assert not letter["error"].startswith("record ")  # the buffer's index means nothing to the user
    order = {r: i for i, r in enumerate(records)}
    out = sorted((e for e, _, _ in scored), key=lambda r: order[r["example"]])
    good = [i for i in range(10) if i != 6]
    assert_scores_close(np.stack([r["scores"] for r in out]), _expected(models["two_sig"], x[good])["scores"])


def test_without_exception_handling_a_bad_row_fails_the_pipeline_with_its_message(models):
    x = _x(6)
    rows = [{"id": i, "x": x[i]} for i in range(6)]
    rows[2] = {"id": 2, "x": None}
    with pytest.raises(Exception, match=r"row: column 'x' is null.*1 of 6 rows of a batch failed"):
        _run(rows, beamscore.RunSignature(models["two_sig"], per_row=True), dead=False)


def test_keyed_rows_and_records_keep_their_keys(models):
    x = _x(20)
    pairs = [(f"k{i}", {"id": i, "x": x[i]}) for i in range(10)]
    pairs += [(f"k{i}", _example(x[i])) for i in range(10, 20)]
    pairs[3] = ("k3", {"id": 3, "x": x[3][:1]})
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=6, outputs=["scores"])
    scored, dead, _ = _run(pairs, transform.with_exception_handling())
    ((bad_key, table), _, _) = dead[0]
    assert len(dead) == 1 and bad_key == "k3" and table["source"][0].as_py() == "row with key 'k3'"
    got = {key: value for (key, value), _, _ in scored}
    assert sorted(got) == sorted(f"k{i}" for i in range(20) if i != 3)
    assert all(got[f"k{i}"]["id"] == i for i in range(10) if i != 3)
    assert all("example" in got[f"k{i}"] for i in range(10, 20))
    good = [i for i in range(20) if i != 3]
    assert_scores_close(
        np.stack([got[f"k{i}"]["scores"] for i in good]), _expected(models["two_sig"], x[good])["scores"]
    )


def test_windows_are_kept_and_a_batch_never_mixes_them(models):
    x = _x(20)
    rows = [({"id": i, "x": x[i]}, i) for i in range(20)]  # ids 0-9 in [0, 10), 10-19 in [10, 20)
    rows[13] = ({"id": 13, "x": None}, 13)
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=4, outputs=["scores"])
    scored, dead, batches = _run(rows, transform.with_exception_handling(), windowed=True)
    ((table, dead_window, _),) = dead  # the bad row's dead letter is in its own window
    assert table["error"][0].as_py().startswith("column 'x' is null") and dead_window == window.IntervalWindow(10, 20)
    good = [i for i in range(20) if i != 13]
    assert sorted(e["id"] for e, _, _ in scored) == good
    for row, win, ts in scored:
        start = 0 if row["id"] < 10 else 10
        assert win == window.IntervalWindow(start, start + 10) and ts == win.max_timestamp()
    assert batches.max <= 4 and batches.sum == 20 and batches.count >= 6  # 4+4+2 per window
    out = sorted((e for e, _, _ in scored), key=lambda r: r["id"])
    assert_scores_close(np.stack([r["scores"] for r in out]), _expected(models["two_sig"], x[good])["scores"])


def test_a_batch_where_a_row_is_expected_is_a_dead_letter_naming_per_row(models):
    x = _x(4)
    elements = [{"id": 0, "x": x[0]}, [{"id": 1, "x": x[1]}]]
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, outputs=["scores"])
    scored, dead, _ = _run(elements, transform.with_exception_handling())
    assert [e["id"] for e, _, _ in scored] == [0]
    ((table, _, _),) = dead
    assert "list of dict (a batch: drop per_row=True to score batches)" in table["error"][0].as_py()


def test_per_row_must_be_a_bool(models):
    with pytest.raises(beamscore.BeamscoreError, match="per_row must be True or False, got 'yes'"):
        beamscore.RunSignature(models["two_sig"], per_row="yes")


def _frozen(element) -> int:
    import gc

    return gc.get_freeze_count()


def test_objects_are_frozen_while_scoring_and_the_process_is_left_as_found(models):
    """The per-row step freezes the objects alive after the model load (full collections
    would walk TensorFlow's objects) and unfreezes them at teardown; a caller's own freeze
    is left alone."""
    import gc

    x = _x(6)
    rows = [{"id": i, "x": x[i]} for i in range(6)]
    transform = beamscore.RunSignature(models["two_sig"], per_row=True, batch_size=4, outputs=["scores"])
    assert gc.get_freeze_count() == 0
    scored, _, _ = _run(rows, transform | beam.Map(_frozen), dead=False)
    assert len(scored) == 6 and all(count > 0 for count, _, _ in scored)  # frozen while it ran
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        transform = beamscore.RunSignature(models["two_sig"], per_row=True, outputs=["scores"])
        scored, _, _ = _run(rows, transform | beam.Map(_frozen), dead=False)
        assert len(scored) == 6 and gc.get_freeze_count() > 0  # the caller's freeze, not undone
    finally:
        gc.unfreeze()
