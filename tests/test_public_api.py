"""Guard the public API: ``beamscore.__all__`` is the contract (httpx's habit)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from docs_blocks import read

import beamscore

EXPECTED = {
    "__version__",
    "BeamscoreError",
    "inspect_model",
    "ModelInfo",
    "ScoreConfig",
    "plan_job",
    "ParquetSource",
    "TFRecordSource",
    "NpzSource",
    "NpySource",
    "ParquetSink",
    "NpySink",
    "WorkUnit",
    "plan_units",
    "ReadBatches",
    "RunSignature",
    "WriteBatches",
    "WriteParquet",
    "WriteManifest",
    "SignatureModelHandler",
    "score",
    "JobFailed",
    "RowsFailed",
}


def test_all_is_the_expected_list():
    assert set(beamscore.__all__) >= EXPECTED
    assert len(beamscore.__all__) == len(set(beamscore.__all__))
    for name in beamscore.__all__:
        assert getattr(beamscore, name) is not None, name


def test_import_is_light():
    code = "import sys, beamscore; print('tensorflow' in sys.modules, 'apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_all_is_what_the_docs_document():
    table = read("docs/api.md").split("## The public API", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            documented.update(re.findall(r"`([A-Za-z_]+)`", line.split("|")[1]))
    assert documented == set(beamscore.__all__)


def test_every_lazy_name_is_public():
    assert set(beamscore._LAZY) <= set(beamscore.__all__)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_type_checkers_see_every_lazy_name():
    """The TYPE_CHECKING block imports each name of the lazy table from its module, and the
    package ships py.typed: mypy, pyright and jedi saw every public name as Any."""
    import ast

    with open(os.path.join(ROOT, "beamscore", "__init__.py")) as f:
        tree = ast.parse(f.read())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    typed = {alias.name: node.module for node in block.body for alias in node.names}
    assert typed == beamscore._LAZY
    assert os.path.exists(os.path.join(ROOT, "beamscore", "py.typed"))


def test_mypy_catches_a_misspelled_parameter_and_a_wrong_type(tmp_path):
    code = (
        "import beamscore\n"
        'beamscore.RunSignature("m", kep=["id"])\n'
        'beamscore.SignatureModelHandler("m", max_batch_rows="big")\n'
        'manifest: int = beamscore.score("m", "in", "out")\n'
    )
    (tmp_path / "user.py").write_text(code)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            "pyproject.toml",
            "--no-error-summary",
            str(tmp_path / "user.py"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    out = run.stdout
    assert 'Unexpected keyword argument "kep" for "RunSignature"' in out, out
    assert 'Argument "max_batch_rows" to "SignatureModelHandler" has incompatible type "str"' in out, out
    assert 'has type "dict[str, Any]", variable has type "int"' in out, out
