"""End-to-end jobs over files that polars, duckdb and pyarrow write as users write them:
null rows in fixed-size lists, dictionary strings, ragged lists with ``--pad``, hive
partition directories, and part files whose ``--keep`` columns disagree on their type.

Every job checks ``rows_in`` against the rows the input holds, ``rows_in == rows_out +
rows_failed``, and every scored row against a direct call of the signature.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main


class ForeignModule(tf.Module):
    """``vec``: x float32 [None, 8] -> s = x @ (1..8); ``seq``: tokens int64 [None, None] ->
    total = sum(tokens * (1..L)); ``text``: s string [None] -> n (length), h (hash bucket)."""

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
    def vec(self, x):
        return {"s": tf.linalg.matvec(x, tf.range(1.0, 9.0))}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="tokens")])
    def seq(self, tokens):
        weights = tf.range(1, tf.shape(tokens)[1] + 1, dtype=tf.int64)
        return {"total": tf.reduce_sum(tokens * weights, axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
    def text(self, s):
        return {"n": tf.strings.length(s), "h": tf.strings.to_hash_bucket_fast(s, 1000)}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("foreign") / "m")
    module = ForeignModule()
    tf.saved_model.save(module, path, signatures={"vec": module.vec, "seq": module.seq, "text": module.text})
    return path


def score(model: str, signature: str, inp, out, *args: str) -> dict:
    """Run the job; return its manifest after checking that nothing was lost."""
    code = main(["score", "--model", model, "--signature", signature, "--input", str(inp), "--output", str(out), *args])
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"]
    allowed = int(args[args.index("--max-failed-rows") + 1]) if "--max-failed-rows" in args else 0
    assert code == (1 if manifest["rows_failed"] > allowed else 0)  # a failed row fails the job unless allowed
    return manifest


def errors_of(out) -> list[dict]:
    files = sorted((out / "_errors").glob("part-*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


# -- item 5: null rows in fixed-size list columns -------------------------------------------

NULL_ROWS = (5, 21, 22)


def vectors(n: int = 40) -> np.ndarray:
    return np.random.default_rng(5).normal(size=(n, 8)).astype(np.float32)


def write_polars(path: str, x: np.ndarray) -> None:
    rows = [None if i in NULL_ROWS else row.tolist() for i, row in enumerate(x)]
    frame = pl.DataFrame({"id": np.arange(len(x)), "x": rows}, schema={"id": pl.Int64, "x": pl.Array(pl.Float32, 8)})
    frame.write_parquet(path, row_group_size=16)


def write_duckdb(path: str, x: np.ndarray) -> None:
    values = ", ".join(
        f"({i}, {'NULL' if i in NULL_ROWS else '[' + ', '.join(repr(float(v)) for v in row) + ']::FLOAT[8]'})"
        for i, row in enumerate(x)
    )
    duckdb.sql(f"COPY (SELECT * FROM (VALUES {values}) t(id, x) ORDER BY id) TO '{path}' (ROW_GROUP_SIZE 16)")


def write_pyarrow(path: str, x: np.ndarray) -> None:
    mask = np.isin(np.arange(len(x)), NULL_ROWS)
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 8, mask=pa.array(mask))
    pq.write_table(pa.table({"id": np.arange(len(x)), "x": column}), path, row_group_size=16)


@pytest.mark.parametrize("writer", [write_polars, write_duckdb, write_pyarrow], ids=["polars", "duckdb", "pyarrow"])
def test_null_rows_of_a_fixed_size_list_are_dead_letters_and_the_rest_is_scored(model, tmp_path, writer):
    x = vectors()
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "v.parquet")
    writer(path, x)
    with pytest.raises(pa.ArrowInvalid):  # the reason for the detour: pyarrow alone cannot read it
        pq.read_table(path)
    out = tmp_path / "out"
    m = score(model, "vec", path, out, "--keep", "id", "--batch-size", "4")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (40, 37, 3)
    bad = errors_of(out)
    assert [(e["row"], e["stage"]) for e in bad] == [(r, "validate") for r in NULL_ROWS]
    assert all("column 'x' is null" in e["error"] for e in bad)
    table = read_output(str(out))
    good = np.array([i for i in range(40) if i not in NULL_ROWS])
    assert table["id"].to_pylist() == good.tolist()
    expected = direct_call(model, "vec", x=x[good])["s"]
    assert_scores_close(table["s"].to_numpy(), expected)


# -- item 6: dictionary-encoded strings -----------------------------------------------------

WORDS = ["alpha", "beta", "gamma", "beta", "delta", "alpha", "epsilon"] * 3


def write_categorical(path: str) -> None:
    pl.DataFrame(
        {"s": pl.Series(WORDS, dtype=pl.Categorical), "k": pl.Series(WORDS, dtype=pl.Categorical)}
    ).write_parquet(path)


def write_enum(path: str) -> None:
    enum = pl.Enum(sorted(set(WORDS)))
    pl.DataFrame({"s": pl.Series(WORDS, dtype=enum), "k": pl.Series(WORDS, dtype=enum)}).write_parquet(path)


def write_dictionary_encoded(path: str) -> None:
    words = pa.array(WORDS).dictionary_encode()
    pq.write_table(pa.table({"s": words, "k": words}), path, row_group_size=8)


@pytest.mark.parametrize(
    "writer", [write_categorical, write_enum, write_dictionary_encoded], ids=["categorical", "enum", "pyarrow"]
)
def test_dictionary_strings_feed_string_inputs(model, tmp_path, writer):
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "w.parquet")
    writer(path)
    assert pa.types.is_dictionary(pq.read_schema(path).field("s").type)
    out = tmp_path / "out"
    m = score(model, "text", path, out, "--keep", "k", "--batch-size", "5")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (len(WORDS), len(WORDS), 0)
    table = read_output(str(out))
    assert table.schema.field("k").type == pa.string()  # decoded: one output type per job
    assert table["k"].to_pylist() == WORDS
    expected = direct_call(model, "text", s=np.array([w.encode() for w in WORDS], dtype=object))
    assert table["n"].to_pylist() == expected["n"].tolist()
    assert table["h"].to_pylist() == expected["h"].tolist()


# -- item 7: ragged lists into [None, None] inputs with --pad --------------------------------

TOKENS = [[3, 1, 4, 1, 5, 9], [2, 6], [], [5, 3, 5], [8], [9, 7, 9, 3]] * 4


def padded(rows: list[list[int]], length: int, value: int) -> np.ndarray:
    return np.array([(r + [value] * length)[:length] for r in rows], dtype=np.int64)


def write_ragged(fmt: str, directory) -> tuple[str, list[str]]:
    """The ragged rows as a file of ``fmt``; returns the path and the extra flags it needs."""
    directory.mkdir()
    if fmt == "polars":
        path = str(directory / "t.parquet")
        pl.DataFrame({"tokens": TOKENS}, schema={"tokens": pl.List(pl.Int64)}).write_parquet(path)
        return path, []
    if fmt == "duckdb":
        path = str(directory / "t.parquet")
        rows = ", ".join(f"({i}, {r}::BIGINT[])" for i, r in enumerate(TOKENS))
        duckdb.sql(f"COPY (SELECT tokens FROM (VALUES {rows}) t(i, tokens) ORDER BY i) TO '{path}'")
        return path, []
    path = str(directory / "t.npz")
    ragged = np.empty(len(TOKENS), dtype=object)
    ragged[:] = [np.array(r, dtype=np.int64) for r in TOKENS]
    np.savez(path, tokens=ragged)
    return path, ["--allow-pickle"]


@pytest.mark.parametrize("fmt", ["polars", "duckdb", "npz"])
def test_pad_makes_ragged_rows_fit_a_none_none_input(model, tmp_path, fmt):
    path, flags = write_ragged(fmt, tmp_path / "in")
    out = tmp_path / "out"
    m = score(model, "seq", path, out, "--pad", "tokens=4:-1", "--batch-size", "7", *flags)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (len(TOKENS), len(TOKENS), 0)
    expected = direct_call(model, "seq", tokens=padded(TOKENS, 4, -1))["total"]
    assert read_output(str(out))["total"].to_pylist() == expected.tolist()


@pytest.mark.parametrize("fmt", ["polars", "npz"])
def test_ragged_rows_without_pad_are_dead_letters_that_suggest_pad(model, tmp_path, fmt):
    path, flags = write_ragged(fmt, tmp_path / "in")
    out = tmp_path / "out"
    m = score(model, "seq", path, out, "--batch-size", "6", *flags)
    # each batch of 6 rows starts with a 6-token row: the rows of other lengths fail
    good = [i for i, r in enumerate(TOKENS) if len(r) == 6]
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (len(TOKENS), len(good), len(TOKENS) - len(good))
    bad = errors_of(out)
    assert all("pass --pad tokens=LENGTH[:VALUE]" in e["error"] for e in bad), bad[0]["error"]
    expected = direct_call(model, "seq", tokens=np.array([TOKENS[i] for i in good], dtype=np.int64))["total"]
    assert read_output(str(out))["total"].to_pylist() == expected.tolist()


# -- item 10: hive partition directories ------------------------------------------------------


def test_hive_partition_keys_are_columns_to_keep(model, tmp_path):
    x = vectors(30)
    dates = np.array(["2026-11-25"] * 12 + ["2026-11-26"] * 18)
    regions = np.array(["eu", "us"] * 15)
    frame = pl.DataFrame({"id": np.arange(30), "x": x, "date": dates, "region": regions, "shard": np.arange(30) % 3})
    frame = frame.with_columns(pl.col("x").cast(pl.Array(pl.Float32, 8)))
    base = tmp_path / "in"
    duckdb.sql(f"COPY (SELECT * FROM frame) TO '{base}' (FORMAT parquet, PARTITION_BY (date, region, shard))")
    files = sorted(str(p) for p in base.rglob("*.parquet"))
    assert "date=2026-11-25" in files[0] and "shard" not in pq.read_schema(files[0]).names
    out = tmp_path / "out"
    m = score(model, "vec", base, out, "--keep", "id,date,region,shard")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (30, 30, 0)
    got = pl.read_parquet(str(out / "part-*.parquet")).sort("id")
    # the same values and types as pyarrow.dataset's hive partitioning gives
    theirs = ds.dataset(str(base), partitioning="hive").to_table().sort_by("id")
    assert got["date"].to_list() == theirs["date"].to_pylist() == dates.tolist()
    assert got["region"].to_list() == theirs["region"].to_pylist() == regions.tolist()
    assert got["shard"].to_list() == theirs["shard"].to_pylist()
    assert (theirs.schema.field("shard").type, got.schema["shard"]) == (pa.int32(), pl.Int32)
    expected = direct_call(model, "vec", x=x[got["id"].to_numpy()])["s"]
    assert_scores_close(got["s"].to_numpy(), expected)


def test_hive_partition_keys_past_int32_feed_an_int64_input(model, tmp_path):
    """A key whose values overflow int32 (``user=3000000000``) was typed string, so an int64
    input was refused even with ``--cast``, naming a column no file has; it is int64 now."""
    base = tmp_path / "in"
    for user in (3_000_000_000, 5):
        (base / f"user={user}").mkdir(parents=True)
        pq.write_table(pa.table({"id": [user % 7, user % 11]}), base / f"user={user}" / "part-0.parquet")
    out = tmp_path / "out"
    m = score(model, "seq", base, out, "--map", "tokens=user", "--keep", "id,user")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (4, 4, 0)
    got = pl.read_parquet(str(out / "part-*.parquet")).sort("user")
    assert got.schema["user"] == pl.Int64
    assert got["user"].to_list() == [5, 5, 3_000_000_000, 3_000_000_000]
    expected = direct_call(model, "seq", tokens=got["user"].to_numpy().reshape(-1, 1))["total"]
    assert got["total"].to_list() == expected.tolist() == got["user"].to_list()


# -- item 13: one output schema per job ---------------------------------------------------------


def test_kept_columns_have_one_type_across_part_files(model, tmp_path):
    x = vectors(30)
    (tmp_path / "in").mkdir()
    a = pl.DataFrame(
        {
            "id": pl.Series(np.arange(10), dtype=pl.Int32),
            "name": pl.Series([f"n{i}" for i in range(10)], dtype=pl.Categorical),
        }
    )
    a.with_columns(x=pl.Series(x[:10].tolist(), dtype=pl.Array(pl.Float32, 8))).write_parquet(
        tmp_path / "in" / "a.parquet"
    )
    # the second file: int64 ids and plain strings, and every row of it fails (null vectors)
    b = pa.table(
        {
            "id": pa.array(np.arange(10, 15), pa.int64()),
            "name": pa.array([f"n{i}" for i in range(10, 15)], pa.large_string()),
            "x": pa.nulls(5, pa.list_(pa.float32(), 8)),
        }
    )
    pq.write_table(b, tmp_path / "in" / "b.parquet")
    c = pa.table(
        {
            "id": pa.array(np.arange(15, 30), pa.uint16()),
            "name": pa.array([f"n{i}" for i in range(15, 30)]),
            "x": pa.FixedSizeListArray.from_arrays(pa.array(x[15:].reshape(-1)), 8),
        }
    )
    pq.write_table(c, tmp_path / "in" / "c.parquet")
    out = tmp_path / "out"
    m = score(model, "vec", tmp_path / "in", out, "--keep", "id,name", "--max-failed-rows", "5")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (30, 25, 5)
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 3 and len({pq.read_schema(p).remove_metadata() for p in parts}) == 1
    got = pl.read_parquet(str(out / "part-*.parquet"))  # polars refuses a glob of differing schemas
    assert (got.schema["id"], got.schema["name"]) == (pl.Int64, pl.String)
    good = np.r_[0:10, 15:30]
    assert got["id"].to_list() == good.tolist()
    assert got["name"].to_list() == [f"n{i}" for i in good]
    assert_scores_close(got["s"].to_numpy(), direct_call(model, "vec", x=x[good])["s"])


def test_kept_columns_all_files_agree_on_keep_their_own_type(model, tmp_path):
    """Every file's footer is read when the launcher plans: an int32 id and float32 weights in
    all of them stay int32 and float32 (no widening, which doubled float columns); with
    ``--plan-on-workers`` the launcher sees one file, so it widens as before."""
    x = vectors(20)
    (tmp_path / "in").mkdir()
    for i, rows in enumerate((slice(0, 8), slice(8, 20))):
        table = pa.table(
            {
                "id": pa.array(np.arange(20)[rows], pa.int32()),
                "w": pa.FixedSizeListArray.from_arrays(pa.array(x[rows, :2].reshape(-1)), 2),
                "x": pa.FixedSizeListArray.from_arrays(pa.array(x[rows].reshape(-1)), 8),
            }
        )
        pq.write_table(table, tmp_path / "in" / f"{i}.parquet")
    out = tmp_path / "out"
    score(model, "vec", tmp_path / "in", out, "--keep", "id,w")
    got = pl.read_parquet(str(out / "part-*.parquet"))
    assert (got.schema["id"], got.schema["w"]) == (pl.Int32, pl.Array(pl.Float32, 2))
    np.testing.assert_array_equal(np.stack(got["w"].to_numpy()), x[:, :2])
    assert_scores_close(got["s"].to_numpy(), direct_call(model, "vec", x=x)["s"])
    widened = tmp_path / "widened"
    score(model, "vec", tmp_path / "in", widened, "--keep", "id,w", "--plan-on-workers")
    got = pl.read_parquet(str(widened / "part-*.parquet"))
    assert (got.schema["id"], got.schema["w"]) == (pl.Int64, pl.Array(pl.Float64, 2))


def test_a_kept_feature_a_tfrecord_record_lacks_is_null_and_the_row_is_scored(model, tmp_path):
    x = vectors(70)
    records = []
    for i in range(70):
        feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=x[i].tolist()))}
        if i not in (3, 11):
            ids = [i, i] if i == 66 else [i]  # record 66 (after the 64 sampled): two ids
            feature["id"] = tf.train.Feature(int64_list=tf.train.Int64List(value=ids))
        if i != 5:
            feature["tag"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"t{i}".encode()]))
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "r.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    out = tmp_path / "out"
    m = score(model, "vec", path, out, "--keep", "id,tag", "--batch-size", "16")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (70, 69, 1)
    (bad,) = errors_of(out)
    assert bad["row"] == 66 and "feature 'id' has 2 values, expected 1" in bad["error"]
    got = pl.read_parquet(str(out / "part-*.parquet"))
    assert (got.schema["id"], got.schema["tag"]) == (pl.Int64, pl.Binary)
    good = [i for i in range(70) if i != 66]
    assert got["id"].to_list() == [None if i in (3, 11) else i for i in good]
    assert got["tag"].to_list() == [None if i == 5 else f"t{i}".encode() for i in good]
    assert_scores_close(got["s"].to_numpy(), direct_call(model, "vec", x=x[good])["s"])


def test_a_kept_column_that_cannot_take_the_job_type_fails_its_rows(model, tmp_path):
    x = vectors(12)
    (tmp_path / "in").mkdir()
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 8)
    pq.write_table(pa.table({"id": np.arange(8, dtype=np.int32), "x": fixed[:8]}), tmp_path / "in" / "a.parquet")
    pq.write_table(pa.table({"id": ["p", "q", "r", "s"], "x": fixed[8:]}), tmp_path / "in" / "b.parquet")
    out = tmp_path / "out"
    m = score(model, "vec", tmp_path / "in", out, "--keep", "id")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (12, 8, 4)
    bad = errors_of(out)
    assert [e["row"] for e in bad] == [0, 1, 2, 3] and all(e["source"].endswith("b.parquet") for e in bad)
    assert "--keep column 'id' has type string here and cannot be written as int64" in bad[0]["error"]
    got = pl.read_parquet(str(out / "part-*.parquet"))
    assert got["id"].to_list() == list(range(8)) and got.schema["id"] == pl.Int64
    assert_scores_close(got["s"].to_numpy(), direct_call(model, "vec", x=x[:8])["s"])


# -- struct columns: fields as columns ``parent.field`` ------------------------------------

NULL_STRUCTS = (3, 17)


def write_struct_polars(path: str, x: np.ndarray) -> None:
    rows = [None if i in NULL_STRUCTS else {"x": row.tolist(), "n": i} for i, row in enumerate(x)]
    dtype = pl.Struct({"x": pl.Array(pl.Float32, 8), "n": pl.Int64})
    pl.DataFrame({"id": np.arange(len(x)), "features": rows}, schema={"id": pl.Int64, "features": dtype}).write_parquet(
        path, row_group_size=16
    )


def write_struct_duckdb(path: str, x: np.ndarray) -> None:
    def feature(i: int, row: np.ndarray) -> str:
        if i in NULL_STRUCTS:
            return "NULL::STRUCT(x FLOAT[8], n BIGINT)"
        return "{'x': [" + ", ".join(repr(float(v)) for v in row) + f"]::FLOAT[8], 'n': {i}}}"

    values = ", ".join(f"({i}, {feature(i, row)})" for i, row in enumerate(x))
    duckdb.sql(f"COPY (SELECT * FROM (VALUES {values}) t(id, features) ORDER BY id) TO '{path}' (ROW_GROUP_SIZE 16)")


def write_struct_pyarrow(path: str, x: np.ndarray) -> None:
    inner = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 8)
    mask = pa.array(np.isin(np.arange(len(x)), NULL_STRUCTS))
    features = pa.StructArray.from_arrays([inner, pa.array(np.arange(len(x)))], names=["x", "n"], mask=mask)
    pq.write_table(pa.table({"id": np.arange(len(x)), "features": features}), path, row_group_size=16)


@pytest.mark.parametrize(
    "writer", [write_struct_polars, write_struct_duckdb, write_struct_pyarrow], ids=["polars", "duckdb", "pyarrow"]
)
def test_struct_fields_are_columns_and_null_structs_are_dead_letters(model, tmp_path, writer):
    """BigQuery and Spark exports nest features in structs: ``--map x=features.x`` feeds a
    field, ``--keep features.n`` keeps one; a null struct's row is a dead letter."""
    x = vectors()
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "s.parquet")
    writer(path, x)
    out = tmp_path / "out"
    m = score(model, "vec", path, out, "--map", "x=features.x", "--keep", "id,features.n", "--max-failed-rows", "2")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (40, 38, 2)
    assert [(e["row"], e["stage"]) for e in errors_of(out)] == [(r, "validate") for r in NULL_STRUCTS]
    table = read_output(str(out))
    good = np.array([i for i in range(40) if i not in NULL_STRUCTS])
    assert table["id"].to_pylist() == table["features.n"].to_pylist() == good.tolist()
    expected = direct_call(model, "vec", x=x[good])["s"]
    assert_scores_close(table["s"].to_numpy(), expected)


