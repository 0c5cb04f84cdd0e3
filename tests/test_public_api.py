"""Guard the public API: ``beamscore.__all__`` is the contract (httpx's habit)."""

from __future__ import annotations

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
