"""Planning every input file before the job: concurrently, with a progress line, and every
file's schema checked (a float64 shard among float32 ones is refused up front)."""

from __future__ import annotations

import io
import json
import os
import time

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scores import assert_scores_close

from beamscore import fs as bfs
from beamscore.cli import main
from beamscore.config import ScoreConfig
from beamscore.errors import BeamscoreError
from beamscore.io.parquet import ParquetSource
from beamscore.io.schemas import SameSchema
from beamscore.pipelines.plan import plan_job
from beamscore.pipelines.survey import CHUNK, PlanningProgress, survey
from beamscore.transforms.read import plan_units


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return job_models.build_all(str(tmp_path_factory.mktemp("models")))["raising"]


def write_shards(directory, n: int, rows: int = 3, dtype=np.float32, seed: int = 0) -> np.ndarray:
    """``n`` Parquet files ``f00000.parquet``... of ``rows`` rows (id, x[4]), row groups of 2; all x."""
    os.makedirs(directory, exist_ok=True)
    x = np.random.default_rng(seed).normal(size=(n * rows, 4)).astype(dtype)
    for i in range(n):
        part = x[i * rows : (i + 1) * rows]
        table = pa.table(
            {
                "id": np.arange(i * rows, (i + 1) * rows),
                "x": pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), 4),
            }
        )
        pq.write_table(table, os.path.join(directory, f"f{i:05d}.parquet"), row_group_size=2)
    return x


def test_many_files_on_a_slow_store_plan_concurrently(tmp_path):
    from benchmarks.delayed_fs import DelayedFileSystem, register

    write_shards(tmp_path, 300)
    register(0.05)  # one by one, 300 files would take 300 x 2 requests x 50 ms = 30 s
    facts = bfs.list_files([f"delayed://{tmp_path}/*.parquet"])
    source = ParquetSource(rows_per_unit=2)
    start = time.perf_counter()
    units = survey(source, facts, SameSchema(facts[0].url, source.columns(facts[0].url), ["x"], ["id"]))
    seconds = time.perf_counter() - start
    assert seconds < 5, f"planning 300 files took {seconds:.1f} s: not concurrent"
    assert DelayedFileSystem.requests <= 300 + 5  # one tail read per file (and the first file's columns)
    serial = plan_units(source, [str(tmp_path / f"f{i:05d}.parquet") for i in range(300)])
    assert [(u.shard, u.index, u.start, u.stop, u.rows, u.first_row) for u in units] == [
        (u.shard, u.index, u.start, u.stop, u.rows, u.first_row) for u in serial
    ]
    assert [u.path for u in units] == [f.url for f in facts for _ in range(2)]


def test_progress_line_after_a_few_seconds_only():
    out = io.StringIO()
    quiet = PlanningProgress(out, after=60)
    quiet(CHUNK, 2 * CHUNK)
    assert out.getvalue() == ""
    shown = PlanningProgress(out, after=0, every=0)
    shown(12_000, 20_000)
    shown(20_000, 20_000)
    assert out.getvalue() == "beamscore: planned 12,000 of 20,000 files\nbeamscore: planned 20,000 of 20,000 files\n"


