"""``beamscore run`` bounds: inputs are sized before they are read, and every bad value is
one line with exit code 2 (never a traceback, a hang on ``/dev/zero`` or a terabyte allocation)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from beamscore.cli import main


def npy_claiming(path, shape: tuple[int, ...], data: bytes) -> str:
    """An ``.npy`` file whose header claims ``shape`` of float32, followed by ``data``."""
    header = np.lib.format.header_data_from_array_1_0(np.ones((1, 4), np.float32))
    header["shape"] = shape
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(data)
    return str(path)


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    np.save(tmp_path / "ok.npy", np.ones((2, 4), np.float32))
    return {
        "ok": str(tmp_path / "ok.npy"),
        "huge": npy_claiming(tmp_path / "huge.npy", (10**12, 4), b"\0" * 32),
        "short": npy_claiming(tmp_path / "short.npy", (1000, 4), b"\0" * 32),
        "dir": str(tmp_path),
    }


def refused(capsys, *args: str) -> str:
    """Run ``beamscore run ARGS``; it must exit 2 with one short line."""
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 400 and "Traceback" not in err, err
    return err


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_inputs_are_sized_before_they_are_read(models, files, capsys):
    model = models["two_sig"]
    assert "/dev/zero is not a regular file" in refused(capsys, model, "--inputs", "x=/dev/zero")
    assert f"{files['dir']} is not a regular file (it is a directory)" in refused(
        capsys, model, "--inputs", f"x={files['dir']}"
    )
    assert "(4,000,000,000,000 values); the limit is 100,000,000" in refused(
        capsys, model, "--inputs", f"x={files['huge']}"
    )
    assert "(16,000 bytes) but holds 32 bytes of data" in refused(capsys, model, "--inputs", f"x={files['short']}")
    assert "does not exist" in refused(capsys, model, "--inputs", "x=/no/such/file.npy")
    err = refused(capsys, model, "--inputs", f"x={files['ok']}", "--max-input-bytes", "100")
    assert "is 160 bytes, over the limit of 100; raise it with --max-input-bytes" in err
    assert main(["run", model, "--inputs", f"x={files['ok']}", "--max-input-bytes", "160"]) == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--input-exprs", "x=" + "[" * 100_000 + "1.0" + "]" * 100_000, "(200,003 characters) is not"),
        ("--input-exprs", "x=" + "[" * 150 + "1.0" + "]" * 150, "--input-exprs x:"),
        ("--print-options", "precision=" + "[" * 100_000, "--print-options precision:"),
        ("--print-options", "precision=abc", "the name 'abc' is not allowed"),
        ("--print-options", "floatmode=1", "floatmode"),
        ("--print-options", "precision=-1", "precision must be >= 0"),
        ("--print-options", "linewidth=[1]", "--print-options 'linewidth=[1]'"),
        ("--print-options", "threshold='x'", "threshold must be numeric"),
        ("--print-options", "colour=3", "expected NAME=VALUE"),
    ],
)
def test_bad_values_and_deep_nesting_are_one_line(models, capsys, flag, value, message):
    args = [models["two_sig"], flag, value]
    if flag == "--print-options":
        args += ["--input-exprs", "x=[[1.0,2.0,3.0,4.0]]"]
    assert message in refused(capsys, *args)
