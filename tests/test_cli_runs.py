"""``tests/cli_runs.py``: a command run in the test process leaves no trace on the next test."""

from __future__ import annotations

import logging
import os
import signal

from cli_runs import QUIETED, run_cli


def test_run_cli_returns_the_command_and_puts_the_process_back(models, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # main() sets it when missing
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    before = {h: list(h.filters) for h in root.handlers}
    levels = {name: logging.getLogger(name).level for name in ("", *QUIETED)}
    sigint = signal.getsignal(signal.SIGINT)
    done = run_cli("show", models["two_sig"])  # no --debug: main() filters and quiets loggers
    assert done.code == 0 and "serving_default" in done.stdout and done.stderr == ""
    assert {h: list(h.filters) for h in root.handlers} == before
    assert {name: logging.getLogger(name).level for name in ("", *QUIETED)} == levels
    assert signal.getsignal(signal.SIGINT) is sigint
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and os.getcwd() == str(tmp_path)
    # a refusal: exit 2 and its one line, as the child would exit with and print
    done = run_cli("show", str(tmp_path / "missing"))
    assert done.code == 2 and done.stdout == ""
    assert done.stderr == f"beamscore: error: model '{tmp_path / 'missing'}' does not exist\n"
