"""The slow job the Dask tests run (``test_dask.py``, ``test_dask_faults.py``): the ``slow``
model over 700 rows in 28 units of 25 rows, batches of 5, a few seconds of work on two
workers; how to start it and what its result must be."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
from conftest import read_output
from runner_jobs import worker_env
from scores import assert_scores_close

__all__ = ["assert_slow_result", "slow_job", "start_slow_job"]


def slow_job(root) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """``(args, ids, expected)``: the job's arguments less ``--output``, its ids and the
    direct call's outputs; the model and the data are written under ``root``."""
    import builders
    import job_models

    model = job_models.build_all(str(root / "models"))["slow"]
    _paths, ids, x = builders.write_parquet_shards(str(root / "data"), rows=700, shards=2, row_group_size=25)
    args = ["--model", model, "--input", str(root / "data") + "/*.parquet", "--keep", "id"]
    args += ["--rows-per-unit", "25", "--batch-size", "5"]
    return args, ids, job_models.reference(model, x)


def assert_slow_result(out, ids, expected) -> None:
    table = read_output(str(out))
    assert table["id"].to_pylist() == ids.tolist()
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), expected["y"])
    assert_scores_close(table["s"].to_numpy(), expected["s"])
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"] == len(ids)
    assert manifest["rows_failed"] == 0 and manifest["units"] == 28 and len(manifest["outputs"]) == 28


def start_slow_job(args: list[str], out, cluster) -> tuple[subprocess.Popen, object]:
    """Start ``beamscore score ARGS`` on the cluster; return it once 2 units have receipts."""
    job = subprocess.Popen(
        [sys.executable, "-m", "beamscore", "score", *args],
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    receipts = out / "_units"
    deadline = time.monotonic() + 300  # generous: a loaded machine starts the workers slowly
    while not (receipts.exists() and len(list(receipts.glob("part-*.json"))) >= 2):
        assert job.poll() is None, job.communicate()[1][-3000:]
        assert time.monotonic() < deadline, cluster.log_tail()
        time.sleep(0.05)
    return job, receipts
