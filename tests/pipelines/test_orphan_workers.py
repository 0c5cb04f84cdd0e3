"""A killed launcher's multi-process workers stop within a second instead of committing units.

A real ``beamscore score`` launcher runs ``--direct_running_mode=multi_processing`` with two
worker processes over 60 slow units; once some units are committed the launcher is killed
with SIGKILL. Its workers must stop: no receipt or output appears after the first second,
and ``--resume`` then finishes the job with every row accounted for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import builders
import job_models
import pytest

from beamscore.cli import main

UNITS = 60


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> bytes:
    """The command line of ``pid``; empty when it has gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def still_running(pids, within: float) -> list[int]:
    """Those of ``pids`` still running ``within`` seconds from now (returns as soon as none is)."""
    deadline = time.monotonic() + within
    while True:
        alive = [pid for pid in pids if running(pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def survivors(pids, within: float) -> list[int]:
    """Those of ``pids`` still running ``within`` seconds from now, killed then, so that a
    failing test leaves none behind."""
    alive = still_running(pids, within)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive


def committed(out) -> set[str]:
    receipts = out / "_units"
    return {f for f in os.listdir(receipts) if f.startswith("part-")} if receipts.exists() else set()


@pytest.mark.distributed
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds worker processes through /proc")
def test_workers_stop_when_the_launcher_is_killed(tmp_path):
    jm = job_models.build_all(str(tmp_path / "models"))
    paths, ids, _x = builders.write_parquet_shards(str(tmp_path / "in"), rows=40 * UNITS, shards=1, row_group_size=40)
    out = tmp_path / "out"
    args = ["score", "--model", jm["slow"], "--input", paths[0], "--output", str(out), "--rows-per-unit", "40"]
    args += ["--keep", "id", "--no-progress"]
    multi = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with open(tmp_path / "launcher.log", "wb") as log:  # not a pipe: orphans would hold it open
        launcher = subprocess.Popen([sys.executable, "-m", "beamscore", *args, *multi], stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 240
        while len(committed(out)) < 3 and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.05)
        assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()[-2000:]
        assert len(committed(out)) >= 3, "no units were committed in time"
        workers = descendants(launcher.pid)
        assert workers, "the launcher started no worker processes"
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
    finally:
        launcher.kill()
        launcher.wait()
    alive = survivors(workers, within=1.5)  # the workers' watch polls every 0.2 s
    assert not alive, f"worker processes {alive} outlived their launcher"
    settled = committed(out)
    assert len(settled) < UNITS and not (out / "_manifest.json").exists()

    assert main([*args, "--resume"]) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["units"] == UNITS and manifest["units_resumed"] == len(settled)
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_failed"]) == (len(ids), len(ids), 0)


@pytest.mark.distributed
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds worker processes through /proc")
@pytest.mark.parametrize("after", [0.2, 0.5, 1.0, 2.0])
def test_workers_die_with_a_launcher_killed_as_they_start(tmp_path, after):
    """Killed ``after`` seconds after its worker processes appear (still importing Beam and
    TensorFlow, before any DoFn): every worker is gone 2 s later."""
    jm = job_models.build_all(str(tmp_path / "models"))
    paths, _ids, _x = builders.write_parquet_shards(str(tmp_path / "in"), rows=40 * 8, shards=1, row_group_size=40)
    args = ["score", "--model", jm["slow"], "--input", paths[0], "--output", str(tmp_path / "out")]
    args += ["--rows-per-unit", "40", "--no-progress", "--direct_running_mode=multi_processing"]
    args += ["--direct_num_workers=2", "--no-trial"]  # the first descendant is a worker, not the trial's process
    with open(tmp_path / "launcher.log", "wb") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "beamscore", *args], stdout=log, stderr=log)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while not seen and time.monotonic() < deadline and launcher.poll() is None:
            seen.update(descendants(launcher.pid))
            time.sleep(0.01)
        assert seen, "the launcher started no worker processes: " + (tmp_path / "launcher.log").read_text()[-2000:]
        stop_at = time.monotonic() + after
        while time.monotonic() < stop_at:
            seen.update(descendants(launcher.pid))
            time.sleep(0.01)
        assert launcher.poll() is None, "the job ended before the launcher was killed"
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
    finally:
        launcher.kill()
        launcher.wait()
    alive = survivors(seen, within=2)
    assert not alive, f"worker processes {alive} outlived their launcher killed {after} s after they appeared"


@pytest.mark.distributed
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds worker processes through /proc")
def test_the_trial_calls_process_dies_with_a_launcher_killed_while_it_runs(tmp_path):
    """A multi-process job's trial call runs in a process of its own
    (:mod:`beamscore.pipelines.trial_apart`); killed 0.3 s after that process appears (still
    importing TensorFlow), the launcher takes it along: gone 2 s later."""
    jm = job_models.build_all(str(tmp_path / "models"))
    paths, _ids, _x = builders.write_parquet_shards(str(tmp_path / "in"), rows=40, shards=1)
    args = ["score", "--model", jm["slow"], "--input", paths[0], "--output", str(tmp_path / "out"), "--no-progress"]
    args += ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    with open(tmp_path / "launcher.log", "wb") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "beamscore", *args], stdout=log, stderr=log)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while not seen and time.monotonic() < deadline and launcher.poll() is None:
            # Libraries the launcher imports may run short-lived helpers of their own
            # (gone before their command line is read): wait for the trial's process itself.
            seen = [pid for pid in descendants(launcher.pid) if b"trial_apart" in cmdline(pid)]
            time.sleep(0.01)
        assert seen, "no trial process: " + (tmp_path / "launcher.log").read_text()[-2000:]
        time.sleep(0.3)
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
    finally:
        launcher.kill()
        launcher.wait()
    alive = survivors(seen, within=2)
    assert not alive, f"the trial process {alive} outlived its launcher"
