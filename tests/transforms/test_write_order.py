"""Misuse of the internal Batch/WorkUnit path fails loudly instead of losing rows."""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beamscore.errors import BeamscoreError
from beamscore.io.base import WorkUnit
from beamscore.transforms.batch import Batch
from beamscore.transforms.write import WriteParquet, _OpenUnit, check_order

UNIT = WorkUnit(shard=0, index=0, path="in.parquet", start=0, stop=10, rows=1000)


def _batch(index: int, last: bool = False) -> Batch:
    return Batch(UNIT, index, index * 100, last, pa.table({"x": np.arange(100)}))


def test_one_hand_made_last_batch_per_row_group_fails_instead_of_writing_10_of_1000_rows(tmp_path):
    # The review's worst finding: a Batch(unit, last=True) per row group of one unit made
    # every batch replace the unit's file: 100 of 1,000 rows written (10 of 1,000 in the
    # review's run), exit 0. Now the second batch of a committed unit stops the job.
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"x": np.arange(1000)}), path, row_group_size=100)
    f = pq.ParquetFile(path)
    batches = [Batch(UNIT, 0, 0, True, f.read_row_group(i)) for i in range(f.num_row_groups)]
    out = str(tmp_path / "out")
    with pytest.raises(Exception, match="would replace the unit's file"), beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(batches) | WriteParquet(out)
    assert not os.path.exists(os.path.join(out, "part-00000-00000.parquet")) or (
        pq.read_metadata(os.path.join(out, "part-00000-00000.parquet")).num_rows == 100
    )


def test_batches_in_order_write_every_row(tmp_path):
    out = str(tmp_path / "out")
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create([_batch(i, last=i == 9) for i in range(10)]) | WriteParquet(out)
    table = pq.read_table(os.path.join(out, "part-00000-00000.parquet"))
    assert table.num_rows == 1000


def test_repeated_and_skipped_batches_are_refused():
    state = _OpenUnit(writer=None, next_index=3)  # type: ignore[arg-type]
    with pytest.raises(BeamscoreError, match="batch 2 of unit part-00000-00000 is a repeated batch; expected batch 3"):
        check_order(_batch(2), state, committed=False)
    with pytest.raises(BeamscoreError, match=r"batch 5 .* is out of order; expected batch 3"):
        check_order(_batch(5), state, committed=False)
    with pytest.raises(BeamscoreError, match="is out of order; expected batch 0"):
        check_order(_batch(1), None, committed=False)
    check_order(_batch(3), state, committed=False)
    check_order(_batch(0), None, committed=False)
