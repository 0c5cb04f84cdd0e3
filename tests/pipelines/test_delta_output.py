"""``--output-format delta``: a job's part files committed to a Delta table in one commit.

Tables are read back with ``deltalake`` itself (``DeltaTable(...).to_pyarrow_table()``),
polars (``pl.read_delta``) and duckdb over the table's file list (duckdb's own ``delta``
reader needs a download: FACTS.md); every score is compared with a direct call of the
signature, ids exact. Local disk and S3 (moto's server).
"""

from __future__ import annotations

import json
import threading
import time

import duckdb
import fsspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call
from deltalake import DeltaTable, write_deltalake
from s3_server import s3_store
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.io.delta_sink import JOB_PREFIX, commit, storage_options


def job(model: str, inputs: list[str], table, *args: str) -> int:
    return main(
        ["score", "--model", model, "--output", str(table), "--output-format", "delta", "--keep", "id"]
        + [a for path in inputs for a in ("--input", path)]
        + ["--rows-per-unit", "128", *args]
    )


def manifest_of(table) -> dict:
    (folder,) = [p for p in table.iterdir() if p.name.startswith(JOB_PREFIX) and (p / "_manifest.json").exists()]
    return json.loads((folder / "_manifest.json").read_text())


def check_scores(model: str, got: pa.Table, ids: np.ndarray, x: np.ndarray) -> None:
    """The table's rows are exactly the inputs' ids, scored as a direct call scores them."""
    got = got.sort_by("id")
    assert got["id"].to_pylist() == sorted(ids.tolist())
    rows = np.searchsorted(ids, got["id"].to_numpy())
    expected = direct_call(model, "serving_default", x=x[rows])
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
    assert got["label"].to_pylist() == expected["label"].tolist()


def test_a_job_lands_in_a_delta_table_in_one_commit(models, shards, tmp_path, capsys):
    paths, ids, x = shards
    table = tmp_path / "table"
    assert job(models["two_sig"], paths, table) == 0
    assert f"committed to Delta table {table} as version 0" in capsys.readouterr().out
    dt = DeltaTable(str(table))
    assert dt.version() == 0 and len(dt.history()) == 1  # one commit holds the whole job
    manifest = manifest_of(table)
    assert manifest["table_commit"] == {"table": str(table), "version": 0, "files": manifest["units"], "rows": 700}
    assert sorted(u.rsplit("/", 1)[-1] for u in dt.file_uris()) == sorted(
        o.rsplit("/", 1)[-1] for o in manifest["outputs"]
    )
    check_scores(models["two_sig"], dt.to_pyarrow_table(), ids, x)
    # other readers: polars' read_delta, duckdb over the table's own file list
    check_scores(models["two_sig"], pl.read_delta(str(table)).to_arrow(), ids, x)
    files = ", ".join(f"'{u}'" for u in dt.file_uris())
    check_scores(models["two_sig"], duckdb.sql(f"SELECT * FROM read_parquet([{files}])").fetch_arrow_table(), ids, x)
    # --resume after the commit: complete, and nothing is committed twice
    assert job(models["two_sig"], paths, table, "--resume") == 0
    assert "already complete" in capsys.readouterr().out
    assert DeltaTable(str(table)).version() == 0
    assert manifest_of(table)["table_commit"]["version"] == 0


def test_a_second_job_appends_and_a_commit_is_never_repeated(models, shards, tmp_path):
    paths, ids, x = shards
    table = tmp_path / "table"
    assert job(models["two_sig"], paths[:1], table) == 0
    assert job(models["two_sig"], paths[1:], table) == 0
    dt = DeltaTable(str(table))
    assert dt.version() == 1
    check_scores(models["two_sig"], dt.to_pyarrow_table(), ids, x)
    # committing a job's folder again (a resume after a crash past the commit) adds nothing
    folder = next(p for p in table.iterdir() if p.name.startswith(JOB_PREFIX))
    assert commit(str(table), str(folder))["already_committed"]
    assert DeltaTable(str(table)).version() == 1


