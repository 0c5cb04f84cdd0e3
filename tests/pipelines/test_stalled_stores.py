"""A stalled object store ends the job within the documented time, with one line.

Real ``beamscore score`` processes against loopback servers that misbehave: a blackhole
(accepts, reads, never answers) as the S3 endpoint and as the GCS emulator host, and a proxy
in front of a real moto S3 server that never answers PUTs (no ``100 Continue``, no reply),
for every PUT (the claim: nothing written yet, exit 2) or only for part files (after the
claim: exit 3), also in a ``multi_processing`` worker process. Each must end within twice
``--store-timeout`` plus start-up, naming the endpoint and the operation. (Exit 3 for a
crashed job is the exit-code mapping of the scheduled-scoring work: ``JobFailed``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import fsspec
import pytest
from s3_server import s3_env, s3_server
from servers import blackhole_server, holding_proxy

TIMEOUT_S = 5
#: a blackhole answers nothing, so no healthy call has to fit in the timeout: a shorter one
BLACKHOLE_TIMEOUT_S = 2
#: a job's own start-up (TensorFlow, Beam, planning) on a slow shared machine
STARTUP_S = 120


@pytest.fixture(scope="module")
def upstream():
    """A real moto S3 server for the tests that put a holding proxy in front of it (each
    test its own bucket)."""
    with s3_server() as url:
        yield url


def run_job(
    models, shards, out: str, env: dict[str, str], *extra: str, timeout: float = TIMEOUT_S
) -> tuple[int, str, float]:
    """Exit code, stderr and seconds of one job with ``--store-timeout`` ``timeout``."""
    args = ["score", "--model", models["two_sig"], "--input", shards[0][0], "--output", out, "--keep", "id"]
    args += ["--no-progress", "--store-timeout", str(timeout), *extra]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "beamscore", *args],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        capture_output=True,
        timeout=STARTUP_S + 4 * timeout + 60,
    )
    return done.returncode, done.stderr.decode(), time.monotonic() - start


def test_a_blackhole_s3_endpoint_ends_the_job(models, shards):
    with blackhole_server() as url:
        code, err, seconds = run_job(models, shards, "s3://stalled/out", s3_env(url), timeout=BLACKHOLE_TIMEOUT_S)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"beamscore: error: the S3 endpoint {url} (from FSSPEC_S3_ENDPOINT_URL) did not answer ")
    assert "s3://stalled/out" in line and f"within {BLACKHOLE_TIMEOUT_S} s (--store-timeout)" in line
    assert seconds < STARTUP_S + 2 * BLACKHOLE_TIMEOUT_S


def test_a_blackhole_gcs_emulator_ends_the_job(models, shards):
    with blackhole_server() as url:
        env = {"STORAGE_EMULATOR_HOST": url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "FSSPEC_GCS_TOKEN": "anon"}
        code, err, seconds = run_job(models, shards, "gs://stalled/out", env, timeout=BLACKHOLE_TIMEOUT_S)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"beamscore: error: the GCS endpoint {url} (from STORAGE_EMULATOR_HOST) did not answer ")
    assert "gs://stalled/out" in line or "gcs://stalled/out" in line
    assert f"within {BLACKHOLE_TIMEOUT_S} s (--store-timeout)" in line
    assert seconds < STARTUP_S + 2 * BLACKHOLE_TIMEOUT_S


@pytest.mark.parametrize(("hold", "code"), [("", 2), ("part-", 3)])
def test_a_store_that_never_answers_a_put_ends_the_job(models, shards, upstream, hold, code):
    bucket = f"held{code}"
    with holding_proxy(upstream, hold) as url:
        env = s3_env(url)
        fs = fsspec.filesystem("s3", endpoint_url=upstream, key="testing", secret="testing")
        fs.mkdir(bucket)
        got, err, seconds = run_job(models, shards, f"s3://{bucket}/out", env)
        left = fs.ls(f"{bucket}/out") if fs.exists(f"{bucket}/out") else []
    assert got == code, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"beamscore: error: the S3 endpoint {url} (from FSSPEC_S3_ENDPOINT_URL) did not answer ")
    assert f"within {TIMEOUT_S} s (--store-timeout)" in line
    if code == 3:
        assert "part-" in line and "rerun with --resume" in line
        assert not any(p.endswith("_manifest.json") for p in left)
    else:
        assert "_claim.json" in line and left == []
    assert seconds < STARTUP_S + 2 * TIMEOUT_S + 10


def test_a_worker_process_stalled_on_a_put_ends_the_job(models, shards, upstream):
    """``multi_processing``: the worker's own watch ends it (exit 3, its line in the worker
    log); the launcher fails the job with that line, and nothing else on stderr."""
    multi = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
    with holding_proxy(upstream, "part-") as url:
        fsspec.filesystem("s3", endpoint_url=upstream, key="testing", secret="testing").mkdir("held-multi")
        got, err, seconds = run_job(models, shards, "s3://held-multi/out", s3_env(url), *multi)
    assert got == 3, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"beamscore: error: the S3 endpoint {url} (from FSSPEC_S3_ENDPOINT_URL) did not answer ")
    assert "put_object s3://held-multi/out/_temporary/part-" in line and "(the worker processes' log: " in line
    assert seconds < STARTUP_S + 2 * TIMEOUT_S + 30
