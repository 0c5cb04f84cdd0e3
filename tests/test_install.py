"""Every documented install resolves to exactly one TensorFlow distribution.

``tensorflow`` and ``tensorflow-cpu`` both ship the ``tensorflow/`` package, so an install
that pulls in both silently overwrites one with the other. TensorFlow therefore comes only
from the ``[cpu]`` or the ``[gpu]`` extra. The install lines of the Makefile, the
Dockerfile, ``benchmarks/gpu.sh``, the README and the shipped configs are resolved by pip
itself (``pip install --dry-run --ignore-installed --report``: metadata only, nothing is
installed, the running venv is not touched) from a copy of ``pyproject.toml``, in two
unions (see :func:`installs_to_resolve`), and each report must hold one TensorFlow and the
pinned Beam and TensorFlow versions. It needs the package index (as ``make install`` does);
the two resolutions run in parallel and took 25-40 s each alone and 110-125 s together on
this project's busy 2-core machine (load 5-8), hence ``slow``: ~25 CPU s each, most of it pip
parsing the index's pages of ~160 projects (cProfile). pip's reports are therefore kept in
pytest's cache (``.pytest_cache``) for :data:`REPORTS_KEPT_S`, under a digest of everything
that decides the resolution here (``pyproject.toml``, the installs resolved, pip's version
and settings, Python and the platform): any change to those resolves again at once, and so
does a fresh clone, ``pytest --cache-clear`` and ``-p no:cacheprovider``; what the cache
does not see is a new release on the index, at most :data:`REPORTS_KEPT_S` late.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from beamscore.doctor import TF_DISTRIBUTIONS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Files whose ``pip install`` lines are documented installs.
DOCUMENTED = (
    "Makefile",
    "Dockerfile",
    "benchmarks/gpu.sh",
    "README.md",
    *sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")),
    *sorted(os.path.join("configs", f) for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".yaml")),
)
#: Files whose install lines are whole installs (each names one of [cpu] / [gpu]); the
#: Dockerfile's base stage is the exception: it installs no TensorFlow, each target adds one.
WHOLE_INSTALLS = ("Makefile", "Dockerfile", "benchmarks/gpu.sh")
DOCKER_BASE = frozenset({"gcp", "s3"})
#: how long pip's reports of unchanged inputs are reused from pytest's cache: a day, so that
#: a new release on the index is seen by the next day's run
REPORTS_KEPT_S = 24 * 3600


def _read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def _project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def documented_installs() -> dict[frozenset[str], list[str]]:
    """Extras of every ``pip install ...[extras]`` of beamscore in the documented files -> where."""
    found: dict[frozenset[str], list[str]] = {}
    for path in DOCUMENTED:
        for line in _read(path).splitlines():
            if "pip install" not in line:
                continue
            for extras in re.findall(r"(?:\.|beamscore|/src)\[([a-z0-9,-]+)\]", line):
                found.setdefault(frozenset(extras.split(",")), []).append(path)
    return found


def _label(extras: frozenset[str]) -> str:
    return "[" + ",".join(sorted(extras)) + "]"


def installs_to_resolve() -> list[frozenset[str]]:
    """One install per TensorFlow extra: the union of the documented installs that name it,
    plus every backend extra (gcp, s3 and any added later).

    Extras only add requirements, so a second TensorFlow pulled in by any documented install
    shows up in the union that contains it; two resolutions instead of one per line keep the
    test short (each needs metadata of ~160 distributions from the index). Installs that
    name neither (the Dockerfile's base ``[gcp,s3]``, an add-on extra) are in both unions.
    """
    backends = set(_project()["optional-dependencies"]) - {"cpu", "gpu", "dev"}
    unions = []
    for tf in ("cpu", "gpu"):
        union = {tf, *backends}
        for extras in documented_installs():
            if tf in extras or not extras & {"cpu", "gpu"}:
                union |= extras
        unions.append(frozenset(union))
    return unions


def tensorflow_distributions(report: dict) -> dict[str, str]:
    """The TensorFlow distributions a pip ``--report`` would install: name -> version."""
    names = {canonicalize_name(n) for n in TF_DISTRIBUTIONS}
    installs = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    return {name: version for name, version in installs.items() if name in names}


def test_every_documented_install_picks_at_most_one_of_cpu_and_gpu():
    """Scripts and images pick exactly one; the README may also name an add-on extra alone
    (``[polars]`` next to an existing install), which is resolved within both unions."""
    found = documented_installs()
    assert {frozenset({"cpu", "dev"}), frozenset({"gpu"}), frozenset({"gpu", "gcp", "s3"})} <= set(found), found
    for extras, where in found.items():
        assert len(extras & {"cpu", "gpu"}) <= 1, f"{_label(extras)} in {where}"
        if extras != DOCKER_BASE and any(w in WHOLE_INSTALLS for w in where):
            assert len(extras & {"cpu", "gpu"}) == 1, f"{_label(extras)} in {where}"
    unions = installs_to_resolve()
    assert [sorted(u & {"cpu", "gpu"}) for u in unions] == [["cpu"], ["gpu"]]
    assert all(any(extras <= union for union in unions) for extras in found)


def test_tensorflow_is_only_in_the_cpu_and_gpu_extras():
    project = _project()
    tf = {canonicalize_name(n) for n in TF_DISTRIBUTIONS}
    assert not [d for d in project["dependencies"] if canonicalize_name(Requirement(d).name) in tf]
    for extra, deps in project["optional-dependencies"].items():
        named = {canonicalize_name(Requirement(d).name) for d in deps}
        assert bool(named & tf) == (extra in ("cpu", "gpu")), extra


def test_the_report_checker_counts_two_distributions():
    report = {
        "install": [
            {"metadata": {"name": "tensorflow_cpu", "version": "2.21.0"}},
            {"metadata": {"name": "TensorFlow", "version": "2.21.0"}},
            {"metadata": {"name": "tensorboard", "version": "2.21.0"}},
        ]
    }
    assert tensorflow_distributions(report) == {"tensorflow-cpu": "2.21.0", "tensorflow": "2.21.0"}


def _inputs_digest(installs: list[frozenset[str]]) -> str:
    """A digest of what decides pip's resolution of ``installs`` on this machine."""
    digest = hashlib.sha256()
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        digest.update(f.read())
    pip_settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("PIP_"))
    conf = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    facts = [[_label(i) for i in installs], importlib.metadata.version("pip"), pip_settings, conf.stdout]
    facts += [sys.version, platform.machine(), platform.libc_ver()]
    digest.update(json.dumps(facts, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def _kept(report: dict) -> dict:
    """What the test reads of a report: each install's name and version."""
    return {"install": [{"metadata": {k: i["metadata"][k] for k in ("name", "version")}} for i in report["install"]]}


@pytest.fixture(scope="module")
def resolved(request, tmp_path_factory) -> dict[frozenset[str], dict]:
    """pip's install report of each install, resolved from a copy of the project's metadata
    (or, for unchanged inputs, kept from a run less than :data:`REPORTS_KEPT_S` ago)."""
    installs = installs_to_resolve()
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    key = f"beamscore/install-reports/{_inputs_digest(installs)}"
    kept = cache.get(key, None) if cache is not None else None
    if kept and 0 <= time.time() - kept["at"] < REPORTS_KEPT_S:
        return {frozenset(label.strip("[]").split(",")): report for label, report in kept["reports"].items()}

    root = tmp_path_factory.mktemp("resolve")
    project = root / "beamscore-src"
    (project / "beamscore").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "beamscore/_version.py"):
        shutil.copy(os.path.join(ROOT, name), project / name)

    def resolve(extras: frozenset[str]) -> dict:
        report = root / f"report-{'-'.join(sorted(extras))}.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        command += ["--disable-pip-version-check", "--report", str(report), f"{project}{_label(extras)}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"pip could not resolve {_label(extras)}: {done.stderr[-2000:]}"
        with open(report) as f:
            return _kept(json.load(f))

    with ThreadPoolExecutor(max_workers=len(installs)) as pool:
        reports = dict(zip(installs, pool.map(resolve, installs), strict=True))
    if cache is not None:
        cache.set(key, {"at": time.time(), "reports": {_label(i): r for i, r in reports.items()}})
    return reports


@pytest.mark.slow
def test_each_install_resolves_to_one_tensorflow_and_the_pinned_versions(resolved):
    project = _project()
    beam_spec = next(Requirement(d) for d in project["dependencies"] if d.startswith("apache-beam")).specifier
    pins = dict(re.findall(r"^ARG (\w+)=(\S+)$", _read("Dockerfile"), re.M))
    for extras, report in resolved.items():
        label = _label(extras)
        versions = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
        assert "beamscore" in versions, label
        assert beam_spec.contains(versions["apache-beam"]), (label, versions["apache-beam"])
        assert versions["apache-beam"].split(".")[:2] == pins["BEAM_VERSION"].split(".")[:2], label
        tf = tensorflow_distributions(report)
        expected = "tensorflow" if "gpu" in extras else "tensorflow-cpu"
        assert list(tf) == [expected], (label, tf)
        assert tf[expected].split(".")[:2] == pins["TF_VERSION"].split(".")[:2], (label, tf)
        cuda = sorted(name for name in versions if name.startswith("nvidia-") and name.endswith("-cu12"))
        assert bool(cuda) == ("gpu" in extras), (label, cuda)  # [gpu] brings CUDA's wheels, [cpu] none


def _editable_flags() -> list[str]:
    """The flags of the Makefile's editable install of this project (``make install``)."""
    import shlex

    line = next(
        line for line in _read("Makefile").splitlines() if "pip install" in line and re.search(r"-e '\.\[", line)
    )
    flags = shlex.split(line.split("pip install", 1)[1])
    return [ROOT if f.startswith(".[") else f for f in flags if f != "--quiet"]  # this folder, no extras


@pytest.mark.slow
def test_the_makefile_editable_install_is_visible_to_type_checkers_from_a_users_folder(tmp_path):
    """setuptools' default editable mode installs an import hook that mypy and pyright cannot
    follow ("Cannot find implementation or library stub for module named beamscore" from a
    user's own folder); ``make install``'s path-based mode writes a ``.pth`` of this folder.
    The Makefile's own flags install into a throwaway venv (no dependencies; the build backend
    comes from the package index, as for ``make install``), and mypy, run from another folder
    against that venv's interpreter, sees beamscore's types: a misspelt keyword is flagged."""
    import venv

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    flags = _editable_flags()
    assert "editable_mode=compat" in flags, flags
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", *flags],
        check=True,
        capture_output=True,
        timeout=600,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    pth = [os.path.join(site, f) for f in os.listdir(site) if f.endswith(".pth") and "beamscore" in f]
    assert pth and ROOT in _read(pth[0]).splitlines(), (os.listdir(site), pth)
    user = tmp_path / "user"
    user.mkdir()
    (user / "job.py").write_text('import beamscore\nbeamscore.SignatureModelHandler("m", kep=["id"])\n')
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--python-executable",
            python,
            "--no-incremental",
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "job.py",
        ],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert 'Unexpected keyword argument "kep" for "SignatureModelHandler"' in checked.stdout, checked.stdout