# -- string_view / binary_view columns (pyarrow >= 16, duckdb) ---------------------------


def test_string_view_columns_feed_string_inputs_and_are_kept(model, tmp_path):
    """pyarrow writes a ``string_view`` column so that it reads back as one: it feeds a
    string input, and a null row among them is a dead letter (pyarrow cannot ``take`` rows
    of a view column; it failed the job). Kept view columns (in lists too) are written."""
    words = [None if i == 3 else w for i, w in enumerate(WORDS)]
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "v.parquet")
    columns = {
        "s": pa.array(words, pa.string_view()),
        "k": pa.array(words, pa.string_view()),
        "b": pa.array([[w.encode()] for w in WORDS], pa.list_(pa.binary_view())),
    }
    pq.write_table(pa.table(columns), path)
    assert pa.types.is_string_view(pq.read_schema(path).field("s").type)
    out = tmp_path / "out"
    m = score(model, "text", path, out, "--keep", "k,b", "--max-failed-rows", "1")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (len(WORDS), len(WORDS) - 1, 1)
    assert [(e["row"], e["stage"]) for e in errors_of(out)] == [(3, "validate")]
    good = [w for w in words if w is not None]
    table = read_output(str(out))
    assert table["k"].to_pylist() == good
    assert table["b"].to_pylist() == [[w.encode()] for i, w in enumerate(WORDS) if i != 3]
    expected = direct_call(model, "text", s=np.array([w.encode() for w in good], dtype=object))
    assert table["n"].to_pylist() == expected["n"].tolist()
    assert table["h"].to_pylist() == expected["h"].tolist()


