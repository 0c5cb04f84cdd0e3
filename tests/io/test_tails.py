"""Tails of many files at once, and Parquet footers parsed from a tail alone."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beamscore import fs as bfs
from beamscore.io.parquet import FOOTER_TAIL, ParquetSource
from beamscore.io.tails import OutsideTail, TailFile, fetch_tails


def _parquet(path, columns: int = 2, rows: int = 10, row_group_size: int = 4) -> bytes:
    table = pa.table({f"c{i}": np.arange(rows, dtype=np.float32) + i for i in range(columns)})
    pq.write_table(table, path, row_group_size=row_group_size)
    with open(path, "rb") as f:
        return f.read()


def test_fetch_tails_reads_the_last_bytes_of_each_file_in_order(tmp_path):
    for name, data in (("a", b"0123456789"), ("b", b"xy"), ("c", b"abcdefgh")):
        (tmp_path / name).write_bytes(data)
    facts = [f for f in bfs.list_files([str(tmp_path / "*")])]
    missing = bfs.FileFacts(str(tmp_path / "gone"), 5, None)
    unknown = bfs.FileFacts(str(tmp_path / "a"), None, None)
    assert fetch_tails([*facts, missing, unknown], 4) == [b"6789", b"xy", b"efgh", None, None]


def test_tail_file_serves_the_tail_and_refuses_earlier_bytes():
    f = TailFile(10, b"6789")
    f.seek(-3, io.SEEK_END)
    assert (f.tell(), f.read(2), f.read()) == (7, b"78", b"9")
    f.seek(2)
    with pytest.raises(OutsideTail):
        f.read(1)


def test_footer_from_the_tail_gives_the_units_and_columns_of_a_full_read(tmp_path):
    path = str(tmp_path / "f.parquet")
    data = _parquet(path, rows=10, row_group_size=3)
    source = ParquetSource(rows_per_unit=4)
    from_tail = source.plan_file(path, 7, data[-FOOTER_TAIL:], len(data))
    assert from_tail.units == source.units(path, 7)
    assert [(u.start, u.stop, u.rows, u.first_row) for u in from_tail.units] == [(0, 2, 6, 0), (2, 4, 4, 6)]
    assert from_tail.columns == source.columns(path)


def test_a_footer_longer_than_the_tail_is_read_from_the_file(tmp_path):
    path = str(tmp_path / "wide.parquet")
    data = _parquet(path, columns=120, rows=200, row_group_size=4)  # 50 row groups x 120 columns of metadata
    footer = int.from_bytes(data[-8:-4], "little")
    assert footer > FOOTER_TAIL
    source = ParquetSource(rows_per_unit=8)
    plan = source.plan_file(path, 0, data[-FOOTER_TAIL:], len(data))
    assert plan.units == source.units(path, 0) and len(plan.units) == 25


def test_a_damaged_footer_is_a_one_line_error_naming_the_file(tmp_path):
    path = str(tmp_path / "bad.parquet")
    data = bytearray(_parquet(path))
    data[-8:-4] = b"\xff\xff\xff\x7f"  # the footer's length now points before the file's start
    with open(path, "wb") as f:
        f.write(data)
    from beamscore.errors import BeamscoreError

    with pytest.raises(BeamscoreError, match=r"bad.parquet: not a readable Parquet file"):
        ParquetSource().plan_file(path, 0, bytes(data), len(data))
