"""One writer per output directory: two real ``beamscore score`` processes race for one output.

The race is staged exactly with the test-only hook ``BEAMSCORE_TEST_CLAIM_BARRIER=DIR``: each
launcher writes ``DIR/ready-PID`` right before it creates its claim and waits for
``DIR/go``; the test releases both at once. Exactly one job must win, the other is refused
with one line naming the holder, and the output holds the winner's parts only. The same race
runs on a local disk (``O_EXCL``) and on moto's S3 server (``If-None-Match: *``); on the GCS
emulator, which ignores ``ifGenerationMatch`` (see the claim module), a job that starts while
another holds the claim is refused.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from gcs_emulator import gcs_emulator
from s3_server import s3_store

from beamscore.cli import main


def job_args(model: str, data: str, out: str) -> list[str]:
    return ["score", "--model", model, "--input", data, "--output", out, "--keep", "id", "--no-progress"]


def start_job(args: list[str], barrier: Path, when: str = "before") -> subprocess.Popen:
    env = {**os.environ, "BEAMSCORE_TEST_CLAIM_BARRIER": f"{barrier}:{when}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "beamscore", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def wait_ready(barrier: Path, procs: list[subprocess.Popen]) -> None:
    """Wait until every process stands at the barrier."""
    deadline = time.monotonic() + 180
    while len(list(barrier.glob("ready-*"))) < len(procs):
        for p in procs:
            assert p.poll() is None, p.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the jobs never reached the claim"
        time.sleep(0.05)


def race(jobs: list[list[str]], barrier: Path) -> list[tuple[int, str, int]]:
    """Start the jobs, release them together at the claim; (exit code, stderr, pid) of each."""
    barrier.mkdir()
    procs = [start_job(args, barrier) for args in jobs]
    try:
        wait_ready(barrier, procs)
        (barrier / "go").touch()
        results = []
        for p in procs:
            _out, err = p.communicate(timeout=300)
            results.append((p.returncode, err.decode(), p.pid))
        return results
    finally:
        for p in procs:
            p.kill()


def check_one_winner(results: list[tuple[int, str, int]], out: str, models: list[str], fs) -> None:
    """One job ran and committed; the other was refused naming it; every part is the winner's."""
    codes = sorted(code for code, _err, _pid in results)
    assert codes == [0, 75], [r[:2] for r in results]  # 75: try again later
    (winner,) = [i for i, r in enumerate(results) if r[0] == 0]
    loser_err = results[1 - winner][1].strip()
    assert len(loser_err.splitlines()) == 1, loser_err
    assert "is being written by another job" in loser_err and f"pid {results[winner][2]}" in loser_err
    manifest = json.loads(fs.cat(f"{out}/_manifest.json"))
    assert manifest["model"]["given"] == models[winner]
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"]
    parts = sorted(p for p in fs.ls(out, detail=False) if p.rsplit("/", 1)[-1].startswith("part-"))
    assert len(parts) == len(manifest["outputs"])
    for part in parts:
        meta = pq.ParquetFile(io.BytesIO(fs.cat(part))).schema_arrow.metadata[b"beamscore"]
        assert json.loads(meta)["model_path"] == manifest["model"]["path"]
    assert not fs.exists(f"{out}/_claim.json")


def test_two_jobs_race_for_one_local_output(models, shards, tmp_path):
    out = str(tmp_path / "out")
    chosen = [models["two_sig"], models["versioned"]]  # two different models, one output
    results = race([job_args(m, shards[0][0], out) for m in chosen], tmp_path / "barrier")
    check_one_winner(results, out, chosen, fsspec.filesystem("file"))


def test_two_jobs_race_for_one_s3_output(models, shards, tmp_path):
    with s3_store():
        fs = fsspec.filesystem("s3")
        fs.mkdir("race-bucket")
        out = "s3://race-bucket/scores"
        chosen = [models["two_sig"], models["versioned"]]
        results = race([job_args(m, shards[0][0], out) for m in chosen], tmp_path / "barrier")
        check_one_winner(results, out, chosen, fs)