# -- --cast does not wrap or saturate -------------------------------------------------------


def test_cast_values_out_of_the_input_range_are_dead_letters(model, tmp_path):
    """A float64 export cast (``--cast``) into a float32 input: 1e300 became inf and was
    scored; it is a dead letter now, and the other rows are scored as a direct call does."""
    x = vectors().astype(np.float64)
    x[7, 2] = 1e300
    x[9, 0] = -1e39
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "d.parquet")
    pq.write_table(pa.table({"id": np.arange(40), "x": pa.array(list(x), pa.list_(pa.float64(), 8))}), path)
    out = tmp_path / "out"
    m = score(model, "vec", path, out, "--cast", "--keep", "id", "--max-failed-rows", "2")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (40, 38, 2)
    bad = errors_of(out)
    assert [e["row"] for e in bad] == [7, 9]
    assert "holds 1e+300, which float32 input 'x' cannot hold" in bad[0]["error"]
    table = read_output(str(out))
    good = np.array([i for i in range(40) if i not in (7, 9)])
    assert table["id"].to_pylist() == good.tolist()
    expected = direct_call(model, "vec", x=x[good].astype(np.float32))["s"]
    assert_scores_close(table["s"].to_numpy(), expected)


# -- lists of lists: one ragged row is one dead letter ----------------------------------------


