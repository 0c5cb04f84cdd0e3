"""A user's own Beam pipeline on DaskRunner, against a real scheduler and 2 workers (as the
CLI's Dask tests run): ``RunSignature(...).with_exception_handling()`` gives the scored rows
on its main output and the bad ones on the dead-letter output. Beam 2.77's DaskRunner merges
a multi-output ParDo's tagged outputs, which sent every scored element to the dead letters
and left the main output empty; the transform now splits one output of tagged pairs. (The
runner also computes only the pipeline's last step, so the two branches end in one Flatten.)"""

from __future__ import annotations

import glob
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call
from dask_cluster import dask_cluster
from scores import assert_scores_close

import beamscore

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask-user")
    with dask_cluster(root, workers=2, env={"BEAMSCORE_CACHE": str(root / "cache")}) as running:
        yield running


def _inputs(directory) -> tuple[list[str], np.ndarray]:
    """Two Parquet files of 6 rows; rows 2 and 9 (file 0 row 2, file 1 row 3) are short."""
    x = np.random.default_rng(4).normal(size=(12, 4)).astype(np.float32)
    files = []
    for i in range(2):
        lists = [row.tolist() for row in x[6 * i : 6 * i + 6]]
        lists[2 if i == 0 else 3] = lists[0][:3]
        path = os.path.join(directory, f"part-{i}.parquet")
        table = pa.table({"id": np.arange(6 * i, 6 * i + 6), "x": pa.array(lists, pa.list_(pa.float32()))})
        pq.write_table(table, path)
        files.append(path)
    return files, x


def test_with_exception_handling_on_dask_keeps_scored_and_dead_letters_apart(models, cluster, tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner

    files, x = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    score = beamscore.RunSignature(models["two_sig"], keep=["id"], outputs=["scores"]).with_exception_handling()
    options = PipelineOptions([f"--dask_client_address={cluster.address}"])
    with beam.Pipeline(runner=DaskRunner(), options=options) as p:
        scored, dead = (
            p
            | beam.Create(files)
            | "Read" >> beam.Map(lambda path: (os.path.basename(path), pq.read_table(path)))
            | score
        )
        written = scored | "Write" >> beam.MapTuple(
            lambda name, table, d=str(out): pq.write_table(table, f"{d}/{name}")
        )
        errors = dead | "WriteDead" >> beam.MapTuple(
            lambda name, table, d=str(out): pq.write_table(table, f"{d}/{name}.errors")
        )
        # DaskRunner computes only the pipeline's last step: one Flatten joins both branches
        _ = (written, errors) | beam.Flatten()
    assert glob.glob(str(out / "*.parquet")), (os.listdir(out), cluster.log_tail())
    written = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(str(out / "*.parquet")))]).sort_by("id")
    errors = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(str(out / "*.errors")))])
    good = [i for i in range(12) if i not in (2, 9)]
    assert written["id"].to_pylist() == good, cluster.log_tail()
    assert sorted(errors["row"].to_pylist()) == [2, 3] and set(errors["stage"].to_pylist()) == {"validate"}
    assert_scores_close(written["scores"], direct_call(models["two_sig"], "serving_default", x=x[good])["scores"])
