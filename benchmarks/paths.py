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
- ``parts``: not a path but its parts, each timed alone on one core: reading (Parquet and
  TFRecord, up to the model's numpy arrays), the model on in-memory rows, and writing the
  outputs (to Arrow, then Parquet with each codec); what P could reach is their sum per row
  divided by the cores (the "bound" row of :mod:`benchmarks.bench`).

Start-up: R1 and P also report *spans*, ``(name, start, end)`` wall-clock times of the steps
before the first batch (imports, listing, footers, model inspection, pipeline construction,
model load, the first signature call), recorded by wrapping those functions in the child.

Per-row elements, the path most Beam pipelines meet first (each starts from the same
in-memory rows, one element per row, and ends by counting the rows scored):

- ``D0``: the same row dicts batched by ``BatchElements`` and counted, no model: the floor
  of every path with ``BatchElements`` in front (BH, DB, EB).
- ``D``: row dicts ``{"id", "x"}`` -> ``beamscore.RunSignature(keep=["id"], per_row=True)``
  (batched inside the DoFn), one output dict per row.
- ``E``: serialized ``tf.train.Example`` records -> ``beamscore.RunSignature(per_row=True)``.
- ``DN``: D without ``gc.freeze`` after the model load (:class:`beamscore.transforms.per_row.PerRowFn`).
- ``DB``, ``EB``: the same rows and records -> ``BatchElements`` -> ``beamscore.RunSignature``
  (lists in, lists out).
- ``BH``: ``(id, x)`` pairs -> ``RunInference(KeyedModelHandler(TFModelHandlerNumpy))`` with the
  ``load_model`` override the docs show for Keras 3 (``tf.saved_model.load``) and an
  ``inference_fn`` calling the named signature; needs ``tensorflow_hub`` (``.venv-baselines``).
"""

from __future__ import annotations

import builtins
import glob
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["NO_FILES", "PATHS", "main"]

_FIRST: list[float] = []
#: (name, start, end, cpu start, cpu end) of each step before the first batch: wall clock and
#: CPU time of the whole process (see :func:`_watch_imports`)
_SPANS: list[tuple[str, float, float]] = []
#: anything else a path reports (``parts``: microseconds per row of each part)
_EXTRA: dict[str, Any] = {}
_MAIN = time.time()  # this module is imported right after the interpreter starts


def _first_batch_done() -> None:
    """Record (once per process) when the first batch's outputs exist."""
    if not _FIRST:
        _FIRST.append(time.time())
        _EXTRA["startup_cpu"] = time.process_time()


def _as_input(x: np.ndarray, shape: list[int]) -> np.ndarray:
    """A batch as the model takes it: float32, reshaped to the input's row shape."""
    return x.reshape((len(x), *shape)).astype(np.float32, copy=False)


def _span(name: str, fn: Callable) -> Callable:
    """``fn``, recording the wall-clock span of each call made before the first batch."""

    def timed(*args, **kwargs):
        start, cpu, before_first = time.time(), time.process_time(), not _FIRST
        try:
            return fn(*args, **kwargs)
        finally:
            if before_first:  # one that ends after the first batch (the runner) is cut there
                end = min(time.time(), _FIRST[0]) if _FIRST else time.time()
                end_cpu = _EXTRA["startup_cpu"] if _FIRST else time.process_time()
                _SPANS.append((name, start, end, cpu, end_cpu))

    timed.__wrapped__ = fn  # type: ignore[attr-defined]
    return timed


def _wrap(module: Any, attr: str, name: str) -> None:
    """Time ``module.attr`` (a function, or a method when ``module`` is a class) under ``name``."""
    setattr(module, attr, _span(name, getattr(module, attr)))


#: top-level packages whose first import is timed
_TIMED_IMPORTS = ("tensorflow", "apache_beam", "pyarrow", "beamscore")

#: (module, attribute, span name): the steps of ``beamscore score`` before its first batch.
#: An attribute is ``function`` or ``Class.method``; one the code no longer has is skipped.
_STEPS = [
    ("beamscore.pipelines.plan", "inspect_model", "model inspection"),
    ("beamscore.model.loader", "inspect_model", "model inspection (load)"),
    ("beamscore.fs", "list_files", "listing"),
    ("beamscore.pipelines.plan", "schema_file", "first file's schema"),
    ("beamscore.pipelines.plan", "survey", "footers"),
    ("beamscore.pipelines.score", "plan_job", "planning (all)"),
    ("beamscore.pipelines.trial", "trial_call", "trial call (launcher)"),
    ("beamscore.pipelines.score", "start_output", "output claim"),
    ("beamscore.pipelines.score", "build_pipeline", "pipeline construction"),
    ("beamscore.model.loader", "_load", "model load (TF)"),
    ("beamscore.transforms.run_signature", "load_model", "model load (worker)"),
    ("apache_beam.pipeline", "Pipeline.run", "runner start"),
    ("beamscore.transforms.run_signature", "RunSignatureFn.setup", "worker setup"),
]


def _watch_imports(steps: list[tuple[str, str, str]] = ()) -> None:
    """Record the first import of each of :data:`_TIMED_IMPORTS` (on any thread) as a span,
    and wrap each of ``steps`` once its module has been imported (so that nothing is
    imported earlier, or on another thread, than the code under test does)."""
    real = builtins.__import__
    lock = threading.RLock()
    open_: set[str] = set()
    pending = list(steps)

    def patch() -> None:
        for step in list(pending):
            module_name, attr, name = step
            module = sys.modules.get(module_name)
            owner, _, method = attr.rpartition(".")
            target = getattr(module, owner, None) if owner else module
            if target is not None and hasattr(target, method):
                pending.remove(step)
                _wrap(target, method, name)

    def timed_import(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.partition(".")[0] if level == 0 else ""
        if top not in _TIMED_IMPORTS or top in sys.modules:
            try:
                return real(name, globals, locals, fromlist, level)
            finally:
                if pending:
                    with lock:
                        patch()
        with lock:
            mine = top not in open_
            open_.add(top)
        start, cpu = time.time(), time.process_time()
        try:
            return real(name, globals, locals, fromlist, level)
        finally:
            if mine:
                _SPANS.append((f"import {top}", start, time.time(), cpu, time.process_time()))
            if pending:
                with lock:
                    patch()

    builtins.__import__ = timed_import


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
    _watch_imports()
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    fn = _span("model load (TF)", tf.saved_model.load)(job["model"]).signatures[job["signature"]]
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


def _in_trial() -> bool:
    """Whether this call comes from the launcher's trial call (``beamscore.pipelines.trial``)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "trial_call" and frame.f_code.co_filename.endswith("trial.py"):
            return True
        frame = frame.f_back
    return False


def _time_signature_calls() -> None:
    """Record the first batch's end when beamscore's first signature call on a job's batch
    returns (not the launcher's trial call of a few rows: a span of its own, see ``_STEPS``)."""
    from beamscore.model import runner

    call = runner.SignatureRunner.__call__

    def timed(self, columns, where="batch"):
        start, cpu = time.time(), time.process_time()
        result = call(self, columns, where)
        if not _FIRST and _in_trial():
            return result
        if not _FIRST:
            _SPANS.append(("first batch (signature call)", start, time.time(), cpu, time.process_time()))
        _first_batch_done()
        return result

    runner.SignatureRunner.__call__ = timed


def p(job: dict[str, Any]) -> int:
    """``beamscore score`` through its CLI entry point, in this process."""
    _watch_imports(_STEPS)
    from beamscore import cli

    _time_signature_calls()
    args = ["score", "--model", job["model"], "--signature", job["signature"], "--output", job["output"]]
    args += ["--input", os.path.join(job["data"], job["format"], "*." + job["format"]), "--overwrite"]
    args += ["--batch-size", str(job["batch_size"]), "--keep", "id", *job.get("extra", [])]
    if job["format"] != "parquet":
        args += ["--format", job["format"]]
    sys.argv = ["beamscore", *args]  # as the program itself: main() without argv (a host's main(argv) differs)
    code = cli.main()
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


def parts(job: dict[str, Any]) -> int:
    """P's parts, each timed alone on one core: reading Parquet and TFRecord (to the model's
    numpy arrays, as P's reader and validation do), the model on those arrays (R0), and writing
    (outputs to Arrow as P does, then Parquet with P's writer for each codec). Reports, in
    ``parts``, microseconds of that core per row: CPU time of the whole process, every thread.

    The process is pinned to one core before TensorFlow starts, so its thread pools have one
    thread each. The first ``parts_rows`` rows (whole work units) are measured."""
    import shutil

    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    from beamscore._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import pyarrow as pa
    import tensorflow as tf

    from beamscore.config import ScoreConfig
    from beamscore.io.arrow import from_numpy
    from beamscore.io.keep import cast_kept
    from beamscore.io.parquet_sink import ParquetSink
    from beamscore.model.runner import SignatureRunner
    from beamscore.pipelines.plan import plan_job
    from beamscore.transforms.validate import check_rows

    limit = job.get("parts_rows") or job["rows"]
    scratch = os.path.join(job["output"], "parts")

    def planned(fmt: str):
        pattern = os.path.join(job["data"], fmt, "*." + fmt)
        config = ScoreConfig(
            model=job["model"],
            signature=job["signature"],
            inputs=[pattern],
            output=scratch,
            keep=["id"],
            batch_size=job["batch_size"],
            format=fmt,
            overwrite=True,
        )
        return plan_job(config)

    def read(plan, unit) -> list:
        source = plan.source.with_dead_letters()
        tables = (t for t in source.read(unit, plan.read_columns, plan.batch_size) if t.num_rows)
        return [(t, check_rows(t, plan.bindings, False, unit.path)) for t in tables]

    cpu = time.process_time
    codecs = job["codecs"]
    spent = {"read parquet": 0.0, "read tfrecord": 0.0, "model": 0.0, **{f"write {c}": 0.0 for c in codecs}}
    plan = planned("parquet")
    fn = tf.saved_model.load(job["model"]).signatures[job["signature"]]
    runner = SignatureRunner(fn, plan.bindings, plan.outputs)
    sinks = {c: ParquetSink(os.path.join(scratch, c), compression=c) for c in codecs}
    rows = 0
    for unit in plan.units:
        if rows >= limit:
            break
        start = cpu()
        batches = read(plan, unit)
        spent["read parquet"] += cpu() - start
        if not rows:
            runner(batches[0][1].columns)  # warm-up, as R0's steady rate leaves out its first batch
        start = cpu()
        outputs = [runner(checked.columns) for _, checked in batches]
        spent["model"] += cpu() - start
        for codec, sink in sinks.items():
            start = cpu()
            writer = sink.open(unit, plan.file_metadata())
            for (table, _), out in zip(batches, outputs, strict=True):  # as RunSignatureFn._process_batch
                cols = {k: from_numpy(v) for k, v in out.items()}
                cols["id"] = cast_kept(table["id"], "id", plan.keep_types["id"], table.num_rows)
                writer.write(pa.table(cols))
            writer.close()
            spent[f"write {codec}"] += cpu() - start
        rows += sum(len(checked.good) for _, checked in batches)
    tf_plan, tf_rows = planned("tfrecord"), 0
    for unit in tf_plan.units:
        if tf_rows >= rows:
            break
        start = cpu()
        tf_rows += sum(len(checked.good) for _, checked in read(tf_plan, unit))
        spent["read tfrecord"] += cpu() - start
    shutil.rmtree(scratch, ignore_errors=True)
    per_row = {k: v * 1e6 / (tf_rows if k == "read tfrecord" else rows) for k, v in spent.items()}
    _EXTRA["parts"] = {"us_per_row": per_row, "rows": rows, "core": core}
    return rows


def _row_source(job: dict[str, Any], pipeline: Any, make: Callable[[int, np.ndarray], Any]) -> Any:
    """One element per row of the job's npz files, made by ``make(id, x_row)``."""
    import apache_beam as beam

    shape = job["input_shape"]

    def rows(path: str):
        with np.load(path) as f:
            ids, x = f["id"], _as_input(f["x"], shape)
        for i in range(len(x)):
            yield make(int(ids[i]), x[i])

    return pipeline | beam.Create(job["npz"]) | beam.FlatMap(rows)


def _count(job: dict[str, Any], scored: Any, per_batch: bool) -> None:
    """Count the rows scored (batches: their lengths) and check it when the pipeline ends."""
    import apache_beam as beam

    sizes = scored | beam.Map(len) if per_batch else scored | beam.Map(lambda _: 1)
    _ = sizes | beam.CombineGlobally(sum) | beam.Map(_expect, job["rows"])


def _expect(got: int, want: int) -> None:
    if got != want:
        raise SystemExit(f"scored {got:,} rows of {want:,}")


def _per_row_pipeline(
    job: dict[str, Any], make: Callable[[int, np.ndarray], Any], score: Any, batched: bool = True
) -> int:
    """Rows from :func:`_row_source` -> (``BatchElements`` when ``batched``) -> ``score``, counted."""
    import apache_beam as beam

    from beamscore.pipelines.runners import make_runner

    _time_signature_calls()
    b = job["batch_size"]
    options = beam.options.pipeline_options.PipelineOptions([])
    with beam.Pipeline(runner=make_runner(options), options=options) as pipeline:
        rows = _row_source(job, pipeline, make)
        if batched:
            rows = rows | beam.BatchElements(min_batch_size=b, max_batch_size=b)
        _count(job, rows | score, per_batch=batched)
    return job["rows"]


def d0(job: dict[str, Any]) -> int:
    """The floor of DB and BH: the same rows made, batched by ``BatchElements`` and counted, no model."""
    import apache_beam as beam

    return _per_row_pipeline(job, lambda i, x: {"id": i, "x": x}, beam.Map(_batch_done))


def _batch_done(batch: Any) -> Any:
    _first_batch_done()
    return batch


def d(job: dict[str, Any]) -> int:
    """Row dicts, one per element -> ``beamscore.RunSignature(per_row=True)``."""
    import beamscore

    run = beamscore.RunSignature(
        job["model"], job["signature"], outputs=job["outputs"], keep=["id"], per_row=True, batch_size=job["batch_size"]
    )
    return _per_row_pipeline(job, lambda i, x: {"id": i, "x": x}, run, batched=False)


def dn(job: dict[str, Any]) -> int:
    """D without ``PerRowFn``'s ``gc.freeze`` after the model load (what the freeze is worth)."""
    from beamscore.transforms.per_row import PerRowFn

    PerRowFn.freeze_gc = False  # the in-process runner uses this class
    return d(job)


def db(job: dict[str, Any]) -> int:
    """Row dicts batched by ``BatchElements`` -> ``beamscore.RunSignature`` (lists of dicts)."""
    import beamscore

    run = beamscore.RunSignature(job["model"], job["signature"], outputs=job["outputs"], keep=["id"])
    return _per_row_pipeline(job, lambda i, x: {"id": i, "x": x}, run)


def e(job: dict[str, Any]) -> int:
    """Serialized Examples (read from the job's TFRecord files), one per element ->
    ``beamscore.RunSignature(per_row=True)``."""
    import beamscore

    run = beamscore.RunSignature(
        job["model"], job["signature"], outputs=job["outputs"], per_row=True, batch_size=job["batch_size"]
    )
    return _records_pipeline(job, run, batched=False)


def eb(job: dict[str, Any]) -> int:
    """Serialized Examples batched by ``BatchElements`` -> ``beamscore.RunSignature`` (lists)."""
    import beamscore

    run = beamscore.RunSignature(job["model"], job["signature"], outputs=job["outputs"])
    return _records_pipeline(job, run, batched=True)


def _records_pipeline(job: dict[str, Any], run: Any, batched: bool) -> int:
    import apache_beam as beam

    from beamscore.io.tfrecord import read_records
    from beamscore.pipelines.runners import make_runner

    def records(path: str):
        with open(path, "rb") as f:
            for item in read_records(f, path, 4096):
                yield from item[0]

    _time_signature_calls()
    b = job["batch_size"]
    files = sorted(glob.glob(os.path.join(job["data"], "tfrecord", "*.tfrecord")))
    options = beam.options.pipeline_options.PipelineOptions([])
    with beam.Pipeline(runner=make_runner(options), options=options) as pipeline:
        rows = pipeline | beam.Create(files) | beam.FlatMap(records)
        if batched:
            rows = rows | beam.BatchElements(min_batch_size=b, max_batch_size=b)
        _count(job, rows | run, per_batch=batched)
    return job["rows"]


def bh(job: dict[str, Any]) -> int:
    """Beam's ``TFModelHandlerNumpy`` on the same rows (``load_model`` overridden for Keras 3)."""
    import apache_beam as beam
    import tensorflow as tf
    from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    from beamscore.pipelines.runners import make_runner

    name, key = job["signature"], job["input"]

    class SavedModelHandler(TFModelHandlerNumpy):
        def load_model(self):  # Keras 3 cannot load a plain SavedModel with tf.keras.models.load_model
            return tf.saved_model.load(self._model_uri)

    def inference_fn(model, batch, inference_args, model_id=None):
        out = model.signatures[name](**{key: tf.constant(np.stack(batch))})
        outs = {k: v.numpy() for k, v in out.items()}
        _first_batch_done()
        return [PredictionResult(x, {k: v[i] for k, v in outs.items()}, model_id) for i, x in enumerate(batch)]

    b = job["batch_size"]
    handler = SavedModelHandler(job["model"], inference_fn=inference_fn, min_batch_size=b, max_batch_size=b)
    options = beam.options.pipeline_options.PipelineOptions([])
    with beam.Pipeline(runner=make_runner(options), options=options) as pipeline:
        scored = _row_source(job, pipeline, lambda i, x: (i, x)) | RunInference(KeyedModelHandler(handler))
        _count(job, scored, per_batch=False)
    return job["rows"]


PATHS: dict[str, Callable[[dict[str, Any]], int]] = {
    "R0": r0,
    "R1": r1,
    "P": p,
    "T": t,
    "H": h,
    "B1": b1,
    "B2": b2,
    "parts": parts,
    "D0": d0,
    "D": d,
    "E": e,
    "DN": dn,
    "DB": db,
    "EB": eb,
    "BH": bh,
}


#: paths that write no files (they count the rows they scored)
NO_FILES = {"R0", "parts", "D0", "D", "DN", "E", "DB", "EB", "BH"}


def main(argv: list[str]) -> int:
    """``python -m benchmarks.paths JOB_JSON REPORT_PATH``: run one path, write its report."""
    job = json.loads(argv[0])
    rows = PATHS[job["path"]](job)
    end = time.time()
    _EXTRA["end_cpu"] = time.process_time()
    if "output" in job and not glob.glob(os.path.join(job["output"], "*")) and job["path"] not in NO_FILES:
        raise SystemExit(f"{job['path']} wrote nothing to {job['output']}")
    with open(argv[1], "w") as f:
        report = {"rows": rows, "first": _FIRST[0] if _FIRST else end, "end": end, "main": _MAIN}
        json.dump({**report, "spans": _SPANS, **_EXTRA}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