def test_the_same_job_again_is_refused_and_overwrite_does_not_apply(models, shards, tmp_path, capsys):
    paths, _ids, _x = shards
    table = tmp_path / "table"
    assert job(models["two_sig"], paths[:1], table) == 0
    capsys.readouterr()
    assert job(models["two_sig"], paths[:1], table) == 2  # its folder is there: --resume, never twice
    assert job(models["two_sig"], paths[:1], table, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "--overwrite does not apply to a Delta table output" in err
    assert DeltaTable(str(table)).version() == 0


def test_a_commit_that_failed_is_made_by_resume(models, shards, tmp_path, monkeypatch, capsys):
    """The promise of the failed commit's line: the units are all written, ``--resume`` finds
    the job complete and commits its files (once)."""
    import deltalake.transaction

    paths, ids, x = shards
    table = tmp_path / "table"

    def store_down(*args, **kwargs):
        raise OSError("the store is down")

    with monkeypatch.context() as patch:
        patch.setattr(deltalake.transaction, "create_table_with_add_actions", store_down)
        assert job(models["two_sig"], paths, table) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the Delta commit of 6 files failed (OSError: the store is down)" in err and "--resume" in err
    assert not (table / "_delta_log").exists()
    assert job(models["two_sig"], paths, table, "--resume") == 0
    dt = DeltaTable(str(table))
    assert dt.version() == 0
    check_scores(models["two_sig"], dt.to_pyarrow_table(), ids, x)


def test_a_table_with_other_columns_is_refused_and_left_as_it_was(models, shards, tmp_path, capsys):
    paths, _ids, _x = shards
    table = tmp_path / "table"
    write_deltalake(str(table), pa.table({"id": [1, 2], "other": ["a", "b"]}))
    assert job(models["two_sig"], paths[:1], table) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f"beamscore: error: {table}: the table's columns (id, other) are not the job's (label, scores, id); they "
        "differ in label, other, scores; the job did not start: score into another table, or give the job the "
        "table's columns"
    )
    dt = DeltaTable(str(table))
    assert dt.version() == 0 and dt.to_pyarrow_table().num_rows == 2
    assert not [p for p in table.iterdir() if p.name.startswith(JOB_PREFIX)]  # refused before the job
    # the same check at the commit, for what the launcher could not tell (an output of unknown rank)
    folder = _folder_of_parts(table, f"{JOB_PREFIX}{7:016x}", 0)
    with pytest.raises(BeamscoreError, match=r"they differ in other; nothing was committed"):
        commit(str(table), folder)


def test_a_directory_of_other_files_is_no_table_to_score_into(models, shards, tmp_path, capsys):
    paths, _ids, _x = shards
    table = tmp_path / "parquet_output"
    table.mkdir()
    (table / "part-00000-00000.parquet").write_bytes(b"PAR1")
    assert job(models["two_sig"], paths[:1], table) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"beamscore: error: {table} holds files and no Delta table (no _delta_log; part-00000-00000.parquet): "
        "give --output-format delta a new directory or a Delta table"
    )
    assert sorted(p.name for p in table.iterdir()) == ["part-00000-00000.parquet"]


def test_two_processes_committing_at_once_both_land(tmp_path):
    """The same race as below, between two processes (two jobs' launchers)."""
    import subprocess
    import sys

    table = tmp_path / "table"
    folders = [_folder_of_parts(table, f"{JOB_PREFIX}{i:016x}", 100 * i) for i in range(2)]
    start = time.time() + 3  # both wait for the same moment, their imports done
    code = (
        "import sys, time; from beamscore.io.delta_sink import commit; "
        "time.sleep(max(0, float(sys.argv[3]) - time.time())); print(commit(sys.argv[1], sys.argv[2], 20)['version'])"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(table), f, str(start)], stdout=subprocess.PIPE, text=True)
        for f in folders
    ]
    versions = sorted(int(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert versions == [0, 1]
    assert sorted(DeltaTable(str(table)).to_pyarrow_table()["id"].to_pylist()) == [*range(20), *range(100, 120)]


def test_a_job_with_too_many_failed_rows_commits_nothing(models, tmp_path):
    x = np.ones((20, 4), np.float32)
    mask = np.zeros(20, bool)
    mask[3] = True
    xs = pa.array(list(x), type=pa.list_(pa.float32(), 4), mask=mask)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "a.parquet")
    pq.write_table(pa.table({"id": np.arange(20), "x": xs}), path)
    table = tmp_path / "table"
    assert job(models["two_sig"], [path], table) == 1
    assert manifest_of(table)["rows_failed"] == 1
    assert not (table / "_delta_log").exists()


def _folder_of_parts(table, name: str, first: int) -> str:
    folder = table / name
    folder.mkdir(parents=True)
    for part in range(2):
        ids = np.arange(first + 10 * part, first + 10 * part + 10)
        pq.write_table(pa.table({"id": ids}), folder / f"part-00000-{part:05d}.parquet")
    return str(folder)


def test_two_jobs_committing_at_once_both_land(tmp_path):
    """Both create the table at the same moment (one creates it, the other appends), or
    append at the same version: Delta's optimistic concurrency lets both blind appends land."""
    table = tmp_path / "table"
    folders = [_folder_of_parts(table, f"{JOB_PREFIX}{i:016x}", 100 * i) for i in range(4)]
    results: list = [None] * 4
    barrier = threading.Barrier(4)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = commit(str(table), folders[i], 20)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, dict) for r in results), "\n".join(str(r) for r in results if not isinstance(r, dict))
    dt = DeltaTable(str(table))
    assert sorted(r["version"] for r in results) == [0, 1, 2, 3] == list(range(dt.version() + 1))
    assert sorted(dt.to_pyarrow_table()["id"].to_pylist()) == sorted(
        i for k in range(4) for i in range(100 * k, 100 * k + 20)
    )


