"""Parquet specifics: tensor and list columns, only the needed columns, row-group units."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.io.parquet import ParquetSource


def test_a_fixed_shape_tensor_column_feeds_an_image_input(models, tmp_path, capsys):
    images = np.random.default_rng(3).normal(size=(50, 8, 8, 3)).astype(np.float32)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "images.parquet")
    table = pa.table({"image": pa.FixedShapeTensorArray.from_numpy_ndarray(images), "id": pa.array(np.arange(50))})
    pq.write_table(table, path, row_group_size=16)
    spec = ParquetSource().columns(path)["image"]
    assert (spec.dtype, spec.row_shape) == ("float32", (8, 8, 3))
    out = tmp_path / "out"
    code = main(["score", "--model", models["image"], "--input", path, "--output", str(out), "--keep", "id"])
    assert code == 0, capsys.readouterr().err
    expected = direct_call(models["image"], "serving_default", image=images)
    got = read_output(str(out))
    assert_scores_close(np.stack(got["mean"].to_numpy(zero_copy_only=False)), expected["mean"])


def test_a_list_column_of_equal_lengths_feeds_a_fixed_input(models, tmp_path, capsys):
    x = np.random.default_rng(4).normal(size=(40, 4)).astype(np.float32)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "lists.parquet")
    offsets = pa.array(np.arange(0, 41 * 4, 4, dtype=np.int32))
    pq.write_table(pa.table({"x": pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)))}), path)
    assert ParquetSource().columns(path)["x"].row_shape is None
    code = main(["score", "--model", models["two_sig"], "--input", path, "--output", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(read_output(str(tmp_path / "out"))["label"].to_numpy(), expected["label"])


def test_units_are_runs_of_row_groups_and_only_needed_columns_are_read(tmp_path):
    path = str(tmp_path / "groups.parquet")
    n = 1000
    pq.write_table(
        pa.table({"id": np.arange(n), "x": np.arange(n) * 0.5, "blob": pa.array([b"z" * 100] * n)}),
        path,
        row_group_size=64,
    )
    source = ParquetSource(rows_per_unit=200)
    units = source.units(path, 2)
    assert [(u.start, u.stop, u.rows) for u in units] == [(0, 4, 256), (4, 8, 256), (8, 12, 256), (12, 16, 232)]
    assert {u.shard for u in units} == {2}
    tables = [t for u in units for t in source.read(u, ["x", "id"], 100)]
    assert {tuple(t.column_names) for t in tables} == {("x", "id")}
    assert max(t.num_rows for t in tables) <= 100
    assert pa.concat_tables(tables)["id"].to_numpy().tolist() == list(range(n))


def test_a_file_with_two_columns_of_one_name_is_refused_in_one_line(models, tmp_path, capsys):
    """pyarrow writes duplicate column names; planning failed with ``KeyError: 'Column x
    does not exist in schema'``. It is one line naming the file and the column now."""
    x = np.random.default_rng(4).normal(size=(10, 4)).astype(np.float32)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "twice.parquet")
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)
    pq.write_table(pa.table([column, pa.array(np.arange(10)), column], names=["x", "id", "x"]), path)
    code = main(["score", "--model", models["two_sig"], "--input", path, "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"beamscore: error: {path}: column 'x' appears 2 times; beamscore cannot tell them apart")


def test_small_row_groups_are_joined_into_batches_of_batch_size(models, tmp_path, capsys):
    """A streaming writer's file of one-row row groups gave the model one batch per row
    (20,000 calls for 20,000 rows); row groups' batches are joined up to --batch-size now,
    in order, and a damaged row group still costs only its own rows."""
    x = np.random.default_rng(5).normal(size=(300, 4)).astype(np.float32)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "small.parquet")
    table = pa.table({"id": np.arange(300), "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)})
    pq.write_table(table, path, row_group_size=7)
    source = ParquetSource().with_files([path])
    (unit,) = source.units(path, 0)
    batches = list(source.read(unit, ["id", "x"], 64))
    assert [b.num_rows for b in batches] == [64, 64, 64, 64, 44]
    assert pa.concat_tables(batches)["id"].to_pylist() == list(range(300))
    big = list(source.read(unit, ["id"], 5))  # row groups over --batch-size: as pyarrow reads them
    assert all(b.num_rows <= 5 for b in big) and sum(b.num_rows for b in big) == 300
    out = tmp_path / "out"
    code = main(["score", "--model", models["two_sig"], "--input", path, "--output", str(out), "--keep", "id"])
    assert code == 0, capsys.readouterr().err
    got = read_output(str(out))
    assert got["id"].to_pylist() == list(range(300))
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(got["label"].to_numpy(), expected["label"])


def test_a_file_reads_alike_whole_from_memory_or_streamed_from_its_file(tmp_path, monkeypatch):
    """A small file is read whole and parsed from memory (local up to ``LOCAL_WHOLE_BYTES``,
    object stores up to ``WHOLE_FILE_BYTES``); a larger one through its file. The same rows
    either way, a null row of a fixed-size list column included (pyarrow cannot read it;
    the polars detour reads the file from memory as well)."""
    import fsspec

    from beamscore.io import parquet as parquet_module
    from beamscore.io.base import UnreadRows

    x = np.random.default_rng(9).normal(size=(40, 8)).astype(np.float32)
    mask = pa.array(np.isin(np.arange(40), [5, 21]))
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 8, mask=mask)
    table = pa.table({"id": np.arange(40), "x": column})
    local = str(tmp_path / "v.parquet")
    pq.write_table(table, local, row_group_size=16)
    remote = "memory://whole-or-streamed/v.parquet"
    with fsspec.open(remote, "wb") as f, open(local, "rb") as written:
        f.write(written.read())

    def read(path: str) -> pa.Table:
        source = ParquetSource().with_dead_letters()
        items = [item for unit in source.units(path, 0) for item in source.read(unit, ["id", "x"], 8)]
        assert not any(isinstance(item, UnreadRows) for item in items)
        return pa.concat_tables(items)

    whole = read(local)
    assert read(remote).equals(whole)
    monkeypatch.setattr(parquet_module, "LOCAL_WHOLE_BYTES", 0)
    monkeypatch.setattr(parquet_module, "WHOLE_FILE_BYTES", 0)
    assert read(local).equals(whole) and read(remote).equals(whole)
    assert whole["id"].to_pylist() == list(range(40))
    assert whole["x"].is_null().to_pylist() == [i in (5, 21) for i in range(40)]
    scored = [v for v in whole["x"].to_pylist() if v is not None]
    np.testing.assert_array_equal(np.stack(scored), np.delete(x, [5, 21], 0))
