"""The manifest covers the whole job or is not written; unit receipts say which units are done."""

from __future__ import annotations

import json

import pytest

from beamscore.transforms.batch import UnitResult
from beamscore.transforms.manifest import MANIFEST, write_manifest
from beamscore.transforms.receipts import completed_units, write_receipt


def result(name: str, files: list[str], failed: int = 0) -> UnitResult:
    return UnitResult(unit=name, input="in", files=files, rows_in=10, rows_out=10 - failed, rows_failed=failed)


def test_a_missing_unit_means_no_manifest(tmp_path):
    with pytest.raises(RuntimeError, match="have no result"):
        write_manifest(str(tmp_path), {}, [result("part-00000-00000", [])], expected_units=["part-00000-00000", "b"])
    assert not (tmp_path / MANIFEST).exists()


def test_manifest_merges_previous_units_and_sums_counts(tmp_path):
    new = [result("part-00000-00001", ["f1"], failed=2)]
    old = [result("part-00000-00000", ["f0"])]
    m = write_manifest(
        str(tmp_path), {"model": {}}, new, previous=old, expected_units=["part-00000-00000", "part-00000-00001"]
    )
    assert json.loads((tmp_path / MANIFEST).read_text()) == m
    assert (m["units"], m["units_resumed"], m["outputs"]) == (2, 1, ["f0", "f1"])
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (20, 18, 2)


def test_receipts_count_only_units_whose_files_exist(tmp_path):
    (tmp_path / "a.parquet").write_text("x")
    write_receipt(str(tmp_path), result("part-00000-00000", [str(tmp_path / "a.parquet")]))
    write_receipt(str(tmp_path), result("part-00000-00001", [str(tmp_path / "gone.parquet")]))
    (tmp_path / "_units" / "part-00000-00002.json").write_text("{not json")
    done = completed_units(str(tmp_path))
    assert list(done) == ["part-00000-00000"] and done["part-00000-00000"].rows_in == 10


def test_manifest_records_where_the_model_ran(tmp_path):
    cpu = UnitResult(unit="part-00000-00000", input="in", device="CPU")
    gpu = UnitResult(unit="part-00000-00001", input="in", device="GPU:0 (NVIDIA L4)")
    unscored = UnitResult(unit="part-00000-00002", input="in")
    assert write_manifest(str(tmp_path), {}, [cpu, unscored])["device"] == "CPU"
    assert write_manifest(str(tmp_path), {}, [gpu], previous=[cpu])["device"] == "CPU, GPU:0 (NVIDIA L4)"
    assert write_manifest(str(tmp_path), {}, [unscored])["device"] is None
    write_receipt(str(tmp_path), gpu)  # a resumed unit keeps its device
    assert completed_units(str(tmp_path))["part-00000-00001"].device == "GPU:0 (NVIDIA L4)"
