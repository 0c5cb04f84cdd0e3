"""``--resume`` finds the same job by content: the model's files (whatever ``fingerprint.pb``
says) and each input's rows; a refusal names what changed, old and new, and the way out.

An unfinished output is made as a killed job leaves it: a finished run whose manifest,
``_SUCCESS`` and some unit receipts are removed (``test_resume`` kills real processes).
"""

from __future__ import annotations

import json
import os
import shutil

import builders
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import read_output
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.model.content import _checksum, changed_file, crc32c_of, model_files
from beamscore.model.inspect import inspect_model


class Scale(tf.Module):
    def __init__(self, w: float):
        super().__init__()
        self.w = tf.Variable(np.full([4], w, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.reduce_sum(x * self.w, axis=1)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """Two exports of one graph with other weights (w = 2 and w = 3), each with its fingerprint.pb."""
    root = tmp_path_factory.mktemp("weights")
    paths = {}
    for name, w in (("old", 2.0), ("new", 3.0)):
        module = Scale(w)
        paths[name] = str(root / name)
        tf.saved_model.save(module, paths[name], signatures={"serving_default": module.serve})
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two Parquet files of 120 rows, row groups of 20: 12 work units of 20 rows."""
    return builders.write_parquet_shards(str(tmp_path_factory.mktemp("data")), rows=240, shards=2, row_group_size=20)


def job(model: str, data_dir: str, out, rows_per_unit: int = 20) -> list[str]:
    units = ["--rows-per-unit", str(rows_per_unit)]
    return ["score", "--model", model, "--input", data_dir, "--output", str(out), "--keep", "id", *units]


def as_if_killed(out) -> None:
    """The output as a job killed after some units leaves it: no manifest, half the receipts."""
    (out / "_manifest.json").unlink()
    (out / "_SUCCESS").unlink(missing_ok=True)
    receipts = sorted(f for f in os.listdir(out / "_units") if f.startswith("part-"))
    for name in receipts[len(receipts) // 2 :]:
        (out / "_units" / name).unlink()


def test_resume_refuses_variables_replaced_under_an_old_fingerprint(weights, data, tmp_path, capsys):
    """The issue's case: variables/ replaced in place, fingerprint.pb left as it was; the
    resume used to exit 0 with half the units from each model's weights."""
    model = tmp_path / "model"
    shutil.copytree(weights["old"], model)
    paths, ids, x = data
    data_dir = os.path.dirname(paths[0])
    out = tmp_path / "out"
    assert main(job(str(model), data_dir, out)) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    recorded = manifest["model"]["files"]
    assert {"saved_model.pb", "fingerprint.pb", "variables/variables.index"} <= set(recorded)
    shard = next(n for n in recorded if n.startswith("variables/variables.data"))
    assert recorded[shard] == {"size": os.path.getsize(model / shard), "crc32c": crc32c_of_local(model / shard)}
    as_if_killed(out)
    fingerprint = inspect_model(str(model)).fingerprint
    shutil.rmtree(model / "variables")
    shutil.copytree(os.path.join(weights["new"], "variables"), model / "variables")  # an rsync of variables/ only
    assert inspect_model(str(model)).fingerprint == fingerprint  # fingerprint.pb cannot tell

    capsys.readouterr()
    assert main([*job(str(model), data_dir, out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"the model {model} changed in place" in err and "fingerprint.pb still names the same export" in err
    assert f"{shard}: crc32c was " in err
    assert "--model-version N" in err and "pass --overwrite to rescore every unit" in err
    assert not (out / "_manifest.json").exists()

    # the way out: --overwrite scores every row with the new weights
    assert main([*job(str(model), data_dir, out), "--overwrite"]) == 0
    table = read_output(str(out))
    assert table["id"].to_pylist() == ids.tolist()
    assert_scores_close(table["y"], x.sum(axis=1) * 3.0)


def crc32c_of_local(path) -> str:
    import fsspec

    return crc32c_of(fsspec.filesystem("file"), str(path))


def test_resume_refusal_names_the_file_whose_rows_changed(weights, data, tmp_path, capsys):
    paths, _ids, _x = data
    data_dir = tmp_path / "data"
    shutil.copytree(os.path.dirname(paths[0]), data_dir)
    out = tmp_path / "out"
    assert main(job(weights["old"], str(data_dir), out)) == 0
    as_if_killed(out)
    grown = data_dir / "shard-01.parquet"
    table = pq.read_table(grown)
    pq.write_table(pa.concat_tables([table, table.slice(0, 50)]), grown, row_group_size=20)

    capsys.readouterr()
    assert main([*job(weights["old"], str(data_dir), out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"beamscore: error: --resume: input {grown} had 120 rows when {out} was started, now 170; "
        "resuming would mix rows of the old and the new file: pass --overwrite to start again"
    )


def test_resume_refusal_names_a_changed_rows_per_unit_by_its_flag(weights, data, tmp_path, capsys):
    paths, _ids, _x = data
    out = tmp_path / "out"
    data_dir = os.path.dirname(paths[0])
    assert main(job(weights["old"], data_dir, out)) == 0
    as_if_killed(out)
    capsys.readouterr()
    assert main([*job(weights["old"], data_dir, out, rows_per_unit=40), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--rows-per-unit was 20, now 40; pass --overwrite" in err
    assert "rows_per_unit" not in err and "work units was" not in err


def test_a_job_file_without_rows_per_unit_still_names_the_file_split_otherwise(weights, data, tmp_path, capsys):
    """A job file written before --rows-per-unit was recorded: the unit lists are compared, and
    the refusal names the first file split otherwise rather than printing both lists."""
    paths, _ids, _x = data
    out = tmp_path / "out"
    data_dir = os.path.dirname(paths[0])
    assert main(job(weights["old"], data_dir, out)) == 0
    as_if_killed(out)
    job_file = out / "_units" / "_job.json"
    identity = json.loads(job_file.read_text())
    del identity["rows_per_unit"]
    job_file.write_text(json.dumps(identity))
    capsys.readouterr()
    assert main([*job(weights["old"], data_dir, out, rows_per_unit=40), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"input {paths[0]} was split into 6 work units when {out} was started, now 3 (same 120 rows" in err
    assert "--rows-per-unit" in err


def test_model_files_compare_and_store_checksums(tmp_path):
    """A store's own checksum is used as it is (no read); local files are hashed; a difference
    is worded file by file."""
    import fsspec

    mem = fsspec.filesystem("memory")
    assert _checksum(mem, "/nowhere", {"crc32c": "AAAAAA=="}) == {"crc32c": "AAAAAA=="}
    assert _checksum(mem, "/nowhere", {"ETag": '"abc-2"'}) == {"etag": "abc-2"}
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"graph")
    (tmp_path / "variables" / "variables.index").write_bytes(b"index")
    local = fsspec.filesystem("file")
    before = model_files(local, str(tmp_path))
    assert before["saved_model.pb"] == {"size": 5, "crc32c": crc32c_of(local, str(tmp_path / "saved_model.pb"))}
    assert changed_file(before, model_files(local, str(tmp_path))) is None
    (tmp_path / "variables" / "variables.index").write_bytes(b"INDEX")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_bytes(b"a\nb\n")
    assert changed_file(before, model_files(local, str(tmp_path))) == "assets/vocab.txt is new (4 bytes)"
    (tmp_path / "assets" / "vocab.txt").unlink()
    changed = changed_file(before, model_files(local, str(tmp_path)))
    assert changed.startswith("variables/variables.index: crc32c was ")
    (tmp_path / "saved_model.pb").unlink()
    assert changed_file(before, model_files(local, str(tmp_path))) == "saved_model.pb is gone (was 5 bytes)"


def test_a_stores_checksums_are_read_from_its_listing(weights, tmp_path):
    """On GCS the listing's crc32c is the record, spelt as the local CRC32C is (a model and its
    upload compare equal); on S3 the ETag."""
    import fsspec
    from gcs_emulator import gcs_emulator
    from s3_server import s3_store

    local = model_files(fsspec.filesystem("file"), weights["old"])
    with gcs_emulator(tmp_path, "models") as gcs:
        gcs.put(weights["old"], "models/m", recursive=True)
        assert model_files(gcs, "models/m") == local
    with s3_store():
        s3 = fsspec.filesystem("s3")
        s3.mkdir("model-bucket")
        s3.put(weights["old"], "model-bucket/m", recursive=True)
        on_s3 = model_files(s3, "model-bucket/m")
        assert set(on_s3) == set(local) and all(set(facts) == {"size", "etag"} for facts in on_s3.values())
        assert {name: facts["size"] for name, facts in on_s3.items()} == {n: f["size"] for n, f in local.items()}
