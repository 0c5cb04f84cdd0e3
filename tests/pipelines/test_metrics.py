"""Beam metrics of a scoring job: counters and distributions agree with the manifest."""

from __future__ import annotations

import json
import shutil

import apache_beam as beam
import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics.metric import MetricsFilter

from beamscore.config import ScoreConfig
from beamscore.pipelines.plan import plan_job
from beamscore.pipelines.resume import start_output
from beamscore.pipelines.runners import make_runner, pipeline_options
from beamscore.pipelines.score import build_pipeline


def test_counters_and_distributions(tmp_path):
    jm = job_models.build_all(str(tmp_path / "models"))
    x = np.random.default_rng(5).normal(size=(250, 4)).astype(np.float32)
    x[7, 0] = 1000.0  # one row the model raises on
    data = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)}), data)
    # a copy of its own: the models of job_models are built once per process, and a process
    # shares one loaded copy of a model across pipelines (an earlier test's load would be reused)
    model = shutil.copytree(jm["raising"], tmp_path / "raising")
    config = ScoreConfig(model=str(model), inputs=[str(data)], output=str(tmp_path / "out"), batch_size=100)
    plan = plan_job(config)
    options = pipeline_options([], {})
    p = beam.Pipeline(runner=make_runner(options), options=options)
    with start_output(plan) as started:
        build_pipeline(p, plan, started.done)
    result = p.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter().with_namespace("beamscore"))
    counters = {c.key.metric.name: c.committed for c in metrics["counters"]}
    assert (counters["rows_in"], counters["rows_out"], counters["rows_failed"]) == (250, 249, 1)
    assert counters["batches"] == 3 and counters["units"] == 1
    dists = {d.key.metric.name: d.committed for d in metrics["distributions"]}
    assert (dists["batch_rows"].count, dists["batch_rows"].sum, dists["batch_rows"].max) == (3, 250, 100)
    assert dists["batch_latency_ms"].count == 3
    assert counters["model_loads"] == dists["model_load_ms"].count == 1 and dists["model_load_ms"].sum > 0
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_failed"]) == (250, 249, 1)
    # the manifest's metrics (from the units' receipts) say what Beam's counters say
    m = manifest["metrics"]
    assert (m["batches"], m["batch_rows_mean"], m["model_loads"], m["workers"]) == (3, round(250 / 3, 1), 1, 1)
    assert m["model_loads_per_worker"] == 1.0 and m["batch_latency_ms_mean"] > 0 and m["model_load_ms_mean"] > 0
