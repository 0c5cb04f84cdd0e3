"""One runner per benchmark path; each runs in its own child process (``python -m benchmarks.paths``).

A child gets its job as JSON on the command line, runs one path over a whole data set and
writes a JSON report: rows, the wall-clock time its first batch's outputs existed and the
time it finished. The parent (:mod:`benchmarks.bench`) measures the process itself (wall
time, peak RSS) and turns the times into start-up and steady-state rates.

Paths (same model, batch size and TF thread settings for all):
- ``R0``: the signature in a loop over data already in memory (the ceiling).
- ``R1``: pyarrow read -> signature -> pyarrow write in one process, no Beam (hand-written).
- ``P``: ``beamscore score`` on DirectRunner (in-process FnApiRunner).
- ``T``: Beam ``ReadFromParquetBatched`` -> ``beamscore.RunSignature`` -> ``WriteToParquetBatched``.
- ``H``: the same with ``RunInference(beamscore.SignatureModelHandler)`` in the middle.
- ``B1``: Beam ``ReadFromParquet`` -> ``RunInference(KeyedModelHandler(TFModelHandlerNumpy))``
  with an ``inference_fn`` that calls the named signature -> ``WriteToParquet``
  (needs tf-keras and ``TF_USE_LEGACY_KERAS=1``); batches of exactly the batch size, or, with
  ``beam_batching``, Beam's own adaptive ``BatchElements`` defaults.
- ``B2``: tfx-bsl ``RunInference`` over TFRecord with a serialized-Example signature, writing
  ``PredictionLog`` s to TFRecord.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["PATHS", "main"]

_FIRST: list[float] = []


def _first_batch_done() -> None:
    """Record (once per process) when the first batch's outputs exist."""
    if not _FIRST:
        _FIRST.append(time.time())


def _as_input(x: np.ndarray, shape: list[int]) -> np.ndarray:
    """A batch as the model takes it: float32, reshaped to the input's row shape."""
    return x.reshape((len(x), *shape)).astype(np.float32, copy=False)


def r0(job: dict[str, Any]) -> int:
    """The signature in a loop over in-memory rows; ``.numpy()`` once per output."""
    import tensorflow as tf

    fn = tf.saved_model.load(job["model"]).signatures[job["signature"]]
    x = np.concatenate([np.load(f)["x"] for f in job["npz"]])
    x = _as_input(x, job["input_shape"])
    b = job["batch_size"]
    for start in range(0, len(x), b):
        out = fn(**{job["input"]: tf.constant(x[start : start + b])})
        _ = {k: v.numpy() for k, v in out.items()}
        _first_batch_done()
    return len(x)


def r1(job: dict[str, Any]) -> int:
    """What a user hand-writes: ``iter_batches`` -> signature -> ``ParquetWriter`` per shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    fn = tf.saved_model.load(job["model"]).signatures[job["signature"]]
    os.makedirs(job["output"], exist_ok=True)
    rows = 0
    for i, path in enumerate(job["parquet"]):
        writer = None
        for batch in pq.ParquetFile(path).iter_batches(batch_size=job["batch_size"], columns=["id", "x"]):
            x = batch.column("x").flatten().to_numpy().reshape(batch.num_rows, -1)
            out = fn(**{job["input"]: tf.constant(_as_input(x, job["input_shape"]))})
            cols = {"id": batch.column("id")}
            for key, value in sorted(out.items()):
                v = value.numpy()
                flat = pa.array(v.reshape(-1))
                cols[key] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(v.shape[1:]))) if v.ndim > 1 else flat
            table = pa.table(cols)
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(job["output"], f"part-{i:05d}.parquet"), table.schema)
            writer.write_table(table)
            rows += batch.num_rows
            _first_batch_done()
        if writer is not None:
            writer.close()
    return rows


def _time_signature_calls() -> None:
    """Record the first batch's end when beamscore's first signature call returns."""
    from beamscore.model import runner

    call = runner.SignatureRunner.__call__

    def timed(self, columns, where="batch"):
        result = call(self, columns, where)
        _first_batch_done()
        return result

    runner.SignatureRunner.__call__ = timed


def p(job: dict[str, Any]) -> int:
    """``beamscore score`` through its CLI entry point, in this process."""
    from beamscore import cli

    _time_signature_calls()
    args = ["score", "--model", job["model"], "--signature", job["signature"], "--output", job["output"]]
    args += ["--input", os.path.join(job["data"], job["format"], "*." + job["format"]), "--overwrite"]
    args += ["--batch-size", str(job["batch_size"]), "--keep", "id", *job.get("extra", [])]
    if job["format"] != "parquet":
        args += ["--format", job["format"]]
    code = cli.main(args)
    if code != 0:
        raise SystemExit(f"beamscore score exited {code}")
    with open(os.path.join(job["output"], "_manifest.json")) as f:
        return json.load(f)["rows_out"]


def _beam_parquet_pipeline(job: dict[str, Any], score: Callable[[Any], Any], schema: Any) -> int:
    """``ReadFromParquetBatched`` (a table per row group) -> ``score`` -> ``WriteToParquetBatched``."""
    import apache_beam as beam

    from beamscore.pipelines.runners import make_runner

    _time_signature_calls()
    options = beam.options.pipeline_options.PipelineOptions([])
    with beam.Pipeline(runner=make_runner(options), options=options) as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromParquetBatched(os.path.join(job["data"], "parquet", "*.parquet"), columns=["id", "x"])
            | score(beam)
            | beam.io.WriteToParquetBatched(os.path.join(job["output"], "part"), schema, file_name_suffix=".parquet")
        )
    import pyarrow.parquet as pq

    written = sum(pq.read_metadata(f).num_rows for f in glob.glob(os.path.join(job["output"], "part-*.parquet")))
    if written != job["rows"]:
        raise SystemExit(f"{job['path']} wrote {written:,} rows of {job['rows']:,}")
    return written


def _input_schema(job: dict[str, Any]) -> Any:
    import pyarrow.parquet as pq

    return pq.read_schema(job["parquet"][0]).remove_metadata()


def t(job: dict[str, Any]) -> int:
    """The public ``beamscore.RunSignature`` on Arrow tables from Beam's own Parquet IO."""
    import beamscore

    run = beamscore.RunSignature(
        job["model"], job["signature"], outputs=job["outputs"], keep=["id"], batch_size=job["batch_size"]
    )
    schema = run.output_schema(_input_schema(job))
    return _beam_parquet_pipeline(job, lambda beam: run, schema)


