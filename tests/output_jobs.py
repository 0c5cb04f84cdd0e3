"""A real job's output to read back: ``beamscore score`` of the two-signature test model over
two Parquet shards with null rows, so the output holds part files, dead letters in
``_errors/``, receipts in ``_units/`` and ``_manifest.json``."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from beamscore.cli import main

ROWS_PER_SHARD, SHARDS, NULL_EVERY = 300, 2, 30


def score_with_dead_letters(model: str, root: str, output: str = "OUT") -> str:
    """Score ``SHARDS`` shards of ``ROWS_PER_SHARD`` rows (every ``NULL_EVERY``-th ``x`` null)
    into ``root/output`` in units of 100 rows; returns the output directory."""
    rng = np.random.default_rng(1)
    os.makedirs(os.path.join(root, "in"), exist_ok=True)
    for s in range(SHARDS):
        x = rng.normal(size=(ROWS_PER_SHARD, 4)).astype(np.float32)
        nulls = np.zeros(ROWS_PER_SHARD, bool)
        nulls[::NULL_EVERY] = True
        column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4, mask=pa.array(nulls))
        ids = np.arange(s * ROWS_PER_SHARD, (s + 1) * ROWS_PER_SHARD)
        pq.write_table(
            pa.table({"id": ids, "x": column}), os.path.join(root, "in", f"s{s}.parquet"), row_group_size=100
        )
    out = os.path.join(root, output)
    args = ["score", "--model", model, "--input", os.path.join(root, "in", "*.parquet"), "--output", out]
    code = main([*args, "--keep", "id", "--rows-per-unit", "100", "--max-failed-fraction", "0.5"])
    assert code == 0
    return out


def scored_rows() -> int:
    return SHARDS * (ROWS_PER_SHARD - ROWS_PER_SHARD // NULL_EVERY)
