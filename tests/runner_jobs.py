"""The job the runner tests run on each engine, how they start it, and how they compare it.

``job_args``: the two-signature model over the 700-row ``shards`` of ``conftest``, units of
128 rows (6 units), batches of 50. ``assert_same_result``: the output equals a reference
run's and a direct signature call, and the manifest accounts for every row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping

import numpy as np
from cli_runs import run_cli
from conftest import direct_call, read_output
from scores import assert_same_bytes, assert_scores_close

__all__ = ["assert_same_result", "beamscore_cli", "job_args", "run_in_process", "worker_env"]

VENV_BIN = os.path.dirname(sys.executable)


def job_args(models, shards, out) -> list[str]:
    paths, _ids, _x = shards
    return [
        "--model",
        models["two_sig"],
        "--input",
        os.path.dirname(paths[0]) + "/*.parquet",
        "--output",
        str(out),
        "--keep",
        "id",
        "--rows-per-unit",
        "128",
        "--batch-size",
        "50",
    ]


def run_in_process(models, shards, tmp_path_factory):
    """The reference result: the job on the in-process runner, read back as one table."""
    out = tmp_path_factory.mktemp("in_process") / "out"
    done = run_cli("score", *job_args(models, shards, out))
    assert done.code == 0, done.stderr
    return read_output(str(out))


def worker_env() -> dict[str, str]:
    """The environment of every process we start: the venv's python first on PATH."""
    return {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "2"}


def beamscore_cli(
    *args: str, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m beamscore ARGS`` in a fresh process, as a user runs it (``env`` added to its environment)."""
    return subprocess.run(
        [sys.executable, "-m", "beamscore", *args],
        env={**worker_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_same_result(out, reference, models, shards) -> None:
    _paths, ids, x = shards
    table = read_output(str(out))
    assert table.column_names == reference.column_names
    assert table["id"].to_pylist() == ids.tolist() == reference["id"].to_pylist()
    scores = np.stack(table["scores"].to_numpy(zero_copy_only=False))
    assert_same_bytes(scores, np.stack(reference["scores"].to_numpy(zero_copy_only=False)))
    assert_same_bytes(table["label"].to_numpy(), reference["label"].to_numpy())
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(scores, expected["scores"])
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == len(ids) and manifest["rows_failed"] == 0
    assert manifest["units"] == 6 and len(manifest["outputs"]) == 6
