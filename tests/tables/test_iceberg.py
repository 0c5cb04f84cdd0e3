"""Iceberg tables as inputs: by directory (its latest metadata), by metadata file, or by
catalog name (``iceberg://CATALOG/db.table``, pyiceberg's SQLite catalog here); the snapshot's
live files only; columns read by field id; ``--table-version`` as a snapshot id; ``--where``
on identity partition columns.

Tables are written by ``pyiceberg`` itself (append, delete, rename, re-added column); every
output is compared with ``table.scan().to_arrow()`` (ids exact) and a direct signature call.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pytest

sys.path.insert(0, os.path.dirname(__file__))

import lake
from cli_runs import run_cli
from conftest import direct_call
from scores import assert_scores_close

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return lake.save_model(str(tmp_path_factory.mktemp("m") / "m"))


@pytest.fixture(scope="module")
def ice(tmp_path_factory):
    return lake.iceberg_history(tmp_path_factory.mktemp("ice") / "wh")


def job(model, given, out, *args, failed: int = 0) -> pa.Table:
    run = run_cli("score", "--model", model, "--input", str(given), "--output", str(out), *args)
    m = lake.manifest(out)
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    assert m["rows_failed"] == failed, run.stderr
    assert run.code == 0, run.stderr
    return lake.scored(out)


def check(model, got: pa.Table, expected: pa.Table, column: str) -> None:
    expected = expected.sort_by("id")
    assert got.column("id").to_pylist() == expected.column("id").to_pylist()
    want = direct_call(model, "serving_default", x=expected.column(column).to_numpy())["s"]
    assert_scores_close(got.column("s").to_numpy(), want)


def root_of(ice) -> str:
    return ice["table"].location().removeprefix("file://")


def renamed_job(model, ice, given, out) -> None:
    """Score with ``feature`` (the renamed x); check ids, kept values and the manifest."""
    expected = ice["table"].scan().to_arrow()
    assert expected.num_rows == 180  # not the 290 rows its data/ holds
    args = ("--map", "x=feature", "--keep", "id", "feature", "x")
    if given.startswith("iceberg://"):  # pyiceberg reads its catalog config at import: a process of its own
        env = {**os.environ, "PYICEBERG_CATALOG__LAKE__TYPE": "sql", "PYTHONPATH": REPO}
        env.update({f"PYICEBERG_CATALOG__LAKE__{k.upper()}": v for k, v in ice["props"].items()})
        command = [sys.executable, "-m", "beamscore", "score", "--model", model, "--input", given]
        done = subprocess.run([*command, "--output", str(out), *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        got = lake.scored(out)
    else:
        got = job(model, given, out, *args)
    check(model, got, expected, "feature")
    sorted_expected = expected.sort_by("id")
    assert got.column("feature").to_pylist() == sorted_expected.column("feature").to_pylist()
    assert got.column("x").to_pylist() == sorted_expected.column("x").to_pylist()  # null in old files
    table = lake.manifest(out)["table"]
    assert table["format"] == "iceberg" and table["snapshot_id"] == ice["table"].current_snapshot().snapshot_id
    assert table["root"] == root_of(ice) and table["rows"] == 180


def test_a_renamed_column_is_read_by_field_id_by_directory_or_metadata_file(model, ice, tmp_path):
    """``feature`` is the old ``x`` (renamed): the files written before call it ``x``. Read by
    name, those rows would score the file's ``x``; by field id they score ``feature``."""
    renamed_job(model, ice, root_of(ice), tmp_path / "dir")
    renamed_job(model, ice, ice["table"].metadata_location.removeprefix("file://"), tmp_path / "metadata")


@pytest.mark.slow
def test_a_table_by_catalog_name(model, ice, tmp_path):
    """``iceberg://lake/db.events`` with pyiceberg's own catalog configuration (environment)."""
    renamed_job(model, ice, "iceberg://lake/db.events", tmp_path / "catalog")


