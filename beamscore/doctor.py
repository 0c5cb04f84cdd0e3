"""``beamscore doctor``: what this machine's TensorFlow can use, and what is wrong with it.

A GPU worker image can be wrong in ways that do not fail: ``tensorflow-cpu`` installed where
``tensorflow`` was meant, CUDA libraries missing, a driver older than TensorFlow's CUDA. The
job then runs on the CPU, slowly, and says nothing. This module gathers the facts once
(:func:`gather`: versions, the CUDA and cuDNN TensorFlow was built with, the GPUs it sees,
the NVIDIA driver, memory growth, optionally where a model runs), judges them in one pure
function (:func:`judge`, tested by handing it facts) and renders them as text or JSON.

Workers call :func:`worker_device` when they load a model: it logs the model's device and
the verdict once per process and returns the device the manifest records, e.g.
``"GPU:0 (NVIDIA L4)"`` or ``"CPU"``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from beamscore._version import __version__

__all__ = [
    "TF_DISTRIBUTIONS",
    "Facts",
    "Gpu",
    "ModelCheck",
    "Verdict",
    "device_label",
    "dry_run_report",
    "gather",
    "gpu_workers",
    "judge",
    "render_json",
    "render_text",
    "tensorflow_distributions",
    "worker_device",
]

_LOG = logging.getLogger(__name__)

#: Distributions that each install the ``tensorflow`` package; more than one installed
#: means one overwrote the other's files. (``tensorflow-intel``, ``-macos`` and ``-cpu-aws``
#: are left out: on some platforms ``tensorflow`` is a shell that depends on one of them.)
TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly", "tf-nightly-cpu")
#: Where Dataflow mounts the driver's tools when it installs the NVIDIA driver.
_DATAFLOW_NVIDIA_SMI = "/usr/local/nvidia/bin/nvidia-smi"
_GPU_INSTALL = "pip install 'beamscore[gpu]'"


@dataclass(frozen=True)
class Gpu:
    """A GPU as TensorFlow sees it (``name`` like ``GPU:0``) or as nvidia-smi lists it."""

    name: str
    model: str | None = None
    memory_mib: int | None = None
    compute_capability: str | None = None


@dataclass(frozen=True)
class ModelCheck:
    """``--model``: whether the model loaded, and where its ops run."""

    path: str
    signature: str | None = None
    device: str | None = None
    how: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything ``doctor`` reports; :func:`judge` reads only these."""

    beamscore: str
    python: str
    apache_beam: str | None
    tensorflow: str | None
    tf_distributions: dict[str, str]
    cuda_build: bool = False
    cuda_version: str | None = None
    cudnn_version: str | None = None
    gpus: list[Gpu] = field(default_factory=list)
    cuda_wheels: list[str] = field(default_factory=list)
    nvidia_smi: str | None = None
    nvidia_smi_error: str | None = None
    driver_version: str | None = None
    driver_cuda: str | None = None
    nvidia_gpus: list[Gpu] = field(default_factory=list)
    memory_growth: str = "on"
    model: ModelCheck | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Verdict:
    """``status`` is ``ok`` (GPU in use), ``cpu`` (no GPU here, nothing wrong) or ``problem``."""

    status: str
    message: str

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "problem" else 0


def tensorflow_distributions() -> dict[str, str]:
    """Installed distributions that provide the ``tensorflow`` package: name -> version.

    Looked up by name: reading every installed distribution's metadata took 0.04 CPU s of
    each worker's set-up (:func:`worker_device`)."""
    found = {}
    for name in TF_DISTRIBUTIONS:
        version = _version(name)
        if version is not None:
            found[name] = version
    return dict(sorted(found.items()))


def _cuda_wheels() -> list[str]:
    """The NVIDIA CUDA wheels ``tensorflow[and-cuda]`` brings (``nvidia-cudnn-cu12 9.3.0``)."""
    names = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("nvidia-") and re.search(r"-cu\d+$", name):
            names.add(f"{name} {dist.version}")
    return sorted(names)


def _version(module: str) -> str | None:
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return None


