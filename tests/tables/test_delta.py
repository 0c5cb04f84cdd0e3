"""Delta Lake tables as inputs: a table root is read as one snapshot, the latest version or
``--table-version`` / ``--table-as-of``, only its live files, its partition values typed from
its schema, ``--where`` pruned from its log, ``--resume`` on the snapshot it started with.

Tables are written by ``deltalake`` itself with history (append, delete, update, partition
overwrite, full overwrite); every output is compared with ``DeltaTable(...).to_pyarrow_table()``
(ids exact) and with a direct call of the signature (tests/scores.py's tolerance).
"""

from __future__ import annotations

import datetime as dt
import os
import sys

import pyarrow as pa
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import lake
from cli_runs import run_cli
from conftest import direct_call
from deltalake import DeltaTable, write_deltalake
from scores import assert_scores_close


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return lake.save_model(str(tmp_path_factory.mktemp("m") / "m"))


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("delta") / "t1"
    versions = lake.delta_history(str(root))
    return root, versions


def score(model, given, out, *args) -> pa.Table:
    run = run_cli("score", "--model", model, "--input", str(given), "--output", str(out), "--keep", "id", "x", *args)
    assert run.code == 0, run.stderr
    m = lake.manifest(out)
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    return lake.scored(out)


def check(model, got: pa.Table, expected: pa.Table) -> None:
    """Exactly the snapshot's ids, each scored as the signature scores its x."""
    expected = expected.sort_by("id")
    assert got.column("id").to_pylist() == expected.column("id").to_pylist()
    assert got.column("x").to_pylist() == expected.column("x").to_pylist()
    want = direct_call(model, "serving_default", x=expected.column("x").to_numpy())["s"]
    assert_scores_close(got.column("s").to_numpy(), want)


def test_the_latest_version_scores_exactly_the_tables_rows(model, history, tmp_path):
    root, versions = history
    got = score(model, root, tmp_path / "o")
    check(model, got, versions[3])
    assert got.num_rows == 135  # not the 420 rows its folder holds
    table = lake.manifest(tmp_path / "o")["table"]
    assert table["format"] == "delta" and table["version"] == 3 and table["rows"] == 135
    assert table["timestamp"].endswith("Z") and table["root"] == str(root)


def test_table_version_and_as_of_travel_in_time(model, history, tmp_path):
    root, versions = history
    check(model, score(model, root, tmp_path / "v1", "--table-version", "1"), versions[1])
    check(model, score(model, root, tmp_path / "v2", "--table-version", "2"), versions[2])
    when = lake.manifest(tmp_path / "v1")["table"]["timestamp"]
    check(model, score(model, root, tmp_path / "asof", "--table-as-of", when), versions[1])
    assert lake.manifest(tmp_path / "asof")["table"]["version"] == 1


def test_the_manifests_time_given_to_as_of_reads_the_same_version(model, tmp_path):
    """Time travel compares a time with each version's log file modification time, which a
    loaded machine writes some milliseconds after the commit info's ``timestamp`` (CI once
    read version 0 for version 1's ``history()`` time). The manifest records the time that
    time travel reads: given back to ``--table-as-of``, it reads the same version."""
    root = tmp_path / "t"
    versions = lake.delta_history(str(root))
    log = root / "_delta_log" / f"{1:020d}.json"
    stamped = next(h for h in DeltaTable(str(root)).history() if h["version"] == 1)["timestamp"]
    late = (stamped + 40) * 1_000_000  # the log file written 40 ms after its commit info
    os.utime(log, ns=(late, late))
    score(model, root, tmp_path / "v1", "--table-version", "1")
    when = lake.manifest(tmp_path / "v1")["table"]["timestamp"]
    assert dt.datetime.fromisoformat(when) == dt.datetime.fromtimestamp((stamped + 40) / 1000, dt.UTC)
    check(model, score(model, root, tmp_path / "asof", "--table-as-of", when), versions[1])
    assert lake.manifest(tmp_path / "asof")["table"]["version"] == 1
    # the commit info's time is before the log file: time travel reads the version before
    before = dt.datetime.fromtimestamp(stamped / 1000, dt.UTC).isoformat()
    score(model, root, tmp_path / "before", "--table-as-of", before)
    assert lake.manifest(tmp_path / "before")["table"]["version"] == 0