def test_a_re_added_column_is_null_in_files_written_before_it(model, ice, tmp_path):
    """The new ``x`` has no values in the 140 rows written before it: each is a dead letter
    naming the column, never the file's old ``x``."""
    got = job(model, root_of(ice), tmp_path / "o", "--keep", "id", "--max-failed-rows", "1000", failed=140)
    expected = ice["table"].scan(row_filter="x IS NOT NULL").to_arrow()
    check(model, got, expected, "x")
    assert got.column("id").to_pylist() == list(range(300, 340))
    errors = pa.concat_tables(
        __import__("pyarrow.parquet").parquet.read_table(p)
        for p in sorted(glob.glob(str(tmp_path / "o/_errors/*.parquet")))
    )
    assert set(errors.column("error").to_pylist()) == {"column 'x' is null; inputs must not be null"}


def test_table_version_is_a_snapshot_id(model, ice, tmp_path):
    snapshot = ice["before_rename"]
    expected = ice["table"].scan(snapshot_id=snapshot).to_arrow()
    got = job(model, root_of(ice), tmp_path / "o", "--table-version", str(snapshot), "--keep", "id")
    check(model, got, expected, "x")
    assert got.num_rows == 140
    assert lake.manifest(tmp_path / "o")["table"]["snapshot_id"] == snapshot
    when = ice["table"].snapshot_by_id(snapshot).timestamp_ms
    as_of = dt.datetime.fromtimestamp(when / 1000, dt.UTC).isoformat(timespec="milliseconds")
    got = job(model, root_of(ice), tmp_path / "asof", "--table-as-of", as_of, "--keep", "id")
    check(model, got, expected, "x")
    assert lake.manifest(tmp_path / "asof")["table"]["snapshot_id"] == snapshot
    run = run_cli(
        "score", "--model", model, "--input", root_of(ice), "--output", str(tmp_path / "n"), "--table-version", "7"
    )
    assert run.code == 2 and "no snapshot 7 (--table-version is a snapshot id)" in run.stderr


def test_where_prunes_identity_partitions(model, tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.transforms import IdentityTransform

    catalog = SqlCatalog("p", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh")
    catalog.create_namespace("db")
    data = lake.rows(range(60), country=pa.array(["JP", "US", "FR"] * 20))
    schema = catalog.create_table("db.tmp", schema=data.schema).schema()
    spec = PartitionSpec(PartitionField(schema.find_field("country").field_id, 1000, IdentityTransform(), "country"))
    table = catalog.create_table("db.parts", schema=schema, partition_spec=spec)
    table.append(data)
    table.delete("id < 6")
    root = table.location().removeprefix("file://")
    got = job(model, root, tmp_path / "o", "--keep", "id", "--where", "country IN ('JP', 'FR')")
    check(model, got, table.scan(row_filter="country IN ('JP', 'FR')").to_arrow(), "x")
    assert lake.manifest(tmp_path / "o")["table"]["files"] == 2
    run = run_cli("score", "--model", model, "--input", root, "--output", str(tmp_path / "r"), "--where", "id = 1")
    assert run.code == 2 and "'id' is not a partition column" in run.stderr


def test_an_empty_table_is_one_line(model, tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("e", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh")
    catalog.create_namespace("db")
    table = catalog.create_table("db.empty", schema=lake.rows([]).schema)
    run = run_cli("score", "--model", model, "--input", table.location(), "--output", str(tmp_path / "o"))
    assert run.code == 2 and "has no snapshot yet" in run.stderr.strip().splitlines()[-1]


def test_without_field_ids_the_old_column_would_be_read(ice):
    """The data this test file guards against: an old file stores the renamed column as ``x``."""
    import pyarrow.parquet as pq

    old = [f for f in glob.glob(os.path.join(root_of(ice), "data", "*.parquet")) if "x" in pq.read_schema(f).names]
    assert any(pq.read_schema(f).names == ["id", "x"] for f in old)
    assert pc.sum(pa.concat_tables(pq.read_table(f, columns=["x"]) for f in old)["x"]).as_py() > 0