def test_a_ragged_row_of_a_list_of_lists_is_one_dead_letter(model, tmp_path):
    """polars writes ``list[list[f32]]`` (2 x 4 per row, fed to ``[None, 8]``); a row with
    an inner list of another length, or too few inner lists, or a null deep inside failed
    every row of its batch, each with a message naming a wrong row; now it is the only one."""
    x = vectors()
    rows = [row.reshape(2, 4).tolist() for row in x]
    rows[3] = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0, 8.0]]  # 8 values, but ragged
    rows[10] = [x[10, :4].tolist()]
    rows[17] = [[1.0, None, 3.0, 4.0], x[17, 4:].tolist()]
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "l.parquet")
    pl.DataFrame(
        {"id": np.arange(40), "x": rows}, schema={"id": pl.Int64, "x": pl.List(pl.List(pl.Float32))}
    ).write_parquet(path)
    out = tmp_path / "out"
    m = score(model, "vec", path, out, "--keep", "id", "--batch-size", "20", "--max-failed-rows", "3")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (40, 37, 3)
    bad = errors_of(out)
    assert [e["row"] for e in bad] == [3, 10, 17]
    assert "has a list of 3 values at depth 2 where the batch's others have 4" in bad[0]["error"]
    assert "has a list of 1 values at depth 1 where the batch's others have 2" in bad[1]["error"]
    assert "null value inside its list" in bad[2]["error"]
    table = read_output(str(out))
    good = np.array([i for i in range(40) if i not in (3, 10, 17)])
    assert table["id"].to_pylist() == good.tolist()
    assert_scores_close(table["s"].to_numpy(), direct_call(model, "vec", x=x[good])["s"])


