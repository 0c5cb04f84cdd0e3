"""``beamscore doctor``: the CPU path for real, GPU images by injected facts.

No GPU is reachable from here, so the GPU verdicts are tested two ways: :func:`judge` is
handed the facts a GPU image would produce, and a stand-in ``nvidia-smi`` on ``PATH`` (a
shell script printing what the real one prints) makes this machine look like a GPU VM to
the real ``doctor`` process, whose TensorFlow is the real ``tensorflow-cpu``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from docs_blocks import docs_block

from beamscore import doctor
from beamscore.cli import main
from beamscore.doctor import Facts, Gpu, ModelCheck, judge

L4 = Gpu(name="GPU:0", model="NVIDIA L4", memory_mib=23034)


def run_doctor(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    """``beamscore doctor ARGS`` in a child with no GPU visible and only ``path`` (and the
    interpreter's bin dir) on PATH, so no real nvidia-smi is found."""
    bin_dir = os.path.dirname(sys.executable)
    env = {
        **os.environ,
        "PATH": os.pathsep.join(p for p in (path, bin_dir, "/usr/bin", "/bin") if p),
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "beamscore", "doctor", *args], capture_output=True, text=True, env=env, timeout=120
    )


def doctor_here(capsys, monkeypatch, *args: str, path: str | None = None) -> tuple[int, str]:
    """``beamscore doctor ARGS`` in this process (TensorFlow is already imported: fast), with
    only ``path`` and the interpreter's bin dir on PATH; returns the exit code and stdout."""
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in (path, os.path.dirname(sys.executable)) if p))
    capsys.readouterr()
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def facts(**changes) -> Facts:
    """Facts of a healthy CPU machine with tensorflow-cpu, changed by ``changes``."""
    base = Facts(
        beamscore="0.1.0",
        python="3.11.7",
        apache_beam="2.77.0",
        tensorflow="2.21.0",
        tf_distributions={"tensorflow-cpu": "2.21.0"},
    )
    return dataclasses.replace(base, **changes)


def gpu_image(**changes) -> Facts:
    """Facts of a healthy GPU image: tensorflow[and-cuda] on a VM with an L4 and a driver."""
    return facts(
        **{
            "tf_distributions": {"tensorflow": "2.21.0"},
            "cuda_build": True,
            "cuda_version": "12.5.1",
            "cudnn_version": "9",
            "cuda_wheels": ["nvidia-cudnn-cu12 9.3.0.75"],
            "nvidia_smi": "/usr/local/nvidia/bin/nvidia-smi",
            "driver_version": "550.54.15",
            "driver_cuda": "12.4",
            "nvidia_gpus": [L4],
            "gpus": [Gpu(name="GPU:0", model="NVIDIA L4", memory_mib=21500, compute_capability="8.9")],
            **changes,
        }
    )


def test_cpu_machine_says_so_and_exits_0():
    done = run_doctor()
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines() if not line.startswith(" "))
    assert lines["tensorflow"].split()[0] == "2.21.0"
    assert "tensorflow-cpu 2.21.0" in lines["tensorflow"]
    assert lines["apache-beam"].strip() == "2.77.0"
    assert lines["built with"].strip() == "no CUDA (a CPU build)"
    assert lines["NVIDIA driver"].strip() == "none (nvidia-smi not found)"
    assert lines["verdict"].strip().startswith("CPU only: no NVIDIA GPU on this machine")
    assert done.stderr == ""  # TensorFlow's import banner is kept off the terminal
    shown = docs_block("install.md", "doctor").split("$ beamscore doctor\n", 1)[1]
    # the docs show this output as it is (the Python patch version may differ)
    assert [x for x in shown.splitlines() if not x.startswith("python:")] == [
        x for x in done.stdout.splitlines() if not x.startswith("python:")
    ]


def test_require_gpu_fails_on_a_cpu_machine(capsys, monkeypatch):
    code, out = doctor_here(capsys, monkeypatch, "--require-gpu")
    assert code == 1
    assert "CPU only" in out


def test_json_shape_with_a_model(models, capsys, monkeypatch):
    code, out = doctor_here(capsys, monkeypatch, "--json", "--model", models["two_sig"], "--signature", "embed")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {f.name for f in dataclasses.fields(Facts)} | {"verdict"}
    assert report["verdict"]["status"] == "cpu"
    assert report["tf_distributions"] == {"tensorflow-cpu": "2.21.0"}
    assert report["tensorflow"] == "2.21.0" and report["apache_beam"] == "2.77.0"
    assert report["cuda_build"] is False and report["gpus"] == [] and report["nvidia_gpus"] == []
    assert report["driver_version"] is None and report["memory_growth"] == "on"
    assert report["model"] == {
        "path": models["two_sig"],
        "signature": "embed",
        "device": "CPU",
        "how": "output of a one-row call",
        "error": None,
    }


def test_a_model_that_does_not_load_is_a_problem(tmp_path, capsys, monkeypatch):
    code, out = doctor_here(capsys, monkeypatch, "--model", str(tmp_path / "missing"))
    assert code == 1
    assert "verdict:       the model does not load: model" in out