def h(job: dict[str, Any]) -> int:
    """Beam's ``RunInference`` with ``beamscore.SignatureModelHandler`` on the same tables."""
    from apache_beam.ml.inference.base import RunInference

    import beamscore

    handler = beamscore.SignatureModelHandler(
        job["model"], job["signature"], outputs=job["outputs"], keep=["id"], batch_size=job["batch_size"]
    )
    schema = handler.output_schema(_input_schema(job))
    return _beam_parquet_pipeline(
        job, lambda beam: RunInference(handler) | beam.Map(lambda result: result.inference), schema
    )


def b1(job: dict[str, Any]) -> int:
    """Beam's own RunInference with TFModelHandlerNumpy (tf-keras, TF_USE_LEGACY_KERAS=1)."""
    import apache_beam as beam
    import pyarrow as pa
    import tensorflow as tf
    from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    from beamscore.pipelines.runners import make_runner

    name, key, shape = job["signature"], job["input"], job["input_shape"]

    def inference_fn(model, batch, inference_args, model_id=None):
        out = model.signatures[name](**{key: tf.constant(np.stack(batch))})
        outs = {k: v.numpy() for k, v in out.items()}
        _first_batch_done()
        return [PredictionResult(x, {k: v[i] for k, v in outs.items()}, model_id) for i, x in enumerate(batch)]

    sizes = (
        {} if job.get("beam_batching") else {"min_batch_size": job["batch_size"], "max_batch_size": job["batch_size"]}
    )
    handler = TFModelHandlerNumpy(job["model"], inference_fn=inference_fn, **sizes)
    schema = pa.schema([("id", pa.int64()), ("scores", pa.list_(pa.float32())), ("embedding", pa.list_(pa.float32()))])
    if "output_0" in job["outputs"]:
        schema = pa.schema([("id", pa.int64()), ("output_0", pa.list_(pa.float32()))])

    def to_row(kv):
        ident, result = kv
        return {"id": ident, **{k: result.inference[k].reshape(-1).tolist() for k in job["outputs"]}}

    options = beam.options.pipeline_options.PipelineOptions([])
    with beam.Pipeline(runner=make_runner(options), options=options) as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromParquet(os.path.join(job["data"], "parquet", "*.parquet"))
            | beam.Map(lambda r: (r["id"], _row(r["x"], shape)))
            | RunInference(KeyedModelHandler(handler))
            | beam.Map(to_row)
            | beam.io.WriteToParquet(os.path.join(job["output"], "part"), schema, file_name_suffix=".parquet")
        )
    return job["rows"]


def _row(values: list, shape: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(shape)


def b2(job: dict[str, Any]) -> int:
    """tfx-bsl RunInference over TFRecord (serialized tf.Example), PredictionLogs to TFRecord."""
    import apache_beam as beam
    from tensorflow_serving.apis import prediction_log_pb2
    from tfx_bsl.public.beam import RunInference
    from tfx_bsl.public.proto import model_spec_pb2

    from beamscore.pipelines.runners import make_runner

    spec = model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=job["model"], signature_name=[job["signature"]], tag=["serve"]
        )
    )

    def mark(log):
        _first_batch_done()
        return log

    options = beam.options.pipeline_options.PipelineOptions([])
    with beam.Pipeline(runner=make_runner(options), options=options) as pipeline:
        _ = (
            pipeline
            | beam.io.ReadFromTFRecord(os.path.join(job["data"], "tfrecord", "*.tfrecord"))
            | RunInference(spec)
            | beam.Map(mark)
            | beam.io.WriteToTFRecord(
                os.path.join(job["output"], "part"), coder=beam.coders.ProtoCoder(prediction_log_pb2.PredictionLog)
            )
        )
    return job["rows"]


PATHS: dict[str, Callable[[dict[str, Any]], int]] = {
    "R0": r0,
    "R1": r1,
    "P": p,
    "T": t,
    "H": h,
    "B1": b1,
    "B2": b2,
}


def main(argv: list[str]) -> int:
    """``python -m benchmarks.paths JOB_JSON REPORT_PATH``: run one path, write its report."""
    job = json.loads(argv[0])
    rows = PATHS[job["path"]](job)
    end = time.time()
    if "output" in job and not glob.glob(os.path.join(job["output"], "*")) and job["path"] != "R0":
        raise SystemExit(f"{job['path']} wrote nothing to {job['output']}")
    with open(argv[1], "w") as f:
        json.dump({"rows": rows, "first": _FIRST[0] if _FIRST else end, "end": end}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