def test_a_commit_that_cannot_land_is_one_line_naming_the_way_back(tmp_path, monkeypatch):
    """A commit delta-rs gives up on (here: it raises as a conflict past its retries would) is
    one line, exit 2 at the CLI, naming the folder that keeps the files and ``--resume``."""
    import deltalake
    from deltalake.exceptions import CommitFailedError

    table = tmp_path / "table"
    write_deltalake(str(table), pa.table({"id": pa.array([1], pa.int64())}))
    folder = _folder_of_parts(table, f"{JOB_PREFIX}{1:016x}", 0)

    def conflict(*args, **kwargs):
        raise CommitFailedError("Transaction failed: a concurrent transaction conflicted")

    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction", conflict)
    with pytest.raises(BeamscoreError) as err:
        commit(str(table), folder, 20)
    assert str(err.value) == (
        f"{table}: the Delta commit of 2 files failed (CommitFailedError: Transaction failed: a concurrent "
        f"transaction conflicted); the job's files stay in {folder}: rerun with --resume to commit them"
    )
    assert DeltaTable(str(table)).version() == 0


def test_a_job_commits_to_a_delta_table_on_s3(models, shards, tmp_path):
    paths, ids, x = shards
    with s3_store():
        fsspec.filesystem("s3").mkdir("tables")
        url = "s3://tables/scores"
        assert job(models["two_sig"], paths, url) == 0
        dt = DeltaTable(url, storage_options=storage_options(url))
        assert dt.version() == 0
        check_scores(models["two_sig"], dt.to_pyarrow_table(), ids, x)
        assert job(models["two_sig"], paths, url, "--resume") == 0
        assert DeltaTable(url, storage_options=storage_options(url)).version() == 0


def test_columns_delta_has_no_type_for_are_written_as_types_it_has(tmp_path):
    """Fixed-size lists and tensors become lists, dictionaries their values, float16 float32,
    unsigned integers the next signed width (delta-rs would call uint32 "integer", where 3e9
    does not fit): every value reads back as written, in deltalake and polars."""
    from beamscore.io.base import WorkUnit
    from beamscore.io.delta_sink import DeltaSink

    table = tmp_path / "table"
    folder = table / f"{JOB_PREFIX}{3:016x}"
    tensor = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    batch = pa.table(
        {
            "v": pa.FixedSizeListArray.from_arrays(pa.array([1.5, 2.5, 3.5, 4.5], pa.float32()), 2),
            "t": pa.FixedShapeTensorArray.from_numpy_ndarray(tensor),
            "d": pa.array(["a", "b"]).dictionary_encode(),
            "h": pa.array(np.array([0.5, -2.0], np.float16)),
            "u": pa.array([3_000_000_000, 7], pa.uint32()),
            "b": pa.array([200, 1], pa.uint8()),
        }
    )
    writer = DeltaSink(str(folder)).open(WorkUnit(0, 0, "in.parquet", 0, 1, 2), {})
    writer.write(batch)
    writer.close()
    assert commit(str(table), str(folder), 2)["version"] == 0
    for got in (DeltaTable(str(table)).to_pyarrow_table(), pl.read_delta(str(table)).to_arrow()):
        assert got["v"].to_pylist() == [[1.5, 2.5], [3.5, 4.5]]
        assert got["t"].to_pylist() == tensor.tolist()
        assert got["d"].to_pylist() == ["a", "b"]
        assert got["h"].to_pylist() == [0.5, -2.0]
        assert got["u"].to_pylist() == [3_000_000_000, 7]
        assert got["b"].to_pylist() == [200, 1]


