"""``gs://`` for real: a GCS emulator process on loopback, gcsfs pointed at it, and a full
``beamscore score`` whose model, inputs and output all live in the emulated bucket.

The session starts ``gcp-storage-emulator start --in-memory`` on a free 127.0.0.1 port and
sets ``STORAGE_EMULATOR_HOST``; gcsfs talks HTTP to it with anonymous credentials. Covered:
``inspect`` of a remote SavedModel, its copy into the local model cache (keyed by
fingerprint) before the load, glob expansion of remote inputs, every source's reads
(Parquet row groups, GZIP TFRecord framing, zip members of npz, seek+read slices of npy),
the Parquet sink's temp-then-rename on a bucket and ``_manifest.json`` written last.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call
from gcs_emulator import gcs_emulator
from scores import assert_scores_close

from beamscore.cli import main

BUCKET = "beamscore-it"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A running emulator and a gcsfs filesystem on it; the bucket ``beamscore-it`` exists."""
    cache = str(tmp_path_factory.mktemp("model-cache"))
    with gcs_emulator(tmp_path_factory.mktemp("gcs"), BUCKET, {"BEAMSCORE_CACHE": cache}) as fs:
        yield fs


@pytest.fixture(scope="module")
def remote_model(gcs, models) -> str:
    url = f"gs://{BUCKET}/models/two_sig"
    gcs.put(models["two_sig"], url, recursive=True)
    return url


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord.gz", "npz", "npy"])
def test_score_with_model_inputs_and_output_on_gs(fmt, gcs, remote_model, models, rows, write_rows, tmp_path, capsys):
    local = [
        write_rows(fmt, str(tmp_path / f"shard-{i:02d}"), {k: v[a:b] for k, v in rows.items()})
        for i, (a, b) in enumerate([(0, 170), (170, 300)])
    ]
    inputs = f"gs://{BUCKET}/in-{fmt}"
    for path in local:
        gcs.put(path, f"{inputs}/{os.path.basename(path)}")
    out = f"gs://{BUCKET}/out-{fmt}"
    keep = [] if fmt == "npy" else ["--keep", "id"]
    args = ["score", "--model", remote_model, "--input", f"{inputs}/*", "--output", out, "--batch-size", "64", *keep]
    code = main(args)
    assert code == 0, capsys.readouterr().err

    manifest = json.loads(gcs.cat(f"{out}/_manifest.json"))
    assert manifest["rows_in"] == manifest["rows_out"] == 300
    assert manifest["model"]["path"] == remote_model
    parts = sorted(p for p in gcs.ls(out, detail=False) if p.rsplit("/", 1)[-1].startswith("part-"))
    assert [p.rsplit("/", 1)[-1] for p in parts] == ["part-00000-00000.parquet", "part-00001-00000.parquet"]
    assert not [p for p in gcs.find(out) if "_temporary" in p]
    table = pa.concat_tables([pq.read_table(gcs.open(p, "rb")) for p in parts])
    expected = direct_call(models["two_sig"], "serving_default", x=rows["x"])
    if keep:
        assert table["id"].to_numpy().tolist() == rows["id"].tolist()
    assert_scores_close(np.stack(table["scores"].to_numpy(zero_copy_only=False)), expected["scores"])

    cache = os.environ["BEAMSCORE_CACHE"]
    copies = [d for d in os.listdir(cache) if os.path.exists(os.path.join(cache, d, "saved_model.pb"))]
    assert copies == [manifest["model"]["fingerprint"].replace("/", "_").replace(":", "_")]  # one copy, reused


def test_show_reads_a_remote_model(gcs, remote_model, capsys):
    assert main(["show", remote_model, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == remote_model
