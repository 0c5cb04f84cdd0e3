"""``RunSignature(per_row=True)`` on every documented runner: rows in = rows out + dead letters.

Beam 2.77's DaskRunner drops whatever a DoFn emits from ``finish_bundle``, where the per-row
step used to score each bundle's last partial batch (0 of 40 rows arrived with the default
batch size, 32 of 40 with ``batch_size=16``). The same pipeline of 40 row dicts (one of them
too short: a dead letter), keyed and not, with the default batch size and with 16, runs on
the in-process runner, two worker processes, the portable path (job service + external
worker pool) and a real Dask scheduler with two workers; each output element is written to
its own file by a ``Map`` (no step of ours or Beam's that flushes in ``finish_bundle``) and
read back. The scores equal a direct signature call.
"""

from __future__ import annotations

import pathlib
import pickle
import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import direct_call
from dask_cluster import dask_cluster
from portable import portable
from scores import assert_scores_close

import beamscore

ROWS = 40
BAD = 13  # the row whose x is too short


def _elements(keyed: bool) -> tuple[list, np.ndarray]:
    x = np.random.default_rng(32).normal(size=(ROWS, 4)).astype(np.float32)
    rows: list = [{"id": i, "x": x[i][:3] if i == BAD else x[i]} for i in range(ROWS)]
    if keyed:
        rows = [(f"k{i}", row) for i, row in enumerate(rows)]
    return rows, x


def _build(p, model: str, keyed: bool, batch_size: int | None, out: str) -> None:
    elements, _ = _elements(keyed)
    score = beamscore.RunSignature(
        model, keep=["id"], outputs=["scores"], per_row=True, batch_size=batch_size
    ).with_exception_handling()
    scored, dead = p | beam.Create(elements) | score
    # self-contained lambdas (workers cannot import this test module): one file per element
    written = scored | "Save" >> beam.Map(
        lambda v, d=out: pathlib.Path(d, f"scored-{uuid.uuid4().hex}").write_bytes(pickle.dumps(v))
    )
    errors = dead | "SaveDead" >> beam.Map(
        lambda v, d=out: pathlib.Path(d, f"dead-{uuid.uuid4().hex}").write_bytes(pickle.dumps(v))
    )
    _ = (written, errors) | beam.Flatten()  # DaskRunner computes only the pipeline's last step


def _check(out: pathlib.Path, model: str, keyed: bool, log: str = "") -> None:
    scored = [pickle.loads(f.read_bytes()) for f in sorted(out.glob("scored-*"))]
    dead = [pickle.loads(f.read_bytes()) for f in sorted(out.glob("dead-*"))]
    _, x = _elements(keyed)
    if keyed:
        assert all(key == f"k{row['id']}" for key, row in scored), scored[:2]
        assert [key for key, _ in dead] == [f"k{BAD}"]
        scored = [row for _, row in scored]
        dead = [table for _, table in dead]
    ids = sorted(row["id"] for row in scored)
    dead_rows = sum(table.num_rows for table in dead)
    # every row accounted for: in = out + dead letters
    assert len(ids) + dead_rows == ROWS, f"{len(ids)} scored + {dead_rows} dead of {ROWS}\n{log}"
    assert ids == [i for i in range(ROWS) if i != BAD]
    table = pa.concat_tables(dead)
    assert table["stage"].to_pylist() == ["validate"] and "4" in table["error"][0].as_py()
    # the key in the dead letter itself too, and the row's index within its element (itself)
    assert table["source"].to_pylist() == [f"row with key 'k{BAD}'" if keyed else "row"]
    assert table["row"].to_pylist() == [0] and table.schema == beamscore.DEAD_LETTER_SCHEMA
    by_id = {row["id"]: row["scores"] for row in scored}
    want = direct_call(model, "serving_default", x=x[ids])["scores"]
    assert_scores_close(np.stack([by_id[i] for i in ids]), want)


CASES = [pytest.param(False, None, id="default-batch"), pytest.param(True, 16, id="keyed-batch16")]


@pytest.mark.parametrize(("keyed", "batch_size"), CASES)
def test_in_process(models, tmp_path, keyed, batch_size):
    with beam.Pipeline(runner="FnApiRunner") as p:
        _build(p, models["two_sig"], keyed, batch_size, str(tmp_path))
    _check(tmp_path, models["two_sig"], keyed)


@pytest.mark.slow
def test_two_worker_processes(models, tmp_path):
    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    with beam.Pipeline(runner="DirectRunner", options=options) as p:
        _build(p, models["two_sig"], True, 16, str(tmp_path))
    _check(tmp_path, models["two_sig"], True)


@pytest.mark.distributed
def test_portable_loopback(models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with portable(tmp_path) as flags, beam.Pipeline(options=PipelineOptions(flags)) as p:
        _build(p, models["two_sig"], True, 16, str(out))
    _check(out, models["two_sig"], True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as running:
        yield running


@pytest.mark.distributed
@pytest.mark.parametrize(("keyed", "batch_size"), CASES)
def test_dask_two_workers(models, cluster, tmp_path, keyed, batch_size):
    from apache_beam.runners.dask.dask_runner import DaskRunner

    options = PipelineOptions([f"--dask_client_address={cluster.address}"])
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
        _build(p, models["two_sig"], keyed, batch_size, str(tmp_path))
    _check(tmp_path, models["two_sig"], keyed, cluster.log_tail())


def test_dask_runner_batches_rows_through_group_by_key_not_finish_bundle():
    """The step that would flush in ``finish_bundle`` is replaced on DaskRunner (found by the
    runner's class, without importing dask for other runners)."""
    from apache_beam.runners.dask.dask_runner import DaskRunner

    from beamscore.transforms.per_row import drops_finish_bundle

    assert drops_finish_bundle(beam.Pipeline(runner=DaskRunner())) == "DaskRunner"
    assert drops_finish_bundle(beam.Pipeline(runner="FnApiRunner")) is None
