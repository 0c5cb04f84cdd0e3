"""Never a silent stale read: any input inside a Delta, Iceberg or Hudi table is refused in
one line naming the table and how to read it as one, unless ``--raw-files`` says the files
are meant; each directory is looked up once, not once per file.

The tables are written by ``deltalake`` and ``pyiceberg`` (tests/tables/lake.py); the jobs
run the real CLI. Without the "stale reads" planning step each of these jobs scored the
table's superseded files with exit 0 (420 rows against 135, 87 against 30, 290 against 140).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import lake
from cli_runs import run_cli

from beamscore.errors import BeamscoreError
from beamscore.io.hive import partition_values  # noqa: F401 - the hive reading the refusal guards
from beamscore.tables import detect


@pytest.fixture(scope="module")
def lakedir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    lake.delta_history(str(root / "t1"))
    lake.delta_partitioned(str(root / "t2"))
    lake.iceberg_history(root / "wh")
    (root / "hudi" / ".hoodie").mkdir(parents=True)
    lake.rows(range(5)).to_pandas().to_parquet(root / "hudi" / "f1.parquet")
    plain = root / "plain"
    plain.mkdir()
    lake.rows(range(5)).to_pandas().to_parquet(plain / "a.parquet")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return lake.save_model(str(tmp_path_factory.mktemp("m") / "m"))


def files(pattern: str) -> list[str]:
    import glob

    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


@pytest.mark.parametrize(
    "pattern, table, label",
    [
        ("t1/*.parquet", "t1", "Delta Lake"),
        ("t2/country=JP/**", "t2", "Delta Lake"),
        ("t2/*/*/*.parquet", "t2", "Delta Lake"),
        ("wh/db/events/data/*", "wh/db/events", "Iceberg"),
        ("hudi/*.parquet", "hudi", "Hudi"),
        ("**/*.parquet", "hudi", "Hudi"),  # a directory that holds tables: the first file's
    ],
)
def test_files_inside_a_table_are_refused_naming_the_table(lakedir, pattern, table, label):
    found = files(str(lakedir / pattern))
    assert found
    with pytest.raises(BeamscoreError) as err:
        detect.refuse_stale_reads([str(lakedir / pattern)], found)
    message = str(err.value)
    assert "\n" not in message
    assert f"the {label} table {lakedir / table}," in message
    assert "--raw-files" in message
    if label != "Hudi":
        assert f"give the table's root {lakedir / table} as --input" in message
    else:
        assert "does not read Hudi" in message


def test_plain_files_pass(lakedir):
    detect.refuse_stale_reads([str(lakedir / "plain")], files(str(lakedir / "plain/*")))


def test_each_directory_is_looked_up_once_not_once_per_file(lakedir, monkeypatch):
    asked: list[str] = []
    real = detect.table_at

    def counting(fs, path):
        asked.append(path)
        return real(fs, path)

    monkeypatch.setattr(detect, "table_at", counting)
    many = [str(lakedir / "plain" / f"f{i}.parquet") for i in range(200)]  # names only: nothing is opened
    assert detect.table_around(many) == {}
    assert len(asked) == len(set(asked)) == len(str(lakedir / "plain").strip("/").split("/")) + 1  # up to "/"


# -- end to end: the refusal is one line, exit 2, --dry-run too; --raw-files reads them -------


def test_a_glob_of_a_delta_tables_files_is_refused_by_the_job_and_its_dry_run(lakedir, model, tmp_path):
    for extra in ((), ("--dry-run",)):
        run = run_cli(
            "score", "--model", model, "--input", str(lakedir / "t1/*"), "--output", str(tmp_path / "o"), *extra
        )
        assert run.code == 2
        line = run.stderr.strip().splitlines()[-1]
        assert "lies inside the Delta Lake table" in line and "--raw-files" in line
        assert not (tmp_path / "o").exists()


def test_iceberg_data_directory_is_refused(lakedir, model, tmp_path):
    run = run_cli(
        "score", "--model", model, "--input", str(lakedir / "wh/db/events/data"), "--output", str(tmp_path / "o")
    )
    assert run.code == 2
    assert f"the Iceberg table {lakedir / 'wh/db/events'}" in run.stderr


def test_raw_files_reads_the_files_as_they_are(lakedir, model, tmp_path):
    """--raw-files is the user's word: every file in the folder, stale ones included."""
    out = tmp_path / "o"
    run = run_cli(
        "score",
        "--model",
        model,
        "--input",
        str(lakedir / "t1/*.parquet"),
        "--output",
        str(out),
        "--raw-files",
        "--keep",
        "id",
    )
    assert run.code == 0, run.stderr
    assert lake.manifest(out)["rows_in"] == sum(
        __import__("pyarrow.parquet").parquet.read_metadata(f).num_rows for f in files(str(lakedir / "t1/*.parquet"))
    )
    assert lake.manifest(out)["rows_in"] > 135  # more than the table holds: the stale rows, on purpose


def test_table_options_without_a_table_are_refused(lakedir, model, tmp_path):
    run = run_cli(
        "score",
        "--model",
        model,
        "--input",
        str(lakedir / "plain"),
        "--output",
        str(tmp_path / "o"),
        "--table-version",
        "1",
    )
    assert run.code == 2
    assert "--table-version reads a Delta Lake or Iceberg table" in run.stderr
