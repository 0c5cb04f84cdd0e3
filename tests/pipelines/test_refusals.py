"""Refused before anything is written: exit 2 and one line, on real paths and real files.

Input/output overlap is judged on resolved paths (the same directory, a parent, a child, a
symbolic-link alias); an output that cannot be written (read-only, a dangling link, a file)
is refused before the claim; ``--overwrite`` removes only what a job recorded, and another
job's claim in flight is never removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time

import builders
import pytest

from beamscore.cli import main
from beamscore.pipelines.overwrite import remove_previous
from beamscore.transforms.temp import CLAIM_TEMP_GRACE_S, TEMP_DIR, clean_temp_dir
from beamscore.transforms.watchdog import WORKER_LOG, remove_orphaned_logs


@pytest.fixture
def data(tmp_path) -> str:
    """A directory of two small Parquet shards of this test's own."""
    builders.write_parquet_shards(str(tmp_path / "in"), rows=100, shards=2, row_group_size=50)
    return str(tmp_path / "in")


def score(capsys, model: str, inputs: str, out, *extra: str) -> tuple[int, str]:
    """Exit code and stderr of one ``beamscore score`` run in this process."""
    capsys.readouterr()
    code = main(["score", "--model", model, "--input", inputs, "--output", str(out), "--no-progress", *extra])
    return code, capsys.readouterr().err.strip()


def listing(directory: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs)


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("where", ["same", "alias", "child", "parent", "dotdot", "alias_glob"])
def test_an_output_overlapping_the_input_is_refused_on_real_paths(models, data, tmp_path, capsys, where, overwrite):
    inputs = data
    out = {
        "same": data,
        "alias": tmp_path / "alias",
        "child": os.path.join(data, "scores"),
        "parent": tmp_path,
        "dotdot": os.path.join(data, "..", "in"),
        "alias_glob": tmp_path / "alias",
    }[where]
    if where.startswith("alias"):
        os.symlink(data, tmp_path / "alias")
    if where == "alias_glob":
        inputs = os.path.join(data, "*.parquet")
    before = listing(str(tmp_path))
    code, err = score(capsys, models["two_sig"], inputs, out, *(["--overwrite"] if overwrite else []))
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "overlaps --input" in err, err
    assert f"as real paths: {os.path.realpath(out)} and " in err
    assert listing(str(tmp_path)) == before  # nothing written, nothing removed


def test_the_manifest_records_the_resolved_output(models, data, tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    code, err = score(capsys, models["two_sig"], data, tmp_path / "link")
    assert code == 0, err
    manifest = json.loads((real / "_manifest.json").read_text())
    assert manifest["output"] == str(real) and manifest["output_as_given"] == str(tmp_path / "link")


@contextlib.contextmanager
def read_only(directory):
    """``directory`` unwritable, even for root (``chattr +i``) where chmod does not bind."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        try:
            yield
        finally:
            os.chmod(directory, 0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(directory)]).returncode:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


@pytest.mark.parametrize("case", ["read_only", "read_only_parent", "dangling_link", "file", "under_a_file"])
def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(models, data, tmp_path, capsys, case):
    out = tmp_path / "out"
    guard: contextlib.AbstractContextManager = contextlib.nullcontext()
    if case == "read_only":
        out.mkdir()
        guard = read_only(out)
    elif case == "read_only_parent":
        (tmp_path / "locked").mkdir()
        out = tmp_path / "locked" / "out"
        guard = read_only(tmp_path / "locked")
    elif case == "dangling_link":
        os.symlink(tmp_path / "nowhere", out)
    elif case == "file":
        out.write_text("not a directory")
    else:
        (tmp_path / "plain").write_text("x")
        out = tmp_path / "plain" / "out"
    with guard:
        code, err = score(capsys, models["two_sig"], data, out)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("beamscore: error: ") and str(out) in err and "Traceback" not in err
    expected = {
        "read_only": "cannot write to output",
        "read_only_parent": "cannot write to output",
        "dangling_link": "which does not exist",
        "file": "exists and is not a directory",
        "under_a_file": "cannot write to output",
    }[case]
    assert expected in err, err
    assert not (tmp_path / "nowhere").exists()


def test_overwrite_keeps_a_users_file_at_an_old_temporary_name(models, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert score(capsys, models["two_sig"], data, out)[0] == 0
    (out / TEMP_DIR).mkdir()
    (out / TEMP_DIR / "_manifest.json").write_text('{"mine": true}')
    code, err = score(capsys, models["two_sig"], data, out, "--overwrite")
    assert code == 0, err
    assert json.loads((out / TEMP_DIR / "_manifest.json").read_text()) == {"mine": True}
    assert f"{TEMP_DIR}/_manifest.json" in err  # named in the warning about files it left


def test_another_jobs_claim_in_flight_is_never_removed(tmp_path):
    """A job claiming the output right now has its ``_claim.json.<hex>.tmp`` in ``_temporary/``
    for milliseconds; the winner's clean-up (and ``--overwrite``) leaves it, and removes a dead one."""
    temp = tmp_path / TEMP_DIR
    temp.mkdir()
    live = temp / ("_claim.json." + "a" * 32 + ".tmp")
    dead = temp / ("_claim.json." + "b" * 32 + ".tmp")
    live.write_text("{}")
    dead.write_text("{}")
    old = time.time() - CLAIM_TEMP_GRACE_S - 5
    os.utime(dead, (old, old))
    import fsspec

    assert clean_temp_dir(fsspec.filesystem("file"), str(temp)) == []
    assert live.exists() and not dead.exists()
    dead.write_text("{}")
    os.utime(dead, (old, old))
    assert remove_previous(str(tmp_path), force=False) == []
    assert live.exists() and not dead.exists()


def test_a_killed_launchers_worker_log_is_removed_by_the_next_run(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = tmp_path / WORKER_LOG.format(pid=gone.pid)
    mine = tmp_path / WORKER_LOG.format(pid=os.getpid())
    other = tmp_path / WORKER_LOG.format(pid=1)  # a live process
    for path in (orphan, mine, other):
        path.write_text("log")
    (tmp_path / "beamscore-workers-notes.log").write_text("not ours")
    assert remove_orphaned_logs(str(tmp_path)) == [str(orphan)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name, "beamscore-workers-notes.log"])
