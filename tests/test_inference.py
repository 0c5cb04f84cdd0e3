"""SignatureModelHandler under Beam's own RunInference: tables in, tables with predictions
out, compared with a direct signature call; keyed input, dead letters, metrics, refresh."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, ModelMetadata, RunInference
from conftest import direct_call
from scores import assert_scores_close

import beamscore

_COLLECTED: dict[str, list] = {}


def _collect(element, name: str) -> None:
    _COLLECTED[name].append(element)


def _x(rows: int) -> np.ndarray:
    return np.random.default_rng(5).normal(size=(rows, 4)).astype(np.float32)


def _table(x: np.ndarray, ids) -> pa.Table:
    return pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})


def _run(build):
    _COLLECTED.clear()
    p = beam.Pipeline(runner="FnApiRunner")
    for name, pcoll in build(p).items():
        _COLLECTED[name] = []
        _ = pcoll | f"Collect{name}" >> beam.Map(_collect, name)
    result = p.run()
    result.wait_until_finish()
    return dict(_COLLECTED), result


def test_run_inference_on_tables_from_read_from_parquet_batched(models, tmp_path):
    x = _x(600)
    pq.write_table(_table(x, np.arange(600)), tmp_path / "in.parquet", row_group_size=100)
    handler = beamscore.SignatureModelHandler(models["two_sig"], max_batch_rows=250)
    got, result = _run(
        lambda p: {
            "out": p
            | beam.io.ReadFromParquetBatched(str(tmp_path / "in.parquet"))
            | RunInference(handler)
            | beam.Map(lambda r: r.inference)
        }
    )
    out = pa.concat_tables(got["out"]).sort_by("id")
    assert out.column_names == ["id", "x", "label", "scores"] and out["id"].to_pylist() == list(range(600))
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack(out["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}
    assert counters["num_inferences"] == 6  # one per table: six row groups
    dists = {d.key.metric.name for d in result.metrics().query()["distributions"]}
    assert "inference_batch_latency_micro_secs" in dists


def test_keyed_numpy_dicts_and_dead_letters(models):
    x = _x(20)
    good = ("a", {"x": x[:10]})
    bad = ("b", {"x": x[10:].astype(np.float64)})  # float64 -> float32 is lossy: refused without cast
    # ten rows a batch: "a" and "b" are two batches (RunInference dead-letters whole batches)
    handler = KeyedModelHandler(
        beamscore.SignatureModelHandler(models["two_sig"], outputs=["scores"], max_batch_rows=10)
    )

    def build(p):
        main, other = p | beam.Create([good, bad]) | RunInference(handler).with_exception_handling()
        return {"main": main, "failed": other.failed_inferences}

    got, _ = _run(build)
    ((key, result),) = got["main"]
    assert key == "a" and sorted(result.inference) == ["scores", "x"]
    expected = direct_call(models["two_sig"], "serving_default", x=x[:10])["scores"]
    assert_scores_close(result.inference["scores"], expected)
    ((failed, exc),) = got["failed"]
    assert failed[0][0] == "b" and "has dtype float64, signature input 'x' expects float32" in str(exc)


def test_model_refresh_through_model_metadata(models, tmp_path):
    import builders
    import tensorflow as tf

    module = builders.TwoSignatureModule()
    module.w.assign(module.w * 3.0)
    newer = str(tmp_path / "newer")
    tf.saved_model.save(module, newer, signatures={"serving_default": module.serve})
    x = _x(8)
    handler = beamscore.SignatureModelHandler(models["two_sig"], outputs=["scores"])

    def build(p):
        metadata = p | "Meta" >> beam.Create([ModelMetadata(model_id=newer, model_name="newer")])
        scored = p | beam.Create([{"x": x}]) | RunInference(handler, model_metadata_pcoll=metadata)
        return {"out": scored}

    got, _ = _run(build)
    (result,) = got["out"]
    assert result.model_id == newer
    expected = direct_call(newer, "serving_default", x=x)["scores"]
    assert_scores_close(result.inference["scores"], expected)


def test_a_wrong_signature_fails_when_the_handler_is_made(models):
    with pytest.raises(beamscore.BeamscoreError, match="signature 'nope' not found"):
        beamscore.SignatureModelHandler(models["two_sig"], signature="nope")