def test_a_kept_column_all_null_in_the_first_file_takes_its_type_from_the_next(model, tmp_path):
    """polars writes a column of only None as Arrow's ``null`` type, and one of only empty
    lists as ``list<null>``. Kept from a first file so written, it typed the job's output
    ``null`` and every row of the other files was a dead letter (``cannot be written as
    null``); the next file's type is the job's now."""
    x = vectors(20)
    (tmp_path / "in").mkdir()
    for name, rows in (("a", range(0, 8)), ("b", range(8, 20))):
        labels = [None if name == "a" else f"l{i}" for i in rows]
        tags = [[] if name == "a" else [i, i] for i in rows]
        frame = pl.DataFrame(
            {"label": labels, "tags": tags, "x": x[rows].tolist()}, schema_overrides={"x": pl.Array(pl.Float32, 8)}
        )
        frame.write_parquet(tmp_path / "in" / f"{name}.parquet")
    first = pq.read_schema(tmp_path / "in" / "a.parquet")
    assert pa.types.is_null(first.field("label").type) and pa.types.is_null(first.field("tags").type.value_type)
    out = tmp_path / "out"
    m = score(model, "vec", tmp_path / "in", out, "--keep", "label,tags")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (20, 20, 0)
    got = pl.read_parquet(str(out / "part-*.parquet"))
    assert (got.schema["label"], got.schema["tags"]) == (pl.String, pl.List(pl.Int64))
    assert got["label"].to_list() == [None] * 8 + [f"l{i}" for i in range(8, 20)]
    assert got["tags"].to_list() == [[]] * 8 + [[i, i] for i in range(8, 20)]
    assert_scores_close(got["s"].to_numpy(), direct_call(model, "vec", x=x)["s"])


