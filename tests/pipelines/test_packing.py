"""Small files packed into work units: a job over many small files makes about as many units
and part files as one over a few large ones, and every row is still traced to its file."""

from __future__ import annotations

import json
import os

import job_models
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scores import assert_scores_close

import beamscore.io.base as io_base
from beamscore.cli import main
from beamscore.io.base import WorkUnit, pack_units

FILES, ROWS = 12, 3


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return job_models.build_all(str(tmp_path_factory.mktemp("models")))["raising"]


@pytest.fixture(autouse=True)
def pack_small_jobs(monkeypatch):
    """Pack from 5 files on (the default waits for more than 100), so that jobs stay small."""
    monkeypatch.setattr(io_base, "PACK_AFTER", 4)


def write_files(directory, n: int = FILES, rows: int = ROWS) -> np.ndarray:
    """``n`` one-row-group Parquet files ``f00000.parquet``... of ``rows`` rows (id, x[4])."""
    os.makedirs(directory, exist_ok=True)
    x = np.random.default_rng(7).normal(size=(n * rows, 4)).astype(np.float32)
    for i in range(n):
        part = x[i * rows : (i + 1) * rows]
        ids = np.arange(i * rows, (i + 1) * rows)
        xs = pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), 4)
        pq.write_table(pa.table({"id": ids, "x": xs}), os.path.join(directory, f"f{i:05d}.parquet"))
    return x


def args_for(model: str, tmp_path, *more: str) -> list[str]:
    out = str(tmp_path / "out")
    return ["score", "--model", model, "--input", str(tmp_path / "in" / "*.parquet"), "--output", out, *more]


def test_pack_units_runs_of_whole_small_files_within_rows_and_bytes():
    units = [WorkUnit(i, 0, f"f{i}", 0, 3, 3) for i in range(10)]
    split = [WorkUnit(10, 0, "big", 0, 1, 8), WorkUnit(10, 1, "big", 1, 2, 8)]
    packed = pack_units([*units[:6], *split, *units[6:]], rows_per_unit=7)
    assert [u.name for u in packed] == [
        "part-00000-00000",  # f0 + f1 (6 rows; a third file would make 9 > 7)
        "part-00002-00000",
        "part-00004-00000",
        "part-00010-00000",  # a file of several units is never packed, and ends a run
        "part-00010-00001",
        "part-00006-00000",
        "part-00008-00000",
    ]
    assert [[m.path for m in u.members] for u in packed if u.members] == [
        ["f0", "f1"], ["f2", "f3"], ["f4", "f5"], ["f6", "f7"], ["f8", "f9"]
    ]  # fmt: skip
    assert packed[0].rows == 6 and packed[0].files == [["f0", 0, 3], ["f1", 0, 3]]
    paths, rows = packed[0].locate(np.array([0, 2, 3, 5]))
    assert paths == ["f0", "f0", "f1", "f1"] and rows.tolist() == [0, 2, 0, 2]
    assert pack_units(units, rows_per_unit=7) == pack_units(list(units), rows_per_unit=7)  # deterministic
    by_bytes = pack_units(units, rows_per_unit=100, sizes={f"f{i}": 40 for i in range(10)}, max_bytes=100)
    assert [len(u.members) for u in by_bytes] == [2, 2, 2, 2, 2]
    assert pack_units(units[:4], rows_per_unit=7) == units[:4]  # no more than PACK_AFTER files: as they were


def test_small_files_make_few_units_and_one_part_file_each(tmp_path, model, capsys):
    x = write_files(tmp_path / "in")
    assert main(args_for(model, tmp_path, "--keep", "id", "--rows-per-unit", "10")) == 0, capsys.readouterr().err
    out = tmp_path / "out"
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["units"], m["rows_in"], m["rows_out"], m["rows_failed"]) == (4, 36, 36, 0)
    assert len(m["outputs"]) == 4 and sorted(os.listdir(out / "_units")) == [
        "_job.json", "part-00000-00000.json", "part-00003-00000.json", "part-00006-00000.json",
        "part-00009-00000.json",
    ]  # fmt: skip
    receipt = json.loads((out / "_units" / "part-00003-00000.json").read_text())
    assert [[os.path.basename(p), a, b] for p, a, b in receipt["inputs"]] == [
        ["f00003.parquet", 0, 3], ["f00004.parquet", 0, 3], ["f00005.parquet", 0, 3]
    ]  # fmt: skip
    table = pa.concat_tables([pq.read_table(f) for f in m["outputs"]])
    assert table["id"].to_pylist() == list(range(36))
    assert_scores_close(np.stack(table["y"].to_numpy(zero_copy_only=False)), job_models.reference(model, x)["y"])