# --- replacing a partition: --where "day = '{date}'" names the day's partition of both tables ---

DAYS = ("2026-12-01", "2026-12-02")


@pytest.fixture(scope="module")
def affine(tmp_path_factory) -> str:
    """s = 2x + 1 over a column of floats (a table's column, no reshaping)."""
    import tensorflow as tf

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"s": 2.0 * x + 1.0}

    path = str(tmp_path_factory.mktemp("affine") / "m")
    module = Affine()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def day_rows(ids, day: str, **columns) -> pa.Table:
    ids = np.asarray(list(ids), np.int64)
    cols = columns or {"x": (ids / 10 + 0.25).astype(np.float32)}
    return pa.table({"id": ids, **cols, "day": [day] * len(ids)})


def nightly(model: str, source, table, day: str, *args: str) -> int:
    given = ["--input", str(source), "--output", str(table), "--output-format", "delta", "--keep", "id"]
    return main(["score", "--model", model, *given, "--where", "day = '{date}'", "--date", day, *args])


def scored_day(model: str, got: pa.Table, source_rows: pa.Table) -> None:
    """The day's rows of the table are exactly the input day's ids, each scored as a direct call."""
    got, want = got.sort_by("id"), source_rows.sort_by("id")
    assert got["id"].to_pylist() == want["id"].to_pylist()
    expected = direct_call(model, "serving_default", x=want["x"].to_numpy())["s"]
    assert_scores_close(got["s"].to_numpy(), expected)


def test_a_nightly_job_replaces_its_days_partition_in_one_commit(affine, tmp_path, capsys):
    source, table = str(tmp_path / "source"), tmp_path / "scores"
    write_deltalake(
        source,
        pa.concat_tables([day_rows(range(20), DAYS[0]), day_rows(range(100, 120), DAYS[1])]),
        partition_by=["day"],
    )
    stale = {"s": np.full(20, -1.0, np.float32)}
    write_deltalake(
        str(table),
        pa.concat_tables([day_rows(range(50, 70), DAYS[0], **stale), day_rows(range(100, 120), DAYS[1], **stale)]),
        partition_by=["day"],
    )
    before = DeltaTable(str(table)).version()
    capsys.readouterr()
    assert nightly(affine, source, table, DAYS[0]) == 0
    assert f"as version {before + 1}, replacing partition day = '{DAYS[0]}'" in capsys.readouterr().out
    dt = DeltaTable(str(table))
    assert dt.version() == before + 1  # one commit: the day's old files removed, the job's added
    log = [json.loads(line) for line in (table / "_delta_log" / f"{before + 1:020d}.json").read_text().splitlines()]
    assert sum("remove" in a for a in log) == 1 and all(
        a["add"]["partitionValues"] == {"day": DAYS[0]} for a in log if "add" in a
    )
    got = dt.to_pyarrow_table()
    other = got.filter(pa.compute.equal(got["day"], DAYS[1])).sort_by("id")
    assert other["id"].to_pylist() == list(range(100, 120)) and set(other["s"].to_pylist()) == {-1.0}
    src = DeltaTable(source).to_pyarrow_table()
    day = pa.compute.equal(src["day"], DAYS[0])
    scored_day(affine, got.filter(pa.compute.equal(got["day"], DAYS[0])), src.filter(day))
    scored_day(affine, pl.read_delta(str(table)).filter(pl.col("day") == DAYS[0]).to_arrow(), src.filter(day))
    manifest = manifest_of(table / f"day={DAYS[0]}")
    assert manifest["table_commit"]["replaced"] == {"day": DAYS[0]}
    # --resume after the commit: nothing is committed twice
    assert nightly(affine, source, table, DAYS[0], "--resume") == 0
    assert DeltaTable(str(table)).version() == before + 1
    # the day's input lands again (new files, so a new job): the next run replaces the day again
    write_deltalake(source, day_rows(range(200, 225), DAYS[0]), mode="overwrite", predicate=f"day = '{DAYS[0]}'")
    assert nightly(affine, source, table, DAYS[0]) == 0
    got = DeltaTable(str(table)).to_pyarrow_table()
    assert DeltaTable(str(table)).version() == before + 2
    src = DeltaTable(source).to_pyarrow_table()
    scored_day(
        affine, got.filter(pa.compute.equal(got["day"], DAYS[0])), src.filter(pa.compute.equal(src["day"], DAYS[0]))
    )
    assert got.filter(pa.compute.equal(got["day"], DAYS[1]))["id"].to_pylist() == list(range(100, 120))


