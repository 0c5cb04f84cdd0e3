"""SignatureModelHandler with one row per element (Beam's usual RunInference input), its
strict keywords and Beam's batching / model-sharing parameters, each under Beam's own
``RunInference`` on the in-process runner and compared with a direct signature call.

Before: a row dict per element was dead-lettered whole ("cannot score an element of type
dict"); ``model_copies=1`` / ``large_model=True`` crashed with ``'AutoProxy[acquire_singleton]'
object has no attribute 'scorer'``; a misspelt keyword (``kep=``) was swallowed by
``**kwargs`` and ``min_batch_size=2`` raised Beam's "multiple values" error.
"""

from __future__ import annotations

import pathlib
import typing

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from conftest import direct_call
from scores import assert_scores_close

import beamscore
from beamscore.inference import RowFailed

_COLLECTED: dict[str, list] = {}


def _collect(element, name: str) -> None:
    _COLLECTED[name].append(element)


def _run(build) -> dict[str, list]:
    _COLLECTED.clear()
    p = beam.Pipeline(runner="FnApiRunner")
    for name, pcoll in build(p).items():
        _COLLECTED[name] = []
        _ = pcoll | f"Collect{name}" >> beam.Map(_collect, name)
    p.run().wait_until_finish()
    return dict(_COLLECTED)


ROWS = 30
BAD = 7


class Point(typing.NamedTuple):
    id: int
    x: np.ndarray


def _rows(bad: bool = True) -> tuple[list[dict], np.ndarray]:
    x = np.random.default_rng(9).normal(size=(ROWS, 4)).astype(np.float32)
    rows = [{"id": i, "x": x[i]} for i in range(ROWS)]
    if bad:
        rows[BAD] = {"id": BAD, "x": x[BAD][:3]}
    return rows, x


def _check_scored(model: str, results: list, x: np.ndarray, skip: tuple[int, ...] = (BAD,)) -> None:
    assert all(isinstance(r, PredictionResult) for r in results)
    by_id = {r.example["id"]: r.inference for r in results}
    ids = [i for i in range(ROWS) if i not in skip]
    assert sorted(by_id) == ids
    assert sorted(by_id[ids[0]]) == ["id", "label", "scores", "x"]
    want = direct_call(model, "serving_default", x=x[ids])
    assert_scores_close(np.stack([by_id[i]["scores"] for i in ids]), want["scores"])


def test_one_row_dict_per_element_batched_by_run_inference_with_per_row_dead_letters(models):
    rows, x = _rows()
    handler = beamscore.SignatureModelHandler(models["two_sig"], max_batch_size=8)

    def build(p):
        scored, failed = p | beam.Create(rows) | RunInference(handler).with_exception_handling()
        return {
            "scored": scored,
            "batches": failed.failed_inferences,
            "rows": failed.failed_postprocessing[0],
        }

    got = _run(build)
    assert got["batches"] == []  # no whole batch failed
    _check_scored(models["two_sig"], got["scored"], x)
    # the bad row alone, as (PredictionResult, error), naming what is wrong with it
    assert len(got["scored"]) + len(got["rows"]) == ROWS
    [(result, error)] = got["rows"]
    assert result.example["id"] == BAD and isinstance(result.inference, RowFailed)
    assert "RowFailedError" in str(error[0]) and "'x'" in str(error[1]) and "4" in str(error[1])


def test_a_failed_row_without_exception_handling_stops_the_pipeline_with_its_message(models):
    rows, _ = _rows()
    handler = beamscore.SignatureModelHandler(models["two_sig"])
    with pytest.raises(Exception, match=r"row: .*'x'"):
        _run(lambda p: {"scored": p | beam.Create(rows) | RunInference(handler)})


