"""Timestamps on text lines (issue 33, item 7): off a terminal, in a file or a pipe, error
and warning lines start with the time (ISO-8601 UTC, as the launch and progress lines);
the rest of the line, ``beamscore: error: ...``, is unchanged and still one line."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from cli_runs import error_lines, run_cli

from beamscore.console import TIMESTAMPS_ENV, StderrLines, stamps

STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (beamscore: error: .*)$")


def _report(tmp_path, setting: str | None) -> subprocess.CompletedProcess:
    """``beamscore report`` on a folder with no output (exit 2, one error line), stderr a pipe."""
    env = {k: v for k, v in os.environ.items() if k != TIMESTAMPS_ENV}
    if setting is not None:
        env[TIMESTAMPS_ENV] = setting
    cmd = [sys.executable, "-m", "beamscore", "report", str(tmp_path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_an_error_line_in_a_pipe_starts_with_the_time_and_stays_one_line(tmp_path):
    done = _report(tmp_path, None)  # auto: stderr is a pipe
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    stamped = STAMPED.match(done.stderr.rstrip("\n"))
    assert stamped, done.stderr
    assert (
        stamped.group(2)
        == f"beamscore: error: {tmp_path}: no beamscore output here (no _manifest.json, no _units/ receipts)"
    )
    assert error_lines(done.stderr) == [stamped.group(2)]  # what tests compare: the line without its time


def test_beamscore_timestamps_never_leaves_the_line_bare(tmp_path):
    done = _report(tmp_path, "never")
    assert done.stderr.startswith("beamscore: error: "), done.stderr


def test_stamps_off_a_terminal_only_and_in_no_hosts_own_stream(tmp_path, monkeypatch):
    monkeypatch.delenv(TIMESTAMPS_ENV, raising=False)
    with open(tmp_path / "log", "w") as log:
        assert stamps(log)  # a log file
        assert not stamps(io.StringIO())  # main() called by a host capturing stderr
        monkeypatch.setenv(TIMESTAMPS_ENV, "never")
        assert not stamps(log)
    monkeypatch.setenv(TIMESTAMPS_ENV, "always")
    assert stamps(io.StringIO())


def test_each_error_and_warning_line_is_stamped_once_whatever_the_writes():
    out = io.StringIO()
    lines = StderrLines(out, "text", stamp=True)
    print("beamscore: warning: resumed 3 units", file=lines)  # print writes the text, then "\n"
    lines.write("other text\nbeamscore: error: bad ")
    lines.write("input\n")
    written = out.getvalue().splitlines()
    assert [re.sub(r"^\S+Z ", "", w) for w in written] == [
        "beamscore: warning: resumed 3 units",
        "other text",
        "beamscore: error: bad input",
    ]
    assert STAMPED.match(written[2]) and written[1] == "other text" and written[0][:4].isdigit()
    assert lines.last_error == "bad "  # the --json summary's error, as before (from the text written)


@pytest.mark.parametrize("setting", ["always", "never"])
def test_an_in_process_cli_error_follows_the_setting(monkeypatch, tmp_path, setting):
    monkeypatch.setenv(TIMESTAMPS_ENV, setting)
    run = run_cli("report", str(tmp_path))
    assert run.code == 2
    assert bool(STAMPED.match(run.stderr.strip())) == (setting == "always"), run.stderr
