"""Tiny tables with history, written by ``deltalake`` and ``pyiceberg`` themselves, and the
model the table tests score with.

The model: signature ``serving_default``, ``x`` float32 ``[None]`` -> ``s = 2 * x + 1``.
Every table has ``id`` (int64, unique) and ``x`` (float32, ``x = id / 10`` unless updated).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["delta_history", "delta_partitioned", "iceberg_history", "rows", "save_model", "scored"]


def save_model(path: str) -> str:
    import tensorflow as tf

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"s": 2.0 * x + 1.0}

    module = Affine()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def rows(ids, x=None, **extra) -> pa.Table:
    ids = np.asarray(list(ids), dtype=np.int64)
    x = (ids / 10).astype(np.float32) if x is None else np.asarray(x, dtype=np.float32)
    return pa.table({"id": ids, "x": x, **extra})


def delta_history(root: str) -> dict[int, pa.Table]:
    """A Delta table with history: v0 100 rows, v1 append of 50, v2 delete of 15 ids, v3 update
    of 18 rows' x. Returns each version's rows as the table's own reader gives them."""
    from deltalake import DeltaTable, write_deltalake

    write_deltalake(root, rows(range(100)))
    write_deltalake(root, rows(range(100, 150)), mode="append")
    table = DeltaTable(root)
    table.delete("id >= 40 AND id < 55")
    table = DeltaTable(root)
    table.update(predicate="id >= 70 AND id < 88", updates={"x": "x + 1000"})
    return {v: DeltaTable(root, version=v).to_pyarrow_table() for v in range(4)}


def delta_partitioned(root: str) -> pa.Table:
    """A Delta table partitioned by ``country`` (string) and ``day`` (date): JP rows overwritten
    once (87 rows written into JP in all, 30 live). Returns the live rows."""
    import datetime as dt

    from deltalake import DeltaTable, write_deltalake

    def part(ids, country, day):
        n = len(ids)
        return rows(ids, country=pa.array([country] * n), day=pa.array([day] * n, pa.date32()))

    d1, d2 = dt.date(2026, 12, 1), dt.date(2026, 12, 2)
    first = pa.concat_tables(
        [part(range(0, 57), "JP", d1), part(range(57, 80), "US", d1), part(range(80, 100), "US", d2)]
    )
    write_deltalake(root, first, partition_by=["country", "day"])
    write_deltalake(
        root,
        part(range(200, 230), "JP", d1),
        partition_by=["country", "day"],
        mode="overwrite",
        predicate="country = 'JP'",
    )
    return DeltaTable(root).to_pyarrow_table()


def iceberg_history(warehouse: Path) -> dict:
    """An Iceberg table in a SQLite catalog: 100 rows, an append of 50, a delete of 10 ids, then
    ``x`` renamed ``feature`` and a new column ``x`` (null in every existing file), then an
    append of 40 rows with both. Returns the catalog config, the table and its snapshot ids."""
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse.mkdir(parents=True, exist_ok=True)
    props = {"uri": f"sqlite:///{warehouse}/catalog.db", "warehouse": f"file://{warehouse}"}
    catalog = SqlCatalog("lake", **props)
    catalog.create_namespace("db")
    table = catalog.create_table("db.events", schema=rows([]).schema)
    table.append(rows(range(100)))
    table.append(rows(range(100, 150)))
    table.delete("id >= 20 and id < 30")
    before_rename = table.current_snapshot().snapshot_id
    with table.update_schema() as update:
        update.rename_column("x", "feature")
    with table.update_schema() as update:
        update.add_column("x", _float())
    ids = np.arange(300, 340, dtype=np.int64)
    table.append(pa.table({"id": ids, "feature": (ids / 10).astype(np.float32), "x": (ids / 5).astype(np.float32)}))
    return {"props": props, "table": table, "before_rename": before_rename}


def _float():
    from pyiceberg.types import FloatType

    return FloatType()


def scored(out: Path) -> pa.Table:
    """The job's output rows (every part file), sorted by id."""
    parts = sorted(out.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).sort_by("id")


def manifest(out: Path) -> dict:
    return json.loads((out / "_manifest.json").read_text())