def test_a_float64_shard_among_float32_ones_is_refused_before_the_job(tmp_path, model, capsys):
    write_shards(tmp_path / "in", 3)
    write_shards(tmp_path / "odd", 1, dtype=np.float64)
    os.rename(tmp_path / "odd" / "f00000.parquet", tmp_path / "in" / "f00002b.parquet")
    out = tmp_path / "out"
    args = ["score", "--model", model, "--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("beamscore: error: ") and len(err.splitlines()) == 1
    assert "f00002b.parquet: column 'x' is float64 [4], expected float32 [4] as in the first input" in err
    assert not out.exists()  # refused before anything was written


def test_a_missing_keep_column_in_a_later_file_is_refused(tmp_path, model):
    write_shards(tmp_path, 2)
    pq.write_table(pq.read_table(tmp_path / "f00001.parquet").drop(["id"]), tmp_path / "f00001.parquet")
    config = ScoreConfig(model=model, inputs=[str(tmp_path / "*.parquet")], output=str(tmp_path / "o"), keep=["id"])
    with pytest.raises(BeamscoreError, match=r"f00001.parquet: no column 'id' to --keep"):
        plan_job(config)


def test_npy_shards_are_checked_each_from_its_header(tmp_path, model):
    np.save(tmp_path / "a.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((3, 5), np.float32))
    config = ScoreConfig(model=model, inputs=[str(tmp_path / "*.npy")], output=str(tmp_path / "o"))
    with pytest.raises(BeamscoreError, match=r"b.npy: column 'x' is float32 \[5\], expected float32 \[4\]"):
        plan_job(config)


def test_tfrecord_shards_are_checked_from_a_sample_of_records(tmp_path, model):
    import tensorflow as tf

    def write(name, feature):
        with tf.io.TFRecordWriter(str(tmp_path / name)) as w:
            for _ in range(3):
                w.write(tf.train.Example(features=tf.train.Features(feature={"x": feature})).SerializeToString())

    write("a.tfrecord", tf.train.Feature(float_list=tf.train.FloatList(value=[1, 2, 3, 4])))
    write("b.tfrecord", tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2, 3, 4])))
    config = ScoreConfig(model=model, inputs=[str(tmp_path / "*.tfrecord")], output=str(tmp_path / "o"))
    with pytest.raises(BeamscoreError, match=r"b.tfrecord: column 'x' is int64 \[4\], expected float32 \[4\]"):
        plan_job(config)


def test_on_the_workers_a_bad_shard_fails_the_job_naming_the_file(tmp_path, model, capsys):
    write_shards(tmp_path / "in", 2)
    write_shards(tmp_path / "odd", 1, dtype=np.float64)
    os.rename(tmp_path / "odd" / "f00000.parquet", tmp_path / "in" / "f00001b.parquet")
    args = ["score", "--model", model, "--input", str(tmp_path / "in" / "*.parquet")]
    args += ["--output", str(tmp_path / "out"), "--plan-on-workers"]
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "f00001b.parquet: column 'x' is float64 [4], expected float32 [4]" in err
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_resume_of_a_job_planned_on_the_workers(tmp_path, model, capsys):
    x = write_shards(tmp_path / "in", 4)
    out = tmp_path / "out"
    args = ["score", "--model", model, "--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out)]
    args += ["--keep", "id", "--rows-per-unit", "2", "--plan-on-workers"]
    assert main(args) == 0, capsys.readouterr().err
    first = json.loads((out / "_manifest.json").read_text())
    assert (first["units"], first["units_planned"], first["planned_on"]) == (8, 8, "workers")
    receipt = json.loads((out / "_units" / "_files" / "00002.json").read_text())
    assert receipt["units"] == [["part-00002-00000", 2], ["part-00002-00001", 1]]
    assert receipt["input"]["url"].endswith("f00002.parquet") and receipt["input"]["size"] > 0

    (out / "_manifest.json").unlink()  # as if killed before the end, with two units unfinished
    (out / "_units" / "part-00001-00001.json").unlink()
    (out / "_units" / "part-00003-00000.json").unlink()
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["units"], m["units_resumed"], m["units_planned"]) == (8, 6, 8)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (12, 12, 0)
    assert m["outputs"] == first["outputs"]
    table = pa.concat_tables([pq.read_table(f) for f in m["outputs"]])
    assert table["id"].to_pylist() == list(range(12))
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), job_models.reference(model, x)["y"])


def test_a_launcher_planned_run_resumed_with_planning_on_the_workers(tmp_path, model, capsys):
    write_shards(tmp_path / "in", 4)
    out = tmp_path / "out"
    args = ["score", "--model", model, "--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out)]
    args += ["--rows-per-unit", "2"]
    assert main(args) == 0, capsys.readouterr().err
    (out / "_manifest.json").unlink()
    (out / "_units" / "part-00000-00001.json").unlink()
    assert main([*args, "--resume", "--plan-on-workers"]) == 0, capsys.readouterr().err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["units"], m["units_resumed"], m["rows_in"], m["planned_on"]) == (8, 7, 12, "workers")


def test_dry_run_says_the_workers_plan(tmp_path, model, capsys):
    write_shards(tmp_path / "in", 2)
    args = ["score", "--model", model, "--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "o")]
    assert main([*args, "--plan-on-workers", "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "2 parquet file(s), rows and work units counted on the workers (--plan-on-workers" in shown
    assert main([*args, "--dry-run"]) == 0
    assert "2 parquet file(s), 6 rows, 2 work unit(s)" in capsys.readouterr().out