def gather(
    model: str | None = None, signature: str | None = None, tag_set: str | None = None, *, gpu_memory: bool = True
) -> Facts:
    """The facts of this process's machine; with ``model``, load it and find where it runs.

    ``gpu_memory=False`` leaves out the memory TensorFlow may use on each GPU (finding it
    out sets up every GPU's device, which a worker that already holds a model need not do)
    and, where nvidia-smi lists no GPU, the CUDA wheels (a scan of every installed
    distribution's metadata; the verdict asks for them only where there are GPUs).
    """
    dists = tensorflow_distributions()
    smi = _nvidia_smi()
    facts = Facts(
        beamscore=__version__,
        python=platform.python_version(),
        apache_beam=_version("apache-beam"),
        tensorflow=None,
        tf_distributions=dists,
        cuda_wheels=_cuda_wheels() if gpu_memory or smi.get("nvidia_gpus") else [],
        **smi,
    )
    try:
        from beamscore._quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        import tensorflow as tf
    except ImportError:
        return facts
    from beamscore.model.devices import configure_gpus

    configure_gpus()
    build = dict(tf.sysconfig.get_build_info())
    gpus = tf.config.list_physical_devices("GPU")
    facts = dataclasses.replace(
        facts,
        tensorflow=tf.__version__,
        cuda_build=bool(build.get("is_cuda_build")),
        cuda_version=_str_or_none(build.get("cuda_version")),
        cudnn_version=_str_or_none(build.get("cudnn_version")),
        gpus=_tf_gpus(tf, gpus, gpu_memory),
        memory_growth=_memory_growth(tf, gpus),
    )
    if model is not None:
        facts = dataclasses.replace(facts, model=_check_model(model, signature, tag_set))
    return facts


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _tf_gpus(tf: Any, gpus: list[Any], gpu_memory: bool) -> list[Gpu]:
    memory = {}
    if gpus and gpu_memory:
        try:  # memory TensorFlow may use on each GPU; creates the runtime (after memory growth is set)
            from tensorflow.python.client import device_lib

            for d in device_lib.list_local_devices():
                if d.device_type == "GPU":
                    memory[_short(d.name)] = int(d.memory_limit) // (1 << 20)
        except Exception as exc:  # noqa: BLE001 - a report, not a check: leave memory out
            _LOG.info("beamscore doctor: no GPU memory figures: %s", exc)
    found = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        cc = details.get("compute_capability")
        found.append(
            Gpu(
                name=_short(gpu.name),
                model=details.get("device_name"),
                memory_mib=memory.get(_short(gpu.name)),
                compute_capability=".".join(str(c) for c in cc) if cc else None,
            )
        )
    return found


def _memory_growth(tf: Any, gpus: list[Any]) -> str:
    if not gpus:
        return "off" if os.environ.get("BEAMSCORE_GPU_MEMORY_GROWTH", "1") == "0" else "on"
    return "on" if all(tf.config.experimental.get_memory_growth(g) for g in gpus) else "off"


def _short(device: str) -> str:
    """``/physical_device:GPU:0`` or ``/job:localhost/.../device:GPU:0`` -> ``GPU:0``."""
    match = re.search(r"(?:device:)?([A-Z_]*GPU|CPU|TPU):(\d+)$", device)
    return f"{match.group(1)}:{match.group(2)}" if match else device


