"""A Parquet footer costs no request of its own on the worker: a small file on an object
store is read whole in one request; a larger one's unit carries the footer planning read,
and the worker does not read it again, with a fallback to reading it (no footer carried, the
plan's byte budget spent, the file changed since planning).

``delayed://`` (benchmarks/delayed_fs.py) is a real fsspec async filesystem over the local
disk that counts its requests; every range a worker's open file fetches is recorded here.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError
from beamscore.io import parquet
from beamscore.io.base import WorkUnit, carry_within
from beamscore.io.parquet import ParquetSource
from beamscore.pipelines.survey import survey
from beamscore.transforms.read import ReadUnitFn

#: files of 300 rows of 64 floats (77 KB): over the 64 KiB a footer read fetches, so a
#: worker that reads the footer makes a request of its own for it; "large" files here
#: (``WHOLE_FILE_BYTES`` is set to 64 KiB), not read whole
FILES, ROWS, WIDTH = 12, 300, 64


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("footers")
    x = np.random.default_rng(35).normal(size=(FILES * ROWS, WIDTH)).astype(np.float32)
    for i in range(FILES):
        part = x[i * ROWS : (i + 1) * ROWS]
        table = pa.table(
            {
                "id": np.arange(i * ROWS, (i + 1) * ROWS),
                "x": pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), WIDTH),
            }
        )
        pq.write_table(table, os.path.join(directory, f"f{i:03d}.parquet"))
    return str(directory)


@pytest.fixture
def fetches(monkeypatch) -> list[tuple[str, int, int]]:
    """``delayed://`` registered (no delay); each ``(path, start, end)`` a worker's file fetches.
    Files over 64 KiB count as large (not read whole)."""
    from benchmarks import delayed_fs

    monkeypatch.setattr(parquet, "WHOLE_FILE_BYTES", 64 << 10)
    delayed_fs.register(0.0)
    seen: list[tuple[str, int, int]] = []
    fetch = delayed_fs._DelayedFile._fetch_range

    def recording(self, start: int, end: int) -> bytes:
        seen.append((self.path, start, end))
        return fetch(self, start, end)

    monkeypatch.setattr(delayed_fs._DelayedFile, "_fetch_range", recording)
    return seen


def _read(units: list[WorkUnit]) -> pa.Table:
    """Every unit through the pipeline's reader, as one table."""
    read = ReadUnitFn(ParquetSource(), ["id", "x"], 128)
    return pa.concat_tables(batch.table for unit in units for batch in read.process(unit))


def _tail_reads(fetched: list[tuple[str, int, int]], sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """The fetches that start in a file's last 64 KiB: reads of its footer."""
    return [(path, start, end) for path, start, end in fetched if start >= sizes[path] - (64 << 10)]


def test_a_worker_reads_the_rows_with_the_footer_planning_read(shards, fetches):
    from benchmarks.delayed_fs import DelayedFileSystem

    facts = bfs.list_files([f"delayed://{shards}/*.parquet"])
    sizes = {bfs.filesystem(f.url)[1]: f.size for f in facts}
    units = survey(ParquetSource(), facts)
    assert len(units) == FILES and all(u.footer and u.size == f.size for u, f in zip(units, facts, strict=True))

    DelayedFileSystem.requests = 0
    carried = _read(units)
    assert _tail_reads(fetches, sizes) == []  # no footer fetched again
    assert DelayedFileSystem.requests == 2 * FILES  # the file's info and its data

    fetches.clear()
    DelayedFileSystem.requests = 0
    bare = _read([u.without_footer() for u in units])
    assert len(_tail_reads(fetches, sizes)) == FILES  # without it: each footer read again
    assert DelayedFileSystem.requests == 3 * FILES

    direct = pq.read_table(shards, columns=["id", "x"])
    assert carried.equals(bare) and carried.equals(direct)


def test_a_file_changed_since_planning_is_read_with_its_own_footer(shards, fetches, tmp_path):
    import shutil

    copy = tmp_path / "f.parquet"
    shutil.copy(os.path.join(shards, "f000.parquet"), copy)
    facts = bfs.list_files([f"delayed://{copy}"])
    (unit,) = survey(ParquetSource(), facts)
    assert unit.footer is not None
    pq.write_table(pq.read_table(copy).slice(0, 100), copy)  # replaced: 100 rows, another length
    with pytest.raises(BeamscoreError, match="changed after planning"):
        list(ParquetSource().read(unit, ["id", "x"], 128))


def test_a_small_file_on_an_object_store_is_read_whole_in_one_request(shards, fetches, monkeypatch):
    from benchmarks.delayed_fs import DelayedFileSystem

    monkeypatch.setattr(parquet, "WHOLE_FILE_BYTES", 8 << 20)  # the default: these files are small
    facts = bfs.list_files([f"delayed://{shards}/*.parquet"])
    units = survey(ParquetSource(), facts)
    assert [u.carried for u in units] == [0] * FILES  # nothing to carry: the footer comes with the data
    DelayedFileSystem.requests = 0
    table = _read(units)
    assert DelayedFileSystem.requests == 2 * FILES  # the file's info and the whole file
    assert sorted(start for _path, start, _end in fetches) == [0] * FILES
    assert table.equals(pq.read_table(shards, columns=["id", "x"]))


def test_local_files_carry_no_footer_and_read_the_same_rows(shards):
    facts = bfs.list_files([os.path.join(shards, "*.parquet")])
    units = survey(ParquetSource(), facts)
    assert [u.carried for u in units] == [0] * FILES  # a read from the page cache costs less
    assert _read(units).equals(pq.read_table(shards, columns=["id", "x"]))


def test_a_file_planned_on_a_worker_hands_its_footer_to_its_unit(shards, fetches):
    facts = bfs.list_files([f"delayed://{shards}/f001.parquet"])
    (unit,) = ParquetSource().plan_file(facts[0].url, 1, None, facts[0].size).units  # --plan-on-workers
    assert unit.footer is not None and unit.size == facts[0].size
    fetches.clear()
    assert _read([unit]).num_rows == ROWS
    assert _tail_reads(fetches, {bfs.filesystem(facts[0].url)[1]: facts[0].size}) == []


def test_the_plan_carries_footers_within_its_byte_budget_in_order():
    def unit(shard: int, footer: bytes | None) -> WorkUnit:
        return WorkUnit(shard, 0, f"gs://b/f{shard}", 0, 1, 3, 0, footer=footer, size=10)

    units = [unit(0, b"a" * 40), unit(1, None), unit(2, b"b" * 40), unit(3, b"c" * 10)]
    packed = WorkUnit(4, 0, "gs://b/f4", 0, 6, 6, None, (unit(4, b"d" * 5), unit(5, b"e" * 5)))
    kept = carry_within([*units, packed], budget=90)
    assert [u.carried for u in kept] == [40, 0, 40, 10, 0]  # the pack's 10 bytes are past 90
    assert kept == [*units, packed]  # the units themselves are unchanged (footers are not identity)
    assert [m.footer for m in kept[-1].members] == [None, None]