def test_keyed_rows_records_and_schema_rows(models):
    import tensorflow as tf

    rows, x = _rows(bad=False)

    def record(values) -> bytes:
        feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))}
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    elements = [
        (f"k{i}", rows[i] if i % 3 == 0 else Point(i, x[i]) if i % 3 == 1 else record(x[i])) for i in range(ROWS)
    ]
    handler = KeyedModelHandler(beamscore.SignatureModelHandler(models["two_sig"], outputs=["scores"]))
    got = _run(lambda p: {"out": p | beam.Create(elements) | RunInference(handler)})
    assert sorted(k for k, _ in got["out"]) == sorted(k for k, _ in elements)
    want = direct_call(models["two_sig"], "serving_default", x=x)["scores"]
    for key, result in got["out"]:
        i = int(key[1:])
        assert_scores_close(result.inference["scores"][None], want[i : i + 1])
        if i % 3 == 2:
            assert result.inference["example"] == elements[i][1]


@pytest.mark.slow
@pytest.mark.parametrize("sharing", [{"model_copies": 1}, {"large_model": True}])
def test_model_copies_and_large_model_run_through_run_inference(models, sharing):
    rows, x = _rows()
    handler = beamscore.SignatureModelHandler(models["two_sig"], max_batch_size=16, **sharing)
    assert handler.share_model_across_processes()

    def build(p):
        scored, failed = p | beam.Create(rows) | RunInference(handler).with_exception_handling()
        return {"scored": scored, "rows": failed.failed_postprocessing[0]}

    got = _run(build)
    _check_scored(models["two_sig"], got["scored"], x)
    assert [r.example["id"] for r, _ in got["rows"]] == [BAD]


def test_beams_batching_parameters_pass_through_counted_in_rows(models):
    handler = beamscore.SignatureModelHandler(
        models["two_sig"], min_batch_size=2, max_batch_size=5, max_batch_duration_secs=3
    )
    kwargs = handler.batch_elements_kwargs()
    assert (kwargs["min_batch_size"], kwargs["max_batch_size"], kwargs["max_batch_duration_secs"]) == (2, 5, 3)
    rows, x = _rows(bad=False)
    got = _run(lambda p: {"out": p | beam.Create(rows) | RunInference(handler)})
    _check_scored(models["two_sig"], got["out"], x, skip=())


def test_a_misspelt_keyword_is_a_type_error_naming_the_likely_one(models):
    with pytest.raises(TypeError, match=r"kep \(did you mean keep\?\)"):
        beamscore.SignatureModelHandler(models["two_sig"], kep=["id"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"ouputs \(did you mean outputs\?\)"):
        beamscore.SignatureModelHandler(models["two_sig"], ouputs=["scores"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"kep \(did you mean keep\?\)"):
        beamscore.RunSignature(models["two_sig"], kep=["id"])  # type: ignore[call-arg]
    with pytest.raises(beamscore.BeamscoreError, match="give one"):
        beamscore.SignatureModelHandler(models["two_sig"], max_batch_rows=4, max_batch_size=8)


def test_a_path_like_model(models):
    handler = beamscore.SignatureModelHandler(pathlib.Path(models["two_sig"]))
    rows, x = _rows(bad=False)
    got = _run(lambda p: {"out": p | beam.Create(rows) | RunInference(handler)})
    _check_scored(models["two_sig"], got["out"], x, skip=())


def test_a_dict_of_arrays_is_a_row_or_columns_by_the_signatures_rank(models):
    from beamscore.inference import is_row

    ranks = {"x": 1}  # x: [None, 4]
    assert is_row({"x": np.zeros(4, np.float32)}, ranks)
    assert not is_row({"x": np.zeros((3, 4), np.float32)}, ranks)
    assert is_row({"x": [1.0, 2.0, 3.0, 4.0]}, ranks) and is_row(b"record", ranks)
    assert not is_row([{"x": np.zeros(4)}], ranks) and not is_row(("k", {"x": np.zeros((2, 4))}), ranks)


def test_keyed_rows_without_keyed_model_handler_say_to_wrap_it(models):
    rows, _ = _rows(bad=False)
    handler = beamscore.SignatureModelHandler(models["two_sig"])
    with pytest.raises(Exception, match=r"\(key, row\) pair; for keyed rows wrap the handler: .*KeyedModelHandler"):
        _run(lambda p: {"out": p | beam.Create([("k", rows[0])]) | RunInference(handler)})
