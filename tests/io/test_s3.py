"""``s3://`` for real: moto's S3 server process on loopback, s3fs pointed at it, and whole
``beamscore score`` jobs whose model, inputs and output all live in the bucket.

Like ``test_gcs_emulator.py`` for ``gs://``, but a fresh ``python -m beamscore`` process (the
CLI as a user runs it, on Beam's in-process runner) finds the server only through the
environment a user sets: ``FSSPEC_S3_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` (one format's job, the killed job, the
missing credentials); the other jobs run in this process (``main``), pointed at the server
the same way, which spares a TensorFlow start-up each. Covered: a remote SavedModel copied into
the model cache, glob expansion on a bucket, every source's reads (Parquet row groups, GZIP
TFRecord framing, npz zip members, npy seek+read), the sink's copy + delete commits, the
manifest, and a job SIGKILLed on S3 then finished with ``--resume``.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import builders
import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call, read_output
from kill_jobs import kill_midway
from runner_jobs import worker_env
from s3_server import s3_env, s3_store
from scores import assert_scores_close

from beamscore.cli import main

pytestmark = pytest.mark.slow  # a server process and beamscore processes

BUCKET = "beamscore-s3"
FORMATS = ["parquet", "tfrecord.gz", "npz", "npy"]
UNITS = 40  # of 40 rows, for the kill/resume job


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """``(endpoint, fs)``: a running moto server, an s3fs filesystem on it, the bucket made;
    this process and its children point at it, with their own model cache."""
    cache = str(tmp_path_factory.mktemp("model-cache"))
    with s3_store(), pytest.MonkeyPatch.context() as mp:
        import s3fs

        mp.setenv("BEAMSCORE_CACHE", cache)
        endpoint = os.environ["FSSPEC_S3_ENDPOINT_URL"]
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
        fs.mkdir(BUCKET)
        yield endpoint, fs


def _env(endpoint: str) -> dict[str, str]:
    """What a user's shell would hold: the S3 variables and nothing of this test process's fsspec."""
    return {**worker_env(), **s3_env(endpoint), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _parts(fs, out: str) -> list[str]:
    return sorted(p for p in fs.ls(out, detail=False, refresh=True) if p.rsplit("/", 1)[-1].startswith("part-"))


def _manifest(fs, out: str) -> dict:
    fs.invalidate_cache()  # written by another process since this one last listed
    m = json.loads(fs.cat(f"{out}/_manifest.json"))
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    return m


def test_score_every_format_with_model_inputs_and_output_on_s3(s3, models, rows, write_rows, tmp_path, capsys):
    endpoint, fs = s3
    model = f"s3://{BUCKET}/models/two_sig"
    fs.put(models["two_sig"], model, recursive=True)
    jobs = {}
    for fmt in FORMATS:
        inputs = f"s3://{BUCKET}/in-{fmt}"
        for i, (a, b) in enumerate([(0, 170), (170, 300)]):
            local = write_rows(fmt, str(tmp_path / fmt / f"shard-{i:02d}"), {k: v[a:b] for k, v in rows.items()})
            fs.put(local, f"{inputs}/{os.path.basename(local)}")
        keep = [] if fmt == "npy" else ["--keep", "id"]
        args = ["score", "--model", model, "--input", f"{inputs}/*", "--output", f"s3://{BUCKET}/out-{fmt}", *keep]
        jobs[fmt] = [*args, "--batch-size", "64"]
    first, *others = FORMATS  # the first as a user runs it, while the others run in this process
    user = subprocess.Popen(
        [sys.executable, "-m", "beamscore", *jobs[first]],
        env=_env(endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    results = {}
    for fmt in others:
        code = main(jobs[fmt])
        results[fmt] = (code, capsys.readouterr())
    streams = user.communicate(timeout=300)
    results[first] = (user.returncode, streams)

    expected = direct_call(models["two_sig"], "serving_default", x=rows["x"])
    for fmt, (code, (_out, err)) in results.items():
        assert code == 0, f"{fmt}: {err[-3000:]}"
        out = f"s3://{BUCKET}/out-{fmt}"
        manifest = _manifest(fs, out)
        assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_failed"]) == (300, 300, 0), fmt
        assert manifest["model"]["path"] == model
        parts = _parts(fs, out)
        assert [p.rsplit("/", 1)[-1] for p in parts] == ["part-00000-00000.parquet", "part-00001-00000.parquet"]
        assert not [p for p in fs.find(out) if "_temporary" in p], fmt
        table = pa.concat_tables([pq.read_table(io.BytesIO(fs.cat(p))) for p in parts])
        if fmt != "npy":
            assert table["id"].to_numpy().tolist() == rows["id"].tolist(), fmt
        scores = np.stack(table["scores"].to_numpy(zero_copy_only=False))
        assert_scores_close(scores, expected["scores"], err_msg=fmt)
        assert_scores_close(table["label"].to_numpy(), expected["label"], err_msg=fmt)


def test_killed_job_on_s3_then_resume_gives_the_uninterrupted_result(s3, tmp_path):
    endpoint, fs = s3
    jm = job_models.build_all(str(tmp_path / "models"))
    paths, ids, x = builders.write_parquet_shards(str(tmp_path / "data"), rows=40 * UNITS, shards=1, row_group_size=40)
    model, data = f"s3://{BUCKET}/resume/model", f"s3://{BUCKET}/resume/in.parquet"
    fs.put(jm["slow"], model, recursive=True)
    fs.put(paths[0], data)

    def job(out: str) -> list[str]:
        return ["score", "--model", model, "--input", data, "--output", out, "--keep", "id", "--rows-per-unit", "40"]

    reference = tmp_path / "reference"
    assert main(job(str(reference))) == 0  # uninterrupted, from the same bucket

    out = f"s3://{BUCKET}/resume/out"

    def done() -> int:
        try:
            return len([p for p in fs.ls(f"{out}/_units", refresh=True) if p.rsplit("/", 1)[-1].startswith("part-")])
        except FileNotFoundError:
            return 0

    kill_midway(job(out), _env(endpoint), done, at_least=3)
    before = done()
    assert 3 <= before < UNITS
    assert not fs.exists(f"{out}/_manifest.json")  # killed: visibly unfinished

    assert main([*job(out), "--resume"]) == 0
    m = _manifest(fs, out)
    assert m["units"] == UNITS and m["units_resumed"] >= before
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (len(ids), len(ids), 0)
    ref = json.loads((reference / "_manifest.json").read_text())
    assert [os.path.basename(f) for f in m["outputs"]] == [os.path.basename(f) for f in ref["outputs"]]
    table = pa.concat_tables([pq.read_table(io.BytesIO(fs.cat(p))) for p in _parts(fs, out)])
    assert table.equals(read_output(str(reference)))
    assert table["id"].to_pylist() == ids.tolist()
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), job_models.reference(jm["slow"], x)["y"])
    assert not [p for p in fs.find(out) if "_temporary" in p]


def test_no_credentials_is_one_line_exit_2(s3):
    """No AWS keys anywhere botocore looks: one line that says which variables to set."""
    endpoint, _fs = s3
    env = {k: v for k, v in _env(endpoint).items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent", AWS_EC2_METADATA_DISABLED="true"
    )
    done = subprocess.run(
        [sys.executable, "-m", "beamscore", "show", f"s3://{BUCKET}/models/any"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("beamscore: error: no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
