"""A stopped job's writers in this process write nothing after its clean-up.

CI caught the race this guards: SIGHUP stopped a local job, the launcher removed
``OUTPUT/_temporary/``, and a FnApiRunner worker thread still in its bundle committed a unit a
moment later, leaving ``_temporary/`` behind."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beamscore.io.base import WorkUnit
from beamscore.io.parquet_sink import ParquetSink
from beamscore.transforms import stopping
from beamscore.transforms.batch import Batch
from beamscore.transforms.manifest import remove_temporary
from beamscore.transforms.write import WriteUnitFn

UNIT = WorkUnit(shard=0, index=0, path="in.parquet", start=0, stop=10, rows=300)


def _batch(index: int, last: bool = False) -> Batch:
    return Batch(UNIT, index, index * 100, last, pa.table({"x": np.arange(100)}), rows_in=100)


def _writer(out: str) -> WriteUnitFn:
    fn = WriteUnitFn(ParquetSink(out, row_group_rows=100), {}, out)
    fn.start_bundle()
    return fn


def test_a_unit_whose_job_was_stopped_midway_leaves_no_file(tmp_path):
    out = str(tmp_path / "out")
    stopping.allow(out)
    fn = _writer(out)
    assert list(fn.process(_batch(0))) == [] and list(fn.process(_batch(1))) == []
    assert os.listdir(os.path.join(out, "_temporary"))  # the unit's file, half written
    assert stopping.stop(out, timeout=1)
    remove_temporary(out)
    assert list(fn.process(_batch(2, last=True))) == []  # the last batch: no commit, no receipt
    fn.finish_bundle()  # and no "units were not finished" error from a stopped job
    assert sorted(os.listdir(out)) == []


def test_stop_waits_for_a_write_in_flight_and_a_new_job_writes_again(tmp_path):
    out = str(tmp_path / "out")
    stopping.allow(out)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with stopping.writing(out) as go:
            assert go
            entered.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait(5)
    assert stopping.stop(out, timeout=0.1) is False  # still in flight at the deadline
    threading.Timer(0.2, release.set).start()
    began = time.perf_counter()
    assert stopping.stop(out, timeout=5) is True
    assert time.perf_counter() - began >= 0.1
    t.join()
    stopping.allow(out)
    fn = _writer(out)
    results = [r for i in range(3) for r in fn.process(_batch(i, last=i == 2))]
    assert [r.rows_out for r in results] == [300]
    assert pq.read_metadata(os.path.join(out, "part-00000-00000.parquet")).num_rows == 300