def _nvidia_smi() -> dict[str, Any]:
    """Driver version, the CUDA version it supports and its GPUs, from ``nvidia-smi``."""
    exe = shutil.which("nvidia-smi") or (_DATAFLOW_NVIDIA_SMI if os.access(_DATAFLOW_NVIDIA_SMI, os.X_OK) else None)
    facts: dict[str, Any] = {"nvidia_smi": exe}
    if exe is None:
        return facts
    query = [exe, "--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader,nounits"]
    try:
        listed = subprocess.run(query, capture_output=True, text=True, timeout=30)
        banner = subprocess.run([exe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {**facts, "nvidia_smi_error": f"{type(exc).__name__}: {exc}"}
    if listed.returncode != 0:
        text = (listed.stdout + listed.stderr).strip().splitlines()
        return {**facts, "nvidia_smi_error": text[0] if text else f"exit code {listed.returncode}"}
    return {**facts, **parse_nvidia_smi(listed.stdout, banner.stdout)}


def parse_nvidia_smi(listed: str, banner: str) -> dict[str, Any]:
    """``nvidia-smi --query-gpu=index,name,memory.total,driver_version`` CSV and its banner."""
    gpus, driver = [], None
    for line in listed.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        memory = int(parts[2]) if parts[2].isdigit() else None
        gpus.append(Gpu(name=f"GPU:{parts[0]}", model=parts[1], memory_mib=memory))
        driver = parts[3]
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
    return {"nvidia_gpus": gpus, "driver_version": driver, "driver_cuda": cuda.group(1) if cuda else None}


def _check_model(model: str, signature: str | None, tag_set: str | None) -> ModelCheck:
    from beamscore.errors import BeamscoreError, first_line
    from beamscore.model.inspect import inspect_model
    from beamscore.model.loader import ModelSpec, load_model
    from beamscore.try_model import pick_meta_graph, pick_signature

    try:
        info = inspect_model(model)
        mg = pick_meta_graph(info, tag_set)
        sig = pick_signature(info, mg, signature)
        loaded = load_model(ModelSpec(path=info.path, tags=mg.tag_str, fingerprint=info.fingerprint))
        fn = loaded.signature(sig.key)
    except BeamscoreError as exc:
        return ModelCheck(path=model, signature=signature, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the doctor reports a failed load, it does not crash on it
        return ModelCheck(path=model, signature=signature, error=f"{type(exc).__name__}: {first_line(str(exc))}")
    device, how = _call_device(fn, sig)
    return ModelCheck(path=info.path, signature=sig.key, device=device, how=how)


def _call_device(fn: Any, sig: Any) -> tuple[str, str]:
    """Where the signature's ops run: the device of its first output after a one-row call of
    zeros, else where its variables live, else TensorFlow's default device."""
    import numpy as np
    import tensorflow as tf

    try:
        feeds = {}
        for key, spec in sig.inputs.items():
            dims = [1] + [d if d is not None and d >= 0 else 1 for d in (spec.shape or (None,))[1:]]
            dtype = tf.as_dtype(spec.dtype)
            value = np.full(dims, b"", dtype=object) if dtype == tf.string else np.zeros(dims, dtype.as_numpy_dtype)
            feeds[key] = tf.constant(value, dtype=dtype)
        out = fn(**feeds)
        first = next(iter(out.values()))
        return device_label(first.device), "output of a one-row call"
    except Exception as exc:  # noqa: BLE001 - a model may refuse zeros (parsing, asserts): fall back
        _LOG.info("beamscore doctor: a one-row call failed (%s); using the variables' device", exc)
    return device_label(_variables_device(fn)), "where its variables live"


def _variables_device(fn: Any) -> str:
    """The device of the first variable a signature function captures; TensorFlow's default
    device (the first GPU, else the CPU) for a function with no variables or a proxy."""
    import tensorflow as tf

    for handle in getattr(fn, "captured_inputs", ()) or ():
        device = getattr(handle, "device", "")
        if device:
            return device
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "CPU:0"


def device_label(device: str) -> str:
    """A device for people and the manifest: ``GPU:0 (NVIDIA L4)`` or ``CPU``."""
    short = _short(device)
    if not short.startswith("GPU"):
        return "CPU" if short.startswith("CPU") else short
    try:
        import tensorflow as tf

        index = int(short.rsplit(":", 1)[1])
        physical = tf.config.list_physical_devices("GPU")
        model = tf.config.experimental.get_device_details(physical[index]).get("device_name")
    except Exception:  # noqa: BLE001 - the label without the model name is still right
        model = None
    return f"{short} ({model})" if model else short


def judge(facts: Facts) -> Verdict:
    """The one-line verdict, with the fix for the failures seen on GPU worker images."""
    dists = facts.tf_distributions
    hardware = facts.nvidia_gpus
    if len(dists) > 1:
        names = " and ".join(sorted(dists))
        return Verdict(
            "problem",
            f"{names} are both installed and overwrite each other's files: "
            f"pip uninstall -y {' '.join(sorted(dists))} && pip install 'beamscore[gpu]' (or 'beamscore[cpu]')",
        )
    if facts.tensorflow is None:
        return Verdict(
            "problem",
            "TensorFlow is not installed: pip install 'beamscore[cpu]', or 'beamscore[gpu]' on a GPU machine",
        )
    if facts.nvidia_smi and facts.nvidia_smi_error:
        return Verdict(
            "problem",
            f"nvidia-smi cannot reach the NVIDIA driver ({facts.nvidia_smi_error}): install the driver "
            "(on Dataflow: add install-nvidia-driver to worker_accelerator)",
        )
    if hardware and not facts.cuda_build:
        cpu_dist = next(iter(dists), "a CPU-only TensorFlow")
        return Verdict(
            "problem",
            f"{cpu_dist} is installed on a machine with {len(hardware)} NVIDIA GPU(s) ({hardware[0].model}) "
            f"and cannot use them: pip uninstall -y {cpu_dist} && {_GPU_INSTALL}",
        )
    if hardware and not facts.gpus:
        if _older(facts.driver_cuda, facts.cuda_version):
            return Verdict(
                "problem",
                f"CUDA/driver mismatch: TensorFlow {facts.tensorflow} was built for CUDA {facts.cuda_version}, "
                f"driver {facts.driver_version} supports CUDA {facts.driver_cuda} at most: "
                "install a newer NVIDIA driver (on Dataflow, install-nvidia-driver installs a current one)",
            )
        fix = (
            "check that the CUDA libraries load (run with TF_CPP_MIN_LOG_LEVEL=0)"
            if facts.cuda_wheels
            else f"the CUDA wheels are missing: {_GPU_INSTALL}"
        )
        return Verdict("problem", f"TensorFlow sees no GPU although nvidia-smi lists {len(hardware)}; {fix}")
    model = facts.model
    if model is not None and model.error:
        return Verdict("problem", f"the model does not load: {model.error}")
    if facts.gpus:
        first = facts.gpus[0]
        where = f"{first.name} ({first.model})" if first.model else first.name
        if model is not None and model.device and not model.device.startswith("GPU"):
            return Verdict(
                "problem",
                f"TensorFlow sees {where} but the model runs on {model.device}: "
                "its SavedModel may pin ops to the CPU; re-export it without device placements (clear_devices)",
            )
        return Verdict("ok", f"OK: TensorFlow uses {where}" + (f"; the model runs on {model.device}" if model else ""))
    reason = "nvidia-smi not found" if not facts.nvidia_smi else "nvidia-smi lists no GPU"
    return Verdict(
        "cpu",
        f"CPU only: no NVIDIA GPU on this machine ({reason}); TensorFlow runs on the CPU, "
        "which is right for CPU workers (GPU workers: see docs/install.md)",
    )


def _older(driver_cuda: str | None, built: str | None) -> bool:
    """Whether the driver's highest CUDA major version is below the one TensorFlow was built
    for (within a major version CUDA's minor version compatibility lets an older driver run it)."""
    if not driver_cuda or not built:
        return False
    return int(re.findall(r"\d+", driver_cuda)[0]) < int(re.findall(r"\d+", built)[0])


def render_text(facts: Facts, verdict: Verdict) -> str:
    """The report for people: one fact a line, the verdict last."""

    def gpu_line(g: Gpu) -> str:
        extra = [g.model or "", f"{g.memory_mib:,} MiB" if g.memory_mib is not None else ""]
        extra.append(f"compute capability {g.compute_capability}" if g.compute_capability else "")
        return f"  {g.name}  " + ", ".join(e for e in extra if e)

    tf = facts.tensorflow or "not installed"
    dists = ", ".join(f"{n} {v}" for n, v in facts.tf_distributions.items()) or "none"
    lines = [
        f"beamscore:     {facts.beamscore}",
        f"python:        {facts.python}",
        f"apache-beam:   {facts.apache_beam or 'not installed'}",
        f"tensorflow:    {tf} (distributions: {dists})",
    ]
    if facts.tensorflow is not None:
        built = (
            f"CUDA {facts.cuda_version}, cuDNN {facts.cudnn_version}" if facts.cuda_build else "no CUDA (a CPU build)"
        )
        lines.append(f"built with:    {built}")
        wheels = f"{len(facts.cuda_wheels)} installed" if facts.cuda_wheels else "none"
        lines.append(f"CUDA wheels:   {wheels}")
    if facts.nvidia_smi is None:
        lines.append("NVIDIA driver: none (nvidia-smi not found)")
    elif facts.nvidia_smi_error:
        lines.append(f"NVIDIA driver: nvidia-smi failed: {facts.nvidia_smi_error}")
    else:
        cuda = f", supports CUDA {facts.driver_cuda}" if facts.driver_cuda else ""
        lines.append(f"NVIDIA driver: {facts.driver_version}{cuda}; nvidia-smi lists {len(facts.nvidia_gpus)} GPU(s)")
        lines += [gpu_line(g) for g in facts.nvidia_gpus]
    if facts.tensorflow is not None:
        lines.append(f"GPUs TensorFlow sees: {len(facts.gpus)}" + ("" if facts.gpus else " (it runs on the CPU)"))
        lines += [gpu_line(g) for g in facts.gpus]
        lines.append(f"memory growth: {facts.memory_growth}")
    if facts.model is not None:
        m = facts.model
        if m.error:
            lines.append(f"model:         {m.path}: does not load: {m.error}")
        else:
            lines.append(f"model:         {m.path} [{m.signature}] loads; runs on {m.device} ({m.how})")
    lines.append(f"verdict:       {verdict.message}")
    return "\n".join(lines)


def render_json(facts: Facts, verdict: Verdict) -> str:
    """The same facts for machines, with the verdict as ``{"status", "message"}``."""
    return json.dumps({**facts.to_dict(), "verdict": dataclasses.asdict(verdict)}, indent=2)


_WORKER_LOCK = threading.Lock()
_WORKER_DEVICE: str | None = None


def worker_device(fn: Any) -> str:
    """The device a worker's signature function ``fn`` runs on, logged once per process with
    the doctor's verdict, so that a GPU job that fell back to the CPU shows it in its logs."""
    global _WORKER_DEVICE
    with _WORKER_LOCK:
        if _WORKER_DEVICE is not None:
            return _WORKER_DEVICE
        device = device_label(_variables_device(fn))
        try:
            verdict = judge(gather(gpu_memory=False))
        except Exception as exc:  # noqa: BLE001 - the log line must not stop the job
            verdict = Verdict("problem", f"no verdict: {type(exc).__name__}: {exc}")
        level = logging.WARNING if verdict.status == "problem" else logging.INFO
        _LOG.log(level, "beamscore: the model runs on %s (pid %d); doctor: %s", device, os.getpid(), verdict.message)
        _WORKER_DEVICE = device
        return device


def gpu_workers(options: Mapping[str, Any]) -> bool:
    """Whether pipeline options ask for GPU workers (Dataflow's ``worker_accelerator``)."""
    values: list[Any] = []
    for key in ("dataflow_service_options", "experiments"):
        value = options.get(key) or []
        values += value if isinstance(value, list) else [value]
    return any("worker_accelerator" in str(v) for v in values)


def dry_run_report(options: Mapping[str, Any]) -> str | None:
    """For ``score --dry-run`` of a GPU job: the doctor's report of the launcher, and how to
    check the worker image, which the launcher cannot see. ``None`` for other jobs."""
    if not gpu_workers(options):
        return None
    facts = gather()
    body = render_text(facts, judge(facts))
    image = options.get("sdk_container_image") or "IMAGE"
    return "\n".join(
        [
            "doctor (this launcher; the GPU workers run the worker image):",
            *(f"  {line}" for line in body.splitlines()),
            "check the worker image on a GPU machine (it must hold tensorflow, not tensorflow-cpu):",
            f"  docker run --rm --gpus all --entrypoint beamscore {image} doctor --require-gpu",
        ]
    )
