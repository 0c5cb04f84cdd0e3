"""The worker image's Dockerfile agrees with the versions beamscore is pinned to and tested with.

Docker cannot run here, so the Dockerfile is parsed, not built. A Dataflow or Flink worker
whose Beam differs from the launcher's fails at startup, and one whose TensorFlow differs
from the launcher's may score differently: the image tag and the pins must match
``pyproject.toml`` and this environment.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dockerfile() -> str:
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        return f.read()


def args() -> dict[str, str]:
    """``ARG NAME=default`` of the Dockerfile."""
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile(), re.M))


def dependency(name: str, extra: str | None = None) -> Requirement | None:
    """The requirement on ``name`` in pyproject's dependencies (or its ``extra``) that applies
    on this machine."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    deps = project["optional-dependencies"][extra] if extra else project["dependencies"]
    reqs = [Requirement(d) for d in deps]
    return next((r for r in reqs if r.name == name and (r.marker is None or r.marker.evaluate())), None)


def test_base_image_is_beams_sdk_image_of_the_pinned_beam_version():
    text, pins = dockerfile(), args()
    base = re.search(r"^FROM (\S+) AS base$", text, re.M).group(1)
    assert base == "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}"
    beam = pins["BEAM_VERSION"]
    assert beam == importlib.metadata.version("apache-beam")  # the version the tests ran with
    assert dependency("apache-beam").specifier.contains(beam)
    assert pins["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        assert SpecifierSet(tomllib.load(f)["project"]["requires-python"]).contains(pins["PYTHON_VERSION"] + ".0")


def test_pins_match_pyproject_and_this_environment():
    pins = args()
    tf = "tensorflow-cpu" if dependency("tensorflow-cpu", "cpu") else "tensorflow"
    assert dependency(tf, "cpu").specifier.contains(pins["TF_VERSION"])
    assert dependency("tensorflow", "gpu").specifier.contains(pins["TF_VERSION"])
    assert dependency("tensorflow") is None and dependency("tensorflow-cpu") is None  # only in [cpu] / [gpu]
    for arg, package in (
        ("TF_VERSION", tf),
        ("PYARROW_VERSION", "pyarrow"),
        ("FSSPEC_VERSION", "fsspec"),
        ("GCSFS_VERSION", "gcsfs"),
        ("NUMPY_VERSION", "numpy"),
        ("PYYAML_VERSION", "pyyaml"),
    ):
        assert pins[arg] == importlib.metadata.version(package), arg
        if dependency(package) is not None:  # gcsfs and TensorFlow are extras
            assert dependency(package).specifier.contains(pins[arg]), arg


def test_cpu_and_gpu_targets():
    text = dockerfile()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.M)
    assert stages == ["base", "gpu", "cpu"]  # the last stage, cpu, is what a plain build makes
    base, rest = text.split("AS gpu", 1)
    gpu, cpu = rest.split("AS cpu", 1)
    # one TensorFlow per image, from its extra; base has none, and nothing is swapped by uninstalling
    base_installs = re.findall(r"pip install .*", base)
    assert base_installs == ['pip install --constraint /opt/beamscore-constraints.txt ".[gcp,s3]" \\']
    assert '"/opt/beamscore/src[gpu,gcp,s3]"' in gpu and '"/opt/beamscore/src[cpu,gcp,s3]"' in cpu
    assert "uninstall" not in text
    assert "&& beamscore doctor\n" in gpu and "&& beamscore doctor\n" in cpu  # fails on two TensorFlows
    assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in gpu
    assert not re.search(r"^(ENTRYPOINT|CMD)", text, re.M)  # Beam's boot program stays the entry point
    assert '".[gcp,s3]"' in base and text.count("--constraint /opt/beamscore-constraints.txt") == 3


def test_everything_copied_exists_and_nothing_else_is_sent():
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile(), re.M):
        for path in source.split():
            assert os.path.exists(os.path.join(ROOT, path)), path
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignore = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*" and set(ignore) >= {"!pyproject.toml", "!README.md", "!beamscore/"}
