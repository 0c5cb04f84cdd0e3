"""Foreign inputs at the source level: ``--pad`` on Arrow columns, hive partition keys typed
as pyarrow.dataset types them, the one output type of a ``--keep`` column, dictionary strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from beamscore.errors import BeamscoreError
from beamscore.io import hive
from beamscore.io.arrow import column_spec, to_numpy
from beamscore.io.keep import cast_kept, keep_type
from beamscore.io.npz import NpzSource
from beamscore.io.pad import Pad, pad_table
from beamscore.io.parquet import ParquetSource


@pytest.mark.parametrize("type_", [pa.list_(pa.int64()), pa.large_list(pa.int64())])
def test_pad_cuts_and_fills_each_row_and_keeps_null_rows(type_):
    rows = [[1, 2, 3, 4, 5], [6], [], None, [None, 7], [8, 9, 10]]
    table = pa.table({"t": pa.array(rows, type_), "other": pa.array(range(6))})
    padded = pad_table(table.slice(1), {"t": Pad(3, "-1")})  # a sliced table: offsets not from 0
    assert padded["t"].type == pa.list_(pa.int64(), 3)
    assert padded["t"].to_pylist() == [[6, -1, -1], [-1, -1, -1], None, [None, 7, -1], [8, 9, 10]]
    assert padded["other"].to_pylist() == [1, 2, 3, 4, 5]


def test_pad_works_on_fixed_size_lists_strings_and_dictionaries():
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype=np.float32)), 4)
    words = pa.array([["a", "b"], ["c"]], pa.list_(pa.string()))
    codes = pa.ListArray.from_arrays(pa.array([0, 1, 3], pa.int32()), pa.array(["x", "y", "x"]).dictionary_encode())
    out = pad_table(pa.table({"f": fixed, "w": words, "c": codes}), {"f": Pad(6), "w": Pad(3, "?"), "c": Pad(2)})
    assert out["f"].to_pylist() == [[0, 1, 2, 3, 0, 0], [4, 5, 6, 7, 0, 0]]
    assert out["w"].to_pylist() == [["a", "b", "?"], ["c", "?", "?"]]
    assert out["c"].to_pylist() == [["x", ""], ["y", "x"]]


def test_a_pad_value_of_the_wrong_type_is_refused(tmp_path):
    path = str(tmp_path / "t.parquet")
    pq.write_table(pa.table({"t": pa.array([[1], [2, 3]]), "n": [1, 2]}), path)
    with pytest.raises(BeamscoreError, match=r"--pad t=4:x: 'x' is not a int64 value"):
        ParquetSource(pad={"t": "4:x"}).columns(path)
    with pytest.raises(BeamscoreError, match=r"--pad n: column 'n' holds a scalar; --pad applies to a list"):
        ParquetSource(pad={"n": "4"}).columns(path)
    with pytest.raises(BeamscoreError, match=r"--pad u: no column 'u'; columns: t, n"):
        ParquetSource(pad={"u": "4"}).columns(path)
    assert ParquetSource(pad={"t": "4"}).columns(path)["t"].row_shape == (4,)


def test_npz_pads_ragged_object_arrays_and_2d_arrays(tmp_path):
    ragged = np.empty(3, dtype=object)
    ragged[:] = [np.array([1, 2, 3]), np.array([4]), None]
    path = str(tmp_path / "r.npz")
    np.savez(path, t=ragged, m=np.arange(6).reshape(3, 2))
    source = NpzSource(allow_pickle=True, pad={"t": "2:9", "m": "3"})
    specs = source.columns(path)
    assert (specs["t"].dtype, specs["t"].row_shape, specs["m"].row_shape) == ("int64", (2,), (3,))
    (table,) = source.read(source.units(path, 0)[0], ["t", "m"], 10)
    assert table["t"].to_pylist() == [[1, 2], [4, 9], None]
    assert table["m"].to_pylist() == [[0, 1, 0], [2, 3, 0], [4, 5, 0]]


def test_dictionary_strings_read_as_their_values():
    arr = pa.array(["b", "a", "b"]).dictionary_encode()
    assert column_spec("s", arr.type) == column_spec("s", pa.string())
    assert to_numpy(arr, "s", "here").tolist() == [b"b", b"a", b"b"]


def test_hive_keys_are_typed_as_pyarrow_dataset_types_them(tmp_path):
    dirs = [
        "date=2026-11-25/region=eu/n=3/k=07",
        "date=2026-11-26/region=us%2Fw/n=-12/k=99999999999",
        "date=2026-11-26/region=__HIVE_DEFAULT_PARTITION__/n=4/k=1",
    ]
    files = []
    for i, d in enumerate(dirs):
        (tmp_path / d).mkdir(parents=True)
        files.append(str(tmp_path / d / "part-0.parquet"))
        pq.write_table(pa.table({"a": [i]}), files[-1])
    ours = hive.infer_partitions(files)
    theirs = ds.dataset(str(tmp_path), partitioning="hive").schema
    assert ours == {name: theirs.field(name).type for name in ("date", "region", "n")} | {"k": pa.int64()}
    assert theirs.field("k").type == pa.string()  # pyarrow: past int32 is a string; ours: int64
    assert hive.partition_values(files[1]) == {"date": "2026-11-26", "region": "us/w", "n": "-12", "k": "99999999999"}
    expected = ds.dataset(str(tmp_path), partitioning="hive").to_table().sort_by("a")
    expected = expected.set_column(4, "k", expected["k"].cast(pa.int64()))
    source = ParquetSource().with_files(files)
    got = [next(source.read(source.units(f, 0)[0], ["a", "date", "region", "n", "k"], 10)) for f in files]
    assert pa.concat_tables(got).to_pylist() == expected.select(["a", "date", "region", "n", "k"]).to_pylist()


def test_a_stored_column_wins_over_a_partition_key(tmp_path):
    (tmp_path / "region=eu").mkdir()
    path = str(tmp_path / "region=eu" / "p.parquet")
    pq.write_table(pa.table({"region": ["stored"], "v": [1]}), path)
    source = ParquetSource().with_files([path])
    assert source.column_types(path) == {"region": pa.string(), "v": pa.int64()}
    assert next(source.read(source.units(path, 0)[0], ["region"], 10))["region"].to_pylist() == ["stored"]


@pytest.mark.parametrize(
    ("given", "written"),
    [
        (pa.int8(), pa.int64()),
        (pa.int32(), pa.int64()),
        (pa.uint32(), pa.int64()),
        (pa.uint64(), pa.uint64()),
        (pa.float16(), pa.float64()),
        (pa.float32(), pa.float64()),
        (pa.large_string(), pa.string()),
        (pa.dictionary(pa.int8(), pa.string()), pa.string()),
        (pa.large_binary(), pa.binary()),
        (pa.large_list(pa.int32()), pa.list_(pa.int64())),
        (pa.list_(pa.float32(), 3), pa.list_(pa.float64(), 3)),
        (pa.timestamp("ms"), pa.timestamp("ms")),
        (pa.bool_(), pa.bool_()),
    ],
)
def test_keep_types_widen_within_their_kind(given, written):
    assert keep_type(given) == written


def test_kept_columns_are_cast_to_the_job_type_or_refused():
    assert cast_kept(pa.array([1, 2], pa.int32()), "id", pa.int64(), 2).type == pa.int64()
    assert cast_kept(None, "id", pa.int64(), 3).to_pylist() == [None] * 3
    assert cast_kept(pa.array(["a"]).dictionary_encode(), "s", pa.string(), 1).to_pylist() == ["a"]
    with pytest.raises(BeamscoreError, match=r"--keep column 'id' has type string here and cannot be written as int64"):
        cast_kept(pa.array(["x"]), "id", pa.int64(), 1)


def test_without_polars_a_duckdb_null_array_row_is_a_clear_error(tmp_path, monkeypatch):
    import duckdb

    path = str(tmp_path / "d.parquet")
    duckdb.sql(f"COPY (SELECT * FROM (VALUES ([1, 2]::FLOAT[2]), (NULL)) t(x)) TO '{path}'")
    source = ParquetSource()
    unit = source.units(path, 0)[0]
    monkeypatch.setitem(__import__("sys").modules, "polars", None)  # as if polars were not installed
    with pytest.raises(BeamscoreError, match=r"pyarrow cannot read a null row of a list column .*install polars"):
        list(source.read(unit, ["x"], 10))
    monkeypatch.undo()
    assert [t["x"].to_pylist() for t in source.read(unit, ["x"], 10)] == [[[1.0, 2.0], None]]
