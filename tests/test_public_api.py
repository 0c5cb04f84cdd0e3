"""Guard the public API: ``beamscore.__all__`` is the contract (httpx's habit)."""

from __future__ import annotations

import subprocess
import sys

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
}


def test_all_is_the_expected_list():
    assert set(beamscore.__all__) >= EXPECTED
    for name in beamscore.__all__:
        assert getattr(beamscore, name) is not None, name


def test_import_is_light():
    code = "import sys, beamscore; print('tensorflow' in sys.modules, 'apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