def test_a_failing_row_and_an_unreadable_file_in_a_pack_name_their_file_and_row(tmp_path, model, capsys):
    from beamscore.config import ScoreConfig
    from beamscore.pipelines.plan import plan_job
    from beamscore.pipelines.runners import pipeline_options
    from beamscore.pipelines.score import run_plan

    write_files(tmp_path / "in")
    bad = pq.read_table(tmp_path / "in" / "f00004.parquet").to_pydict()
    bad["x"][1][0] = 100.0  # the model raises on this row: row 1 of f00004
    table = pa.table({"id": bad["id"], "x": pa.array(bad["x"], pa.list_(pa.float32(), 4))})
    pq.write_table(table, tmp_path / "in" / "f00004.parquet")
    config = ScoreConfig(
        model=model, inputs=[str(tmp_path / "in" / "*.parquet")], output=str(tmp_path / "out"),
        keep=["id"], rows_per_unit=10, max_failed_rows=10,
    )  # fmt: skip
    plan = plan_job(config)
    assert len(plan.units) == 4
    with open(tmp_path / "in" / "f00007.parquet", "r+b") as f:  # damaged after planning
        f.seek(8)
        f.write(b"\xff" * 64)
    result = run_plan(plan, pipeline_options([], {}), progress=False)
    m = result.manifest
    assert m["rows_in"] == 36 and m["rows_in"] == m["rows_out"] + m["rows_failed"]
    errors = pa.concat_tables([pq.read_table(f) for f in m["errors"]]).to_pylist()
    by_file = {os.path.basename(e["source"]): e for e in errors}
    assert by_file["f00004.parquet"]["row"] == 1 and by_file["f00004.parquet"]["unit"] == "part-00003-00000"
    unread = by_file["f00007.parquet"]
    assert unread["unit"] == "part-00006-00000" and unread["row"] == 0 and unread["stage"] == "read"
    assert m["rows_failed"] == 1 + sum(e["count"] for e in errors if e["source"].endswith("f00007.parquet"))
    written = pa.concat_tables([pq.read_table(f) for f in m["outputs"]])["id"].to_pylist()
    assert 13 not in written and 12 in written and 14 in written


def test_resume_redoes_only_the_packed_units_without_receipts(tmp_path, model, capsys):
    write_files(tmp_path / "in")
    args = args_for(model, tmp_path, "--keep", "id", "--rows-per-unit", "10")
    assert main(args) == 0, capsys.readouterr().err
    out = tmp_path / "out"
    first = json.loads((out / "_manifest.json").read_text())
    (out / "_manifest.json").unlink()  # as if killed before the end
    (out / "_units" / "part-00006-00000.json").unlink()
    assert main([*args, "--resume"]) == 0, capsys.readouterr().err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["units"], m["units_resumed"], m["rows_in"], m["rows_out"]) == (4, 3, 36, 36)
    assert m["outputs"] == first["outputs"]


def test_a_pack_on_an_object_store_reads_its_files_many_at_a_time(tmp_path):
    """80 files at 50 ms a request, two requests each: 8 s one by one, 1 s eight at a time
    (pyarrow's own I/O threads, what a pack got before); an object store's pack reads them far
    more at once. Counted, not timed: the most requests the store saw in flight at once."""
    from beamscore import fs as bfs
    from beamscore.io.parquet import ParquetSource
    from beamscore.pipelines.survey import survey
    from beamscore.transforms.read import ReadUnitFn
    from benchmarks.delayed_fs import DelayedFileSystem, register

    x = write_files(tmp_path / "in", 80)
    register(0.05)
    facts = bfs.list_files([f"delayed://{tmp_path}/in/*.parquet"])
    source = ParquetSource(rows_per_unit=10_000)
    (unit,) = survey(source, facts)
    assert len(unit.members) == 80
    requests = DelayedFileSystem.requests
    DelayedFileSystem.most_in_flight = 0
    batches = list(ReadUnitFn(source, ["id", "x"], 64).process(unit))
    assert DelayedFileSystem.requests - requests == 2 * 80  # each file's info and its data, no footer read
    assert DelayedFileSystem.most_in_flight > 16, DelayedFileSystem.most_in_flight  # 8 before
    table = pa.concat_tables(b.table for b in batches)
    assert table["id"].to_pylist() == list(range(80 * ROWS))
    np.testing.assert_array_equal(np.stack(table["x"].to_numpy(zero_copy_only=False)), x)


@pytest.mark.parametrize("slow", [False, True])
def test_a_local_pack_is_read_in_its_own_thread_unless_its_files_read_slowly(tmp_path, slow, monkeypatch):
    """Small local files read in a fraction of a millisecond: a pack's own thread reads them
    (8 threads would only cost CPU). A mount that is local by path but slow (gcsfuse, NFS:
    here a read that sleeps 5 ms) is told by its latency: after the first
    :data:`~beamscore.transforms.read.PROBE_FILES` files, the threads read the rest."""
    import threading
    import time

    from beamscore import fs as bfs
    from beamscore.io.parquet import ParquetSource
    from beamscore.pipelines.survey import survey
    from beamscore.transforms import read as read_module

    readers: list[int] = []

    class Recorded(ParquetSource):
        def read(self, unit, columns, batch_size):
            readers.append(threading.get_ident())
            if slow:
                time.sleep(0.005)
            yield from super().read(unit, columns, batch_size)

    if not slow:  # fast whatever the machine's load: the threshold well above any local read
        monkeypatch.setattr(read_module, "SLOW_FILE_S", 1.0)
    x = write_files(tmp_path / "in", 40)
    source = Recorded(rows_per_unit=10_000)
    (unit,) = survey(source, bfs.list_files([str(tmp_path / "in" / "*.parquet")]))
    assert len(unit.members) == 40
    batches = list(read_module.ReadUnitFn(source, ["id", "x"], 64).process(unit))
    here = threading.get_ident()
    probed = read_module.PROBE_FILES
    assert len(readers) == 40 and all(r == here for r in readers[:probed])
    assert any(r != here for r in readers[probed:]) if slow else all(r == here for r in readers)
    table = pa.concat_tables(b.table for b in batches)
    assert table["id"].to_pylist() == list(range(40 * ROWS))
    np.testing.assert_array_equal(np.stack(table["x"].to_numpy(zero_copy_only=False)), x)
