"""Commit, dead letters and ``--resume`` on a bucket: a real GCS emulator process over loopback.

gcsfs has no rename (``mv`` is copy + delete) and lists through HTTP, so the receipts, the
temp-then-rename commits, ``{date}`` and the resume scan are run against
``gcp-storage-emulator`` here, not only on a local disk.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gcs_emulator import gcs_emulator
from scores import assert_scores_close

from beamscore.cli import main

BUCKET = "beamscore-resume"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """An emulator process and a gcsfs filesystem on it, with the bucket made."""
    with gcs_emulator(tmp_path_factory.mktemp("gcs"), BUCKET) as fs:
        yield fs


def test_dead_letters_and_resume_on_a_bucket(gcs, tmp_path, capsys):
    jm = job_models.build_all(str(tmp_path / "models"))
    x = np.random.default_rng(9).normal(size=(160, 4)).astype(np.float32)
    x[70, 0] = 300.0  # the model raises on this row (unit 1)
    ids = np.arange(160, dtype=np.int64)
    data = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)}),
        data,
        row_group_size=40,
    )
    template = f"gs://{BUCKET}/scores/{{date}}"
    out = f"gs://{BUCKET}/scores/{dt.datetime.now(dt.UTC):%Y-%m-%d}"
    args = ["score", "--model", jm["raising"], "--input", str(data), "--output", template]
    args += ["--output-format", "npy", "--keep", "id", "--rows-per-unit", "40", "--max-failed-rows", "1"]
    assert main(args) == 0, capsys.readouterr().err
    first = json.loads(gcs.cat(f"{out}/_manifest.json"))
    assert (first["rows_in"], first["rows_out"], first["rows_failed"], first["units"]) == (160, 159, 1, 4)

    # as if killed: no manifest, unit 1 (the one with the dead letter) and unit 3 unfinished
    gcs.rm(f"{out}/_manifest.json")
    gcs.rm(f"{out}/_units/part-00000-00001.json")
    gcs.rm(f"{out}/y/part-00000-00003.npy")
    assert main(args) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    m = json.loads(gcs.cat(f"{out}/_manifest.json"))
    assert (m["rows_in"], m["rows_out"], m["rows_failed"], m["units"], m["units_resumed"]) == (160, 159, 1, 4, 2)
    assert m["outputs"] == first["outputs"] and m["errors"] == first["errors"]
    assert not [p for p in gcs.find(out) if "_temporary" in p]
    (bad,) = pq.read_table(io.BytesIO(gcs.cat(m["errors"][0]))).to_pylist()
    assert (bad["row"], bad["stage"]) == (70, "model")
    y = np.concatenate([np.load(io.BytesIO(gcs.cat(f"{out}/y/part-00000-0000{u}.npy"))) for u in range(4)])
    got_ids = np.concatenate([np.load(io.BytesIO(gcs.cat(f"{out}/id/part-00000-0000{u}.npy"))) for u in range(4)])
    good = ids != 70
    assert got_ids.tolist() == ids[good].tolist()
    assert_scores_close(y, job_models.reference(jm["raising"], x[good])["y"])