def test_a_job_is_refused_while_another_holds_a_gcs_output(models, shards, tmp_path, capsys):
    with gcs_emulator(tmp_path, "claim-bucket", env={"FSSPEC_GCS_TOKEN": "anon"}) as fs:
        out = "gs://claim-bucket/scores"
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        holder = start_job(job_args(models["two_sig"], shards[0][0], out), barrier, when="after")
        try:
            wait_ready(barrier, [holder])  # it holds the claim now
            claim = json.loads(fs.cat(f"{out}/_claim.json"))
            assert claim["pid"] == holder.pid
            assert main(job_args(models["versioned"], shards[0][0], out)) == 75
            err = capsys.readouterr().err.strip()
            assert "is being written by another job" in err and f"pid {holder.pid}" in err
            (barrier / "go").touch()
            _out, err = holder.communicate(timeout=300)
            assert holder.returncode == 0, err.decode()[-2000:]
        finally:
            holder.kill()
        manifest = json.loads(fs.cat(f"{out}/_manifest.json"))
        assert manifest["model"]["given"] == models["two_sig"]
        assert not fs.exists(f"{out}/_claim.json")


def _plant_claim(out: Path, host: str, pid: int, beat: dt.datetime) -> None:
    out.mkdir()
    body = {"holder": f"someone@{host} pid {pid}", "host": host, "pid": pid, "token": "t", "started": "x"}
    (out / "_claim.json").write_text(json.dumps({**body, "heartbeat": beat.isoformat(timespec="seconds")}))


def test_a_live_claim_refuses_and_a_stale_one_is_taken_over(models, shards, tmp_path, capsys, monkeypatch):
    now = dt.datetime.now(dt.UTC)
    live = tmp_path / "live"
    _plant_claim(live, "elsewhere", 4242, now)
    assert main(job_args(models["two_sig"], shards[0][0], str(live))) == 75  # held: try again later
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "someone@elsewhere pid 4242" in err and f"remove {live}/_claim.json" in err
    assert json.loads((live / "_claim.json").read_text())["pid"] == 4242  # left alone

    # a launcher elsewhere whose heartbeat stopped long ago, and a dead process on this machine
    monkeypatch.setenv("BEAMSCORE_CLAIM_STALE_S", "60")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, host, pid, beat in (
        ("old", "elsewhere", 4242, now - dt.timedelta(minutes=5)),
        ("dead", socket.gethostname(), dead.pid, now),
    ):
        out = tmp_path / name
        _plant_claim(out, host, pid, beat)
        assert main(job_args(models["two_sig"], shards[0][0], str(out))) == 0
        assert f"taking over the stale claim on {out}" in capsys.readouterr().err
        assert (out / "_manifest.json").exists() and not (out / "_claim.json").exists()


@pytest.mark.parametrize("torn", [b"", b'{"holder": "x'])
def test_a_torn_claim_file_is_stale(models, shards, tmp_path, capsys, torn):
    out = tmp_path / "out"
    out.mkdir()
    (out / "_claim.json").write_bytes(torn)
    assert main(job_args(models["two_sig"], shards[0][0], str(out))) == 0
    assert "taking over the stale claim" in capsys.readouterr().err


def test_the_heartbeat_refreshes_the_claim_and_release_removes_it(tmp_path, monkeypatch):
    from beamscore.pipelines import claim as claim_module

    monkeypatch.setattr(claim_module, "HEARTBEAT_S", 0.1)
    out = tmp_path / "out"
    held = claim_module.Claim.acquire(str(out))
    first = json.loads((out / "_claim.json").read_text())
    deadline = time.monotonic() + 5
    while json.loads((out / "_claim.json").read_text())["heartbeat"] == first["heartbeat"]:
        assert time.monotonic() < deadline, "the heartbeat never moved"
        time.sleep(0.1)
    assert json.loads((out / "_claim.json").read_text())["token"] == first["token"]
    with pytest.raises(Exception, match="is being written by another job"):
        claim_module.Claim.acquire(str(out))
    held.release()
    assert os.listdir(out) == []  # no claim, no temporary directory left behind
