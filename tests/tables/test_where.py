"""``--where``: a small grammar, never evaluated as code; and the table settings in a config."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from beamscore.config import ScoreConfig, load_yaml
from beamscore.errors import BeamscoreError
from beamscore.tables.where import Condition, check_columns, matches, parse_where

TYPES = {"day": pa.date32(), "country": pa.string(), "n": pa.int32()}


def test_conditions_are_parsed_not_evaluated():
    assert parse_where("day = '2026-12-01' AND country IN ('JP', 'it''s') and n >= 3") == [
        Condition("day", "=", ("2026-12-01",)),
        Condition("country", "in", ("JP", "it's")),
        Condition("n", ">=", (3,)),
    ]
    for bad in ("__import__('os').system('x')", "day = ", "day = '1' OR n = 2", "day == = 1", "n IN (1, 2"):
        with pytest.raises(BeamscoreError, match=r"^--where "):
            parse_where(bad)


def test_values_are_compared_as_the_columns_type():
    values = {"day": dt.date(2026, 12, 1), "country": "JP", "n": 4}
    assert matches(values, parse_where("day = '2026-12-01' AND n > 3"), TYPES)
    assert not matches(values, parse_where("day = '2026-12-02'"), TYPES)
    assert matches(values, parse_where("country IN ('US', 'JP')"), TYPES)
    assert not matches({**values, "country": None}, parse_where("country != 'US'"), TYPES)  # null matches nothing
    with pytest.raises(BeamscoreError, match=r"'someday' is no value of partition column 'day' \(date32"):
        matches(values, parse_where("day = 'someday'"), TYPES)


def test_only_partition_columns():
    with pytest.raises(BeamscoreError, match=r"'id' is not a partition column of T \(partition columns: day"):
        check_columns(parse_where("id = 1"), TYPES, "T")


def test_table_settings_in_a_config_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("input:\n  paths: t\n  table_version: 3\n  where: \"day = '{date}'\"\n  raw_files: false\n")
    config = load_yaml(str(path))
    assert (config.table_version, config.where, config.raw_files) == (3, "day = '{date}'", False)
    assert config.merged({"date": "2026-12-02", "model": "m", "output": "o"}).with_date().where == "day = '2026-12-02'"
    with pytest.raises(BeamscoreError, match=r"--table-version must be a whole number of at least 0"):
        ScoreConfig(model="m", inputs=["t"], output="o", table_version=-1).validate()
    with pytest.raises(BeamscoreError, match=r"give --table-version or --table-as-of, not both"):
        ScoreConfig(model="m", inputs=["t"], output="o", table_version=1, table_as_of="2026-12-01").validate()
