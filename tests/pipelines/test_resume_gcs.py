"""Commit, dead letters and ``--resume`` on a bucket: a real GCS emulator process over loopback.

gcsfs has no rename (``mv`` is copy + delete) and lists through HTTP, so the receipts, the
temp-then-rename commits, ``{date}`` and the resume scan are run against
``gcp-storage-emulator`` here, not only on a local disk.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import fsspec
import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.registry import _registry as fsspec_classes

from beamscore.cli import main

BUCKET = "beamscore-resume"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """An emulator process and a gcsfs filesystem on it, with the bucket made."""
    port = _free_port()
    script = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
    command = [script] if os.path.exists(script) else [shutil.which("gcp-storage-emulator") or script]
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with pytest.MonkeyPatch.context() as mp, open(log, "wb") as log_file:
        mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        mp.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        mp.setitem(fsspec.config.conf, "gcs", {"token": "anon"})
        import gcsfs.core

        for protocol in ("gs", "gcs"):
            mp.setitem(fsspec_classes, protocol, gcsfs.core.GCSFileSystem)
        process = subprocess.Popen(
            [*command, "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the GCS emulator did not start: {log.read_text()}") from None
                    time.sleep(0.2)
            gcsfs.core.GCSFileSystem.clear_instance_cache()
            fs = gcsfs.core.GCSFileSystem(token="anon")
            fs.mkdir(BUCKET)
            yield fs
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            gcsfs.core.GCSFileSystem.clear_instance_cache()


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
    np.testing.assert_allclose(y, job_models.reference(jm["raising"], x[good])["y"], atol=1e-6)