def test_a_version_the_table_does_not_have_is_one_line(model, history, tmp_path):
    root, _ = history
    run = run_cli(
        "score", "--model", model, "--input", str(root), "--output", str(tmp_path / "o"), "--table-version", "9"
    )
    assert run.code == 2
    assert f"Delta Lake table {root} at version 9" in run.stderr.strip().splitlines()[-1]


def test_a_fully_overwritten_table_scores_only_its_new_rows(model, tmp_path):
    root = str(tmp_path / "t")
    write_deltalake(root, lake.rows(range(50)))
    write_deltalake(root, lake.rows(range(500, 520)), mode="overwrite")
    check(model, score(model, root, tmp_path / "o"), DeltaTable(root).to_pyarrow_table())


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory):
    root = tmp_path_factory.mktemp("delta") / "t2"
    return root, lake.delta_partitioned(str(root))


def test_partition_values_are_typed_from_the_tables_schema(model, partitioned, tmp_path):
    """``day`` is a date (the hive reading of ``day=2026-12-01`` is a string), ``country`` a string."""
    root, live = partitioned
    got = score(model, root, tmp_path / "o", "--keep", "country", "day")
    check(model, got, live)
    assert got.num_rows == 30 + 43  # not the 87 rows written into JP
    assert got.schema.field("day").type == pa.date32()
    expected = live.sort_by("id")
    assert got.column("country").to_pylist() == expected.column("country").to_pylist()
    assert got.column("day").to_pylist() == expected.column("day").to_pylist()


def test_where_scores_one_partition_from_the_log(model, partitioned, tmp_path):
    root, live = partitioned
    got = score(model, root, tmp_path / "jp", "--where", "country = 'JP'")
    check(model, got, live.filter(pa.compute.equal(live["country"], "JP")))
    table = lake.manifest(tmp_path / "jp")["table"]
    assert table["where"] == "country = 'JP'" and table["files"] == 1 and table["files_before_where"] == 3
    # a nightly job: --where "day = '{date}'" filled from --date
    got = score(
        model, root, tmp_path / "night", "--where", "day = '{date}' AND country IN ('US')", "--date", "2026-12-02"
    )
    check(model, got, live.filter(pa.compute.equal(live["day"], dt.date(2026, 12, 2))))
    assert lake.manifest(tmp_path / "night")["table"]["where"] == "day = '2026-12-02' AND country IN ('US')"


def test_where_on_a_column_that_is_no_partition_is_refused(model, partitioned, tmp_path):
    root, _ = partitioned
    run = run_cli("score", "--model", model, "--input", str(root), "--output", str(tmp_path / "o"), "--where", "id = 3")
    assert run.code == 2
    assert "'id' is not a partition column" in run.stderr and "country, day" in run.stderr


def test_resume_reads_the_snapshot_it_started_with(model, tmp_path):
    """The table moves on between a run and its --resume: the resume reads the first run's
    version (it would otherwise be a different job, or score rows the first run did not see)."""
    root = str(tmp_path / "t")
    write_deltalake(root, lake.rows(range(30)))
    out = tmp_path / "o"
    score(model, root, out)
    (out / "_manifest.json").unlink()  # the first run stopped before its commit
    (out / "_SUCCESS").unlink(missing_ok=True)
    write_deltalake(root, lake.rows(range(30, 60)), mode="append")
    got = score(model, root, out, "--resume")
    check(model, got, DeltaTable(root, version=0).to_pyarrow_table())
    assert lake.manifest(out)["table"]["version"] == 0
    run = run_cli(
        "score",
        "--model",
        model,
        "--input",
        root,
        "--output",
        str(out),
        "--keep",
        "id",
        "x",
        "--resume",
        "--table-version",
        "1",
    )
    assert run.code == 2 and "the input table's snapshot was" in run.stderr