def test_a_new_table_is_made_partitioned_by_the_where_columns(affine, tmp_path, monkeypatch):
    """No table yet: the commit makes it, partitioned by ``day`` (typed as the input's); the
    kept ``day`` column is in the files too, read back the same by deltalake and polars. A
    first commit that failed is made by ``--resume``; meanwhile the table's root holds only day
    folders, and another day's job makes the table."""
    import deltalake.transaction

    source, table = str(tmp_path / "source"), tmp_path / "scores"
    write_deltalake(source, pa.concat_tables([day_rows(range(10), d) for d in DAYS]), partition_by=["day"])

    def store_down(*args, **kwargs):
        raise OSError("the store is down")

    with monkeypatch.context() as patch:
        patch.setattr(deltalake.transaction, "create_table_with_add_actions", store_down)
        assert nightly(affine, source, table, DAYS[1], "--keep", "day") == 2
    assert sorted(p.name for p in table.iterdir()) == [f"day={DAYS[1]}"]
    assert nightly(affine, source, table, DAYS[0], "--keep", "day") == 0  # the next day's job makes the table
    assert nightly(affine, source, table, DAYS[1], "--keep", "day", "--resume") == 0
    dt = DeltaTable(str(table))
    assert list(dt.metadata().partition_columns) == ["day"] and dt.version() == 1
    src = DeltaTable(source).to_pyarrow_table()
    for got in (dt.to_pyarrow_table(), pl.read_delta(str(table)).to_arrow()):
        for d in DAYS:
            scored_day(affine, got.filter(pa.compute.equal(got["day"], d)), src.filter(pa.compute.equal(src["day"], d)))
        assert got.num_rows == 20


def test_a_where_that_names_no_output_partition_is_refused(affine, tmp_path, capsys):
    source, table = str(tmp_path / "source"), tmp_path / "scores"
    write_deltalake(source, pa.concat_tables([day_rows(range(10), d) for d in DAYS]), partition_by=["day"])
    args = ["score", "--model", affine, "--input", source, "--output", str(table), "--output-format", "delta"]
    assert main([*args, "--keep", "id", "--where", f"day >= '{DAYS[0]}'"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"beamscore: error: --where \"day >= '{DAYS[0]}'\": day >= is no equality; with --output-format delta, "
        "--where also names the output's partition that the job replaces, so it is COLUMN = 'VALUE' on the table's "
        "partition columns, joined by AND"
    )
    assert not table.exists()
    write_deltalake(str(table), pa.table({"s": pa.array([1.0], pa.float32()), "id": [1], "day": [DAYS[0]]}))
    assert main([*args, "--keep", "id", "day", "--where", f"day = '{DAYS[0]}'"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"beamscore: error: --where \"day = '{DAYS[0]}'\": {table} is partitioned by no column; with "
        "--output-format delta, --where also names the output's partition that the job replaces, so it is "
        "COLUMN = 'VALUE' on the table's partition columns, joined by AND"
    )
    assert DeltaTable(str(table)).version() == 0
    assert not [p for p in table.iterdir() if p.name != "_delta_log" and not p.name.endswith(".parquet")]
    # a partitioned table and no --where: an append would add rows in no partition
    parted = tmp_path / "parted"
    write_deltalake(str(parted), day_rows(range(3), DAYS[0], s=np.ones(3, np.float32)), partition_by=["day"])
    plain = ["score", "--model", affine, "--input", source, "--output", str(parted), "--output-format", "delta"]
    assert main([*plain, "--keep", "id", "day"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"beamscore: error: {parted} is partitioned by day: give --where \"day = 'VALUE'\" (the input table's "
        "partition the job reads and the output's it replaces); a job appends only to an unpartitioned table"
    )
    assert DeltaTable(str(parted)).version() == 0