# -- extension columns: arrow.json text, arrow.uuid bytes ------------------------------------


def test_json_and_uuid_extension_columns_feed_string_inputs(model, tmp_path):
    """pyarrow's ``arrow.json`` and duckdb's UUID (``arrow.uuid``) columns were refused for a
    string input (``has dtype extension<arrow.json>``); they feed it as their text or bytes."""
    (tmp_path / "in").mkdir()
    texts = ['{"a": 1}', None, "[]", '"word"', "{}"]
    json_path = str(tmp_path / "in" / "j.parquet")
    column = pa.ExtensionArray.from_storage(pa.json_(), pa.array(texts))
    pq.write_table(pa.table({"s": column, "k": column}), json_path)
    assert isinstance(pq.read_schema(json_path).field("s").type, pa.JsonType)
    out = tmp_path / "out"
    m = score(model, "text", json_path, out, "--keep", "k", "--max-failed-rows", "1")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (5, 4, 1)
    assert [e["row"] for e in errors_of(out)] == [1]
    good = [t for t in texts if t is not None]
    table = read_output(str(out))
    assert table["k"].to_pylist() == good
    expected = direct_call(model, "text", s=np.array([t.encode() for t in good], dtype=object))
    assert table["h"].to_pylist() == expected["h"].tolist() and table["n"].to_pylist() == [len(t) for t in good]

    uuid_path = str(tmp_path / "u.parquet")
    duckdb.sql(f"COPY (SELECT uuid() AS s FROM range(6)) TO '{uuid_path}'")
    assert isinstance(pq.read_schema(uuid_path).field("s").type, pa.UuidType)
    m = score(model, "text", uuid_path, tmp_path / "out_u")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (6, 6, 0)
    stored = [u.bytes for u in pq.read_table(uuid_path)["s"].to_pylist()]
    expected = direct_call(model, "text", s=np.array(stored, dtype=object))
    assert read_output(str(tmp_path / "out_u"))["h"].to_pylist() == expected["h"].tolist()