def test_column_mapping_reads_each_column_by_its_physical_name(model, tmp_path):
    root = str(tmp_path / "t")
    """The files' columns are named col-UUID; the table's are id and x. (deltalake 1.6.6's own
    to_pyarrow_table() gives nulls for this table, so the rows written are the reference.)"""
    rows = lake.rows(range(12))
    write_deltalake(root, rows, configuration={"delta.columnMapping.mode": "name"})
    check(model, score(model, root, tmp_path / "o"), rows)


def test_deletion_vectors_are_refused_in_one_line(model, tmp_path):
    root = str(tmp_path / "t")
    write_deltalake(root, lake.rows(range(12)), configuration={"delta.enableDeletionVectors": "true"})
    run = run_cli("score", "--model", model, "--input", root, "--output", str(tmp_path / "o"))
    assert run.code == 2
    assert "uses deletion vectors" in run.stderr.strip().splitlines()[-1]


def test_rows_of_a_delta_table_on_s3(model, tmp_path):
    """A table root on S3 (moto): delta-rs and s3fs read the same store."""
    import s3fs
    from s3_server import s3_store

    with s3_store():
        endpoint = os.environ["FSSPEC_S3_ENDPOINT_URL"]
        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("lake")
        options = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        }
        write_deltalake("s3://lake/t", lake.rows(range(40)), storage_options=options)
        DeltaTable("s3://lake/t", storage_options=options).delete("id < 10")
        expected = DeltaTable("s3://lake/t", storage_options=options).to_pyarrow_table()
        got = score(model, "s3://lake/t", tmp_path / "o")
        check(model, got, expected)
        assert got.num_rows == 30
        assert lake.manifest(tmp_path / "o")["table"]["version"] == 1
        # a glob of its files is refused like a local one's
        run = run_cli("score", "--model", model, "--input", "s3://lake/t/*.parquet", "--output", str(tmp_path / "g"))
        assert run.code == 2 and "lies inside the Delta Lake table s3://lake/t" in run.stderr


def test_report_and_dry_run_show_the_table_version(model, history, tmp_path):
    root, _ = history
    score(model, root, tmp_path / "o")
    run = run_cli("report", str(tmp_path / "o"))
    assert run.code == 0, run.stderr
    assert f"table:       delta table {root}, version 3 (" in run.stdout
    run = run_cli("report", str(tmp_path / "o"), "--json")
    assert '"version": 3' in run.stdout
    run = run_cli("score", "--model", model, "--input", str(root), "--output", str(tmp_path / "d"), "--dry-run")
    assert run.code == 0, run.stderr
    assert f"table:       delta table {root}, version 3 (" in run.stdout


def test_date_fills_a_table_path(model, tmp_path):
    root = tmp_path / "2026-12-02" / "events"
    write_deltalake(str(root), lake.rows(range(7)))
    got = score(model, tmp_path / "{date}" / "events", tmp_path / "o", "--date", "2026-12-02")
    check(model, got, DeltaTable(str(root)).to_pyarrow_table())
    assert lake.manifest(tmp_path / "o")["table"]["root"] == str(root)


def test_partition_values_that_need_escaping_and_nulls(model, tmp_path):
    """``a b/c`` lives in ``c=a%20b%2Fc/`` and the log says ``c=a%2520b%252Fc``; a null is
    ``__HIVE_DEFAULT_PARTITION__``: each file is found and its value is the table's."""
    root = str(tmp_path / "t")
    write_deltalake(root, lake.rows(range(6), c=pa.array(["a b/c", "é%", None] * 2)), partition_by=["c"])
    got = score(model, root, tmp_path / "o", "--keep", "c")
    expected = DeltaTable(root).to_pyarrow_table()
    check(model, got, expected)
    assert got.column("c").to_pylist() == expected.sort_by("id").column("c").to_pylist()
