"""Planning many small files on real object-store servers: the GCS emulator and moto's S3.

Two hundred Parquet shards of three rows (row groups of two, so two units each) go into a
bucket. Planning on the launcher (footers fetched concurrently with ``cat_ranges``) must give
the units that opening each file in turn gives; a job planned on the launcher and one
planned on the workers (``--plan-on-workers``) must give the same units, manifests and
outputs, and every scored row must equal a direct signature call.
"""

from __future__ import annotations

import io
import json
import os

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gcs_emulator import gcs_emulator
from s3_server import s3_store
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.config import ScoreConfig
from beamscore.io.parquet import ParquetSource
from beamscore.pipelines.plan import plan_job
from beamscore.transforms.read import plan_units

FILES, ROWS = 200, 3
BUCKET = "beamscore-plan"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return job_models.build_all(str(tmp_path_factory.mktemp("models")))["raising"]


@pytest.fixture(scope="module", params=["gs", "s3"])
def store(request, tmp_path_factory):
    """``(fs, "gs://bucket")`` or ``(fs, "s3://bucket")`` on a server process started here."""
    workdir = tmp_path_factory.mktemp(request.param)
    if request.param == "gs":
        # the emulator serves many connections at once slowly (200 tails: 0.1 s one at a time,
        # 15 s 256 at a time), unlike GCS: plan 8 at a time here
        with gcs_emulator(workdir, BUCKET, {"BEAMSCORE_PLAN_CONCURRENCY": "8"}) as fs:
            yield fs, f"gs://{BUCKET}"
        return
    with s3_store(workdir):
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        yield fs, f"s3://{BUCKET}"


def _upload_shards(fs, prefix: str) -> np.ndarray:
    x = np.random.default_rng(15).normal(size=(FILES * ROWS, 4)).astype(np.float32)
    for i in range(FILES):
        rows = slice(i * ROWS, (i + 1) * ROWS)
        table = pa.table(
            {"id": np.arange(FILES * ROWS)[rows], "x": pa.FixedSizeListArray.from_arrays(pa.array(x[rows].ravel()), 4)}
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=2)
        fs.pipe_file(f"{prefix}/part-{i:05d}.parquet", buf.getvalue())  # one by one: see the gs fixture
    return x


def test_many_small_files_plan_alike_on_the_launcher_and_on_the_workers(store, model, tmp_path, capsys):
    fs, bucket = store
    inputs = f"{bucket}/many"
    x = _upload_shards(fs, inputs)
    config = ScoreConfig(model=model, inputs=[f"{inputs}/*.parquet"], output=str(tmp_path / "plan"), rows_per_unit=2)
    plan = plan_job(config)
    assert len(plan.files) == FILES and all(f.size and f.version for f in plan.facts)
    assert plan.units == plan_units(ParquetSource(rows_per_unit=2), plan.files)  # one file after another
    assert len(plan.units) == 2 * FILES

    args = ["score", "--model", model, "--input", f"{inputs}/*.parquet", "--keep", "id", "--rows-per-unit", "2"]
    manifests = {}
    for mode, extra in (("launcher", []), ("workers", ["--plan-on-workers"])):
        out = tmp_path / mode
        assert main([*args, "--output", str(out), *extra]) == 0, capsys.readouterr().err
        manifests[mode] = json.loads((out / "_manifest.json").read_text())
    a, b = manifests["launcher"], manifests["workers"]
    assert (a["planned_on"], b["planned_on"]) == ("launcher", "workers")
    for m in (a, b):
        assert (m["units"], m["units_planned"]) == (2 * FILES, 2 * FILES)
        assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (FILES * ROWS, FILES * ROWS, 0)
    assert [os.path.basename(f) for f in a["outputs"]] == [os.path.basename(f) for f in b["outputs"]]
    assert [u.name for u in plan.units] == [os.path.basename(f).removesuffix(".parquet") for f in a["outputs"]]
    receipts = sorted((tmp_path / "workers" / "_units" / "_files").iterdir())
    assert len(receipts) == FILES
    assert json.loads(receipts[7].read_text())["units"] == [[u.name, u.rows] for u in plan.units[14:16]]

    tables = {mode: pa.concat_tables([pq.read_table(f) for f in manifests[mode]["outputs"]]) for mode in manifests}
    assert tables["launcher"].equals(tables["workers"])
    assert tables["launcher"]["id"].to_pylist() == list(range(FILES * ROWS))
    expected = job_models.reference(model, x)
    assert_scores_close(np.stack(tables["launcher"]["y"].to_numpy(zero_copy_only=False)), expected["y"])
    assert_scores_close(tables["launcher"]["s"].to_numpy(), expected["s"])