# -- decimals (BigQuery NUMERIC, Spark DecimalType) with --cast -----------------------------


def test_decimal_list_columns_feed_a_float_input_with_cast(model, tmp_path):
    """duckdb ``DECIMAL(38,9)[8]`` (BigQuery NUMERIC exports alike) was refused for a float32
    input even with ``--cast`` (``has type decimal128(38, 9)``); ``--cast`` converts it."""
    x = np.round(vectors(12).astype(np.float64), 3)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "d.parquet")
    values = ", ".join(f"({i}, {[float(v) for v in row]}::DECIMAL(38,9)[8])" for i, row in enumerate(x))
    duckdb.sql(f"COPY (SELECT * FROM (VALUES {values}) t(id, x) ORDER BY id) TO '{path}'")
    assert pa.types.is_decimal(pq.read_schema(path).field("x").type.value_type)
    assert (
        main(["score", "--model", model, "--signature", "vec", "--input", path, "--output", str(tmp_path / "o")]) == 2
    )
    out = tmp_path / "out"
    m = score(model, "vec", path, out, "--cast", "--keep", "id")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (12, 12, 0)
    table = read_output(str(out))
    assert table["id"].to_pylist() == list(range(12))
    assert_scores_close(table["s"].to_numpy(), direct_call(model, "vec", x=x.astype(np.float32))["s"])