FAKE_NVIDIA_SMI = """\
    #!/bin/sh
    # What nvidia-smi 550 prints on a g2-standard-8 (one NVIDIA L4), for the two calls doctor makes.
    case "$1" in
      --query-gpu=*) echo "0, NVIDIA L4, 23034, 550.54.15" ;;
      *) echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |" ;;
    esac
"""


def test_tensorflow_cpu_on_a_gpu_image_is_named_with_its_fix(tmp_path, capsys, monkeypatch):
    """The real doctor, the real tensorflow-cpu, and an nvidia-smi that lists an L4."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text(textwrap.dedent(FAKE_NVIDIA_SMI))
    smi.chmod(0o755)
    code, out = doctor_here(capsys, monkeypatch, path=str(tmp_path))
    assert code == 1
    assert "NVIDIA driver: 550.54.15, supports CUDA 12.4; nvidia-smi lists 1 GPU(s)" in out
    verdict = out.strip().splitlines()[-1]
    assert verdict == (
        "verdict:       tensorflow-cpu is installed on a machine with 1 NVIDIA GPU(s) (NVIDIA L4) and cannot use "
        "them: pip uninstall -y tensorflow-cpu && pip install 'beamscore[gpu]'"
    )


def test_verdicts_of_gpu_images():
    assert judge(gpu_image()) == doctor.Verdict("ok", "OK: TensorFlow uses GPU:0 (NVIDIA L4)")
    both = judge(gpu_image(tf_distributions={"tensorflow": "2.21.0", "tensorflow-cpu": "2.21.0"}))
    assert both.status == "problem"
    assert "tensorflow and tensorflow-cpu are both installed" in both.message
    assert "pip uninstall -y tensorflow tensorflow-cpu && pip install 'beamscore[gpu]'" in both.message
    mismatch = judge(gpu_image(gpus=[], driver_cuda="11.8", driver_version="520.61.05"))
    assert mismatch.status == "problem"
    assert mismatch.message.startswith(
        "CUDA/driver mismatch: TensorFlow 2.21.0 was built for CUDA 12.5.1, driver 520.61.05 supports CUDA 11.8"
    )
    no_wheels = judge(gpu_image(gpus=[], cuda_wheels=[]))
    assert no_wheels.message == (
        "TensorFlow sees no GPU although nvidia-smi lists 1; the CUDA wheels are missing: pip install 'beamscore[gpu]'"
    )
    no_driver = judge(gpu_image(gpus=[], nvidia_gpus=[], nvidia_smi_error="NVIDIA-SMI has failed"))
    assert no_driver.status == "problem" and "install-nvidia-driver" in no_driver.message
    pinned = judge(gpu_image(model=ModelCheck(path="m", signature="s", device="CPU", how="x")))
    assert pinned.status == "problem" and "the model runs on CPU" in pinned.message
    on_gpu = judge(gpu_image(model=ModelCheck(path="m", signature="s", device="GPU:0 (NVIDIA L4)", how="x")))
    assert on_gpu == doctor.Verdict("ok", "OK: TensorFlow uses GPU:0 (NVIDIA L4); the model runs on GPU:0 (NVIDIA L4)")


def test_verdicts_without_a_gpu():
    assert judge(facts()).status == "cpu"
    assert judge(facts()).exit_code == 0
    assert judge(gpu_image(gpus=[], nvidia_gpus=[], nvidia_smi=None)).status == "cpu"  # GPU build, CPU VM
    missing = judge(facts(tensorflow=None, tf_distributions={}))
    assert missing.status == "problem" and "pip install 'beamscore[cpu]'" in missing.message


def test_nvidia_smi_output_is_parsed():
    parsed = doctor.parse_nvidia_smi(
        "0, NVIDIA A100-SXM4-40GB, 40960, 535.104.05\n1, NVIDIA A100-SXM4-40GB, 40960, 535.104.05\n",
        "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2     |",
    )
    assert parsed["driver_version"] == "535.104.05" and parsed["driver_cuda"] == "12.2"
    assert parsed["nvidia_gpus"] == [
        Gpu(name="GPU:0", model="NVIDIA A100-SXM4-40GB", memory_mib=40960),
        Gpu(name="GPU:1", model="NVIDIA A100-SXM4-40GB", memory_mib=40960),
    ]


@pytest.mark.parametrize(
    ("device", "label"),
    [
        ("/job:localhost/replica:0/task:0/device:CPU:0", "CPU"),
        ("/physical_device:CPU:0", "CPU"),
        ("CPU:0", "CPU"),
        ("/job:localhost/replica:0/task:0/device:GPU:1", "GPU:1"),  # no such GPU here: no model name
    ],
)
def test_device_labels(device, label):
    assert doctor.device_label(device) == label


def test_worker_logs_its_device_once(models, caplog, monkeypatch):
    from beamscore.model.loader import ModelSpec, load_model

    monkeypatch.setattr(doctor, "_WORKER_DEVICE", None)
    fn = load_model(ModelSpec(path=models["two_sig"])).signature("serving_default")
    with caplog.at_level(logging.INFO, logger="beamscore.doctor"):
        assert doctor.worker_device(fn) == "CPU"
        assert doctor.worker_device(fn) == "CPU"
    lines = [r.getMessage() for r in caplog.records if "the model runs on" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("beamscore: the model runs on CPU (pid ")
    assert "doctor: CPU only: no NVIDIA GPU on this machine" in lines[0]
