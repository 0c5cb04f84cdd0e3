"""End-to-end dead letters: bad rows and records cost themselves, the job goes on, the counts add up.

Each test runs ``beamscore score`` (real SavedModels, real Beam runner, real files), checks
the manifest's ``rows_in == rows_out + rows_failed``, reads ``_errors/`` back and compares
the scored rows with a direct call of the signature on the good rows.
"""

from __future__ import annotations

import json
import os

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import read_output
from scores import assert_scores_close

from beamscore.cli import main


@pytest.fixture(scope="module")
def jm(tmp_path_factory) -> dict[str, str]:
    return job_models.build_all(str(tmp_path_factory.mktemp("job_models")))


def score(*args: str) -> int:
    return main(["score", *args])


def manifest_of(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    return m


def errors_of(out) -> list[dict]:
    files = sorted((out / "_errors").glob("part-*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def fixed(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def write(path, table: pa.Table, row_group_size: int | None = None) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def test_a_row_that_makes_the_model_raise_costs_only_itself(jm, tmp_path, capsys):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    x[123, 0] = 150.0  # the model asserts x[:, 0] < 100
    ids = np.arange(300, dtype=np.int64)
    for shard, rows in enumerate((slice(0, 150), slice(150, 300))):
        write(tmp_path / "in" / f"s{shard}.parquet", pa.table({"id": ids[rows], "x": fixed(x[rows])}), 50)
    out = tmp_path / "out"
    args = ["--model", jm["raising"], "--input", str(tmp_path / "in"), "--output", str(out), "--keep", "id"]
    assert score(*args, "--batch-size", "64") == 1  # default: any failed row fails the job...
    err = capsys.readouterr().err
    assert "1 of 300 rows failed" in err and "_errors" in err
    m = manifest_of(out)  # ...after the outputs and the manifest are written
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (300, 299, 1)
    (bad,) = errors_of(out)
    assert (bad["source"], bad["row"], bad["stage"]) == (str(tmp_path / "in" / "s0.parquet"), 123, "model")
    assert "x[:, 0] must be below 100" in bad["error"] and "Graph execution" not in bad["error"]
    assert json.loads(bad["raw"])["id"] == 123
    assert not (out / "_temporary").exists() and not (out / "_errors" / "_temporary").exists()
    table = read_output(str(out))
    good = ids != 123
    assert table["id"].to_numpy().tolist() == ids[good].tolist()
    expected = job_models.reference(jm["raising"], x[good])
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), expected["y"])
    assert_scores_close(table["s"].to_numpy(), expected["s"])

    assert score(*args, "--overwrite", "--max-failed-rows", "1") == 0
    assert score(*args, "--overwrite", "--max-failed-fraction", "0.001") == 1
    assert "--max-failed-fraction 0.001" in capsys.readouterr().err
    assert score(*args, "--overwrite", "--max-failed-fraction", "0.01") == 0
    assert manifest_of(out)["failure_limits"] == {"max_failed_rows": None, "max_failed_fraction": 0.01}


def test_bad_rows_and_nan_among_good_ones(jm, tmp_path):
    # (a float64 shard among float32 ones is refused before the job: tests/pipelines/test_survey.py)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    ids = np.arange(60, dtype=np.int64)
    # shard 0: good (its schema is the one the launcher checks)
    write(tmp_path / "in" / "s0.parquet", pa.table({"id": ids[:30], "x": fixed(x[:30])}), 10)
    # shard 1: variable-length lists; row 5 has 3 values, row 7 is null, row 12 holds NaN
    lists = [list(r) for r in x[30:60]]
    lists[5], lists[7], lists[12] = lists[5][:3], None, [float("nan"), 1.0, 2.0, 3.0]
    s1 = pa.table({"id": ids[30:60], "x": pa.array(lists, type=pa.list_(pa.float32()))})
    write(tmp_path / "in" / "s1.parquet", s1, 10)
    out = tmp_path / "out"
    code = score(
        "--model", jm["raising"], "--input", str(tmp_path / "in"), "--output", str(out), "--keep", "id",
        "--reject-nan", "--max-failed-rows", "3",
    )  # fmt: skip
    assert code == 0
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (60, 57, 3)
    assert len(m["errors"]) == 1 and all(os.path.basename(e).startswith("part-0000") for e in m["errors"])
    errors = errors_of(out)
    by_row = {(os.path.basename(e["source"]), e["row"]): e for e in errors}
    assert len(by_row) == 3
    assert "column 'x' has 3 values, input 'x' takes 4 per row" in by_row[("s1.parquet", 5)]["error"]
    assert "column 'x' is null" in by_row[("s1.parquet", 7)]["error"]
    assert "NaN" in by_row[("s1.parquet", 12)]["error"] and "--reject-nan" in by_row[("s1.parquet", 12)]["error"]
    assert json.loads(by_row[("s1.parquet", 5)]["raw"]) == {"id": 35, "x": lists[5]}
    table = read_output(str(out))
    good = np.ones(60, dtype=bool)
    good[[35, 37, 42]] = False
    assert table["id"].to_numpy().tolist() == ids[good].tolist()
    expected = job_models.reference(jm["raising"], x[good])
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), expected["y"])


def _example(i: int, x: np.ndarray) -> bytes:
    feature = {
        "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
        "x": tf.train.Feature(float_list=tf.train.FloatList(value=x.tolist())),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_tfrecord(path, records: list[bytes]) -> tuple[str, list[int]]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    offsets = np.cumsum([0] + [len(r) + 16 for r in records]).tolist()
    return str(path), offsets


def test_corrupt_tfrecord_shard_among_good_ones(jm, tmp_path):
    rng = np.random.default_rng(12)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    records = [_example(i, x[i]) for i in range(120)]
    _write_tfrecord(tmp_path / "in" / "s0.tfrecord", records[:40])
    # shard 1: record 10 (file row 10, id 50) has a flipped byte in its data: bad data CRC
    p1, offsets = _write_tfrecord(tmp_path / "in" / "s1.tfrecord", records[40:80])
    data = bytearray(open(p1, "rb").read())  # noqa: SIM115
    data[offsets[10] + 20] ^= 0xFF
    open(p1, "wb").write(bytes(data))  # noqa: SIM115
    # shard 2: cut in the middle of record 25: records 0-24 are read, then the file ends
    p2, offsets = _write_tfrecord(tmp_path / "in" / "s2.tfrecord", records[80:])
    data = open(p2, "rb").read()  # noqa: SIM115
    open(p2, "wb").write(data[: offsets[25] + 7])  # noqa: SIM115
    out = tmp_path / "out"
    code = score(
        "--model", jm["raising"], "--input", str(tmp_path / "in"), "--output", str(out), "--keep", "id",
        "--batch-size", "16",
    )  # fmt: skip
    assert code == 1
    m = manifest_of(out)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (40 + 40 + 26, 40 + 39 + 25, 2)
    errors = sorted(errors_of(out), key=lambda e: e["source"])
    assert [(os.path.basename(e["source"]), e["row"], e["stage"]) for e in errors] == [
        ("s1.tfrecord", 10, "read"),
        ("s2.tfrecord", 25, "read"),
    ]
    assert "corrupt record 10" in errors[0]["error"] and "data's CRC" in errors[0]["error"]
    assert errors[0]["raw"] is not None  # the damaged record's bytes, for inspection
    assert "truncated record 25" in errors[1]["error"]
    table = read_output(str(out))
    good = np.r_[0:50, 51:105]
    assert table["id"].to_numpy().tolist() == good.tolist()
    expected = job_models.reference(jm["raising"], x[good])
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), expected["y"])