def test_decimal_whole_numbers_feed_an_integer_input_with_cast_exactly(model, tmp_path):
    """``DECIMAL(38,0)`` (Spark's and BigQuery's whole numbers) into an int64 input was refused
    even with ``--cast``; it is converted through int64, so 2**60 + 1 arrives exact (through
    float64 it would be 2**60), and a value past int64 is a dead letter, never wrapped."""
    rows = [[1, 2, 3], [2**60 + 1, 0, 0], [7, 0, 1]]
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "d.parquet")
    values = ", ".join(f"({i}, {row}::DECIMAL(38,0)[])" for i, row in enumerate(rows))
    duckdb.sql(f"COPY (SELECT * FROM (VALUES {values}) t(id, tokens) ORDER BY id) TO '{path}'")
    out = tmp_path / "out"
    m = score(model, "seq", path, out, "--cast", "--keep", "id")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (3, 3, 0)
    expected = direct_call(model, "seq", tokens=np.array(rows, dtype=np.int64))["total"]
    assert read_output(str(out))["total"].to_pylist() == expected.tolist() == [14, 2**60 + 1, 10]
    big = str(tmp_path / "in2.parquet")
    duckdb.sql(f"COPY (SELECT [{2**70}::DECIMAL(38,0), 1, 1] AS tokens) TO '{big}'")
    m = score(model, "seq", big, tmp_path / "o2", "--cast", "--max-failed-rows", "1")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (1, 0, 1)


# -- INT96 timestamps (Spark, Hive, Impala) -----------------------------------------------


def test_int96_timestamps_outside_the_nanosecond_range_are_kept_as_written(model, tmp_path):
    """Spark writes INT96 timestamps and 9999-12-31 as "no end"; read as pyarrow's default
    nanoseconds it wrapped to 1816-03-29 in the kept column, silently. Read as microseconds
    (Spark's own precision) every date of years 1-9999 is kept as written."""
    import datetime

    x = vectors(4)
    stamps = [
        datetime.datetime(2024, 5, 1, 12, 30, 15, 123456),
        datetime.datetime(9999, 12, 31),
        datetime.datetime(1000, 1, 1),
        datetime.datetime(1970, 1, 1),
    ]
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "spark.parquet")
    table = pa.table(
        {"t": pa.array(stamps, pa.timestamp("us")), "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 8)}
    )
    pq.write_table(table, path, use_deprecated_int96_timestamps=True)
    assert pq.ParquetFile(path).metadata.schema.column(0).physical_type == "INT96"
    out = tmp_path / "out"
    m = score(model, "vec", path, out, "--keep", "t")
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (4, 4, 0)
    got = read_output(str(out))
    assert got["t"].to_pylist() == stamps
    assert_scores_close(got["s"].to_numpy(), direct_call(model, "vec", x=x)["s"])
