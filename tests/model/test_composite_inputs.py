"""Ragged and sparse signature inputs: fed from Parquet list columns and TFRecord features of
varying length by ``beamscore score`` on the DirectRunner, and component by component by
``beamscore run``; every output compared with a direct call of the loaded signature whose
components TensorFlow itself built (``tf.ragged.constant(...).to_sparse()``)."""

from __future__ import annotations

import json

import composite_models as cm
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import read_output
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.model.composite import RaggedBatch, component_feeds
from beamscore.model.inspect import CompositeInput

WORDS = [["apple", "kiwi"], [], ["date", "banana", "apple"], ["cherry"], ["fig", "fig", "apple", "date", "plum"]]
COUNTS = [[1, 2], [], [3], [4, 5, 6, 7], [8]]
IDS = [[1, 2, 3], [], [7], [0, 49, 3, 3, 12, 8], [5, 5]]


@pytest.fixture(scope="module")
def composite(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("composite")
    return {
        "tft": cm.save_tft_model(str(root / "tft")),
        "ragged": cm.save_ragged_embedding_model(str(root / "ragged")),
    }


def rows(lists: list[list], n: int) -> list[list]:
    return [lists[i % len(lists)] for i in range(n)]


def sparse_parts(lists: list[list], dtype, width: int | None = None) -> dict[str, np.ndarray]:
    """indices, values, dense shape as TensorFlow builds them from the rows."""
    st = tf.ragged.constant(lists, dtype=dtype, ragged_rank=1, inner_shape=()).to_sparse()
    shape = st.dense_shape.numpy()
    if width is not None:
        shape[1] = width
    return {"": st.indices.numpy(), "_1": st.values.numpy(), "_2": shape}


def direct_tft(model: str, words: list[list], counts: list[list]) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(model).signatures["serving_default"]
    feeds = {}
    for name, lists, dtype, width in (("words", words, tf.string, None), ("counts", counts, tf.int64, 4)):
        parts = sparse_parts(lists, dtype, width)
        for key, suffix in zip(cm.TFT_KEYS[name], ("", "_1", "_2"), strict=True):
            feeds[key] = tf.constant(parts[suffix])
    return {k: v.numpy() for k, v in fn(**feeds).items()}


def direct_ragged(model: str, ids: list[list], x: np.ndarray) -> np.ndarray:
    fn = tf.saved_model.load(model).signatures["serving_default"]
    rt = tf.ragged.constant(ids, dtype=tf.int64, ragged_rank=1, inner_shape=())
    return fn(ids=rt.values, ids_1=rt.row_splits, x=tf.constant(x))["score"].numpy()


def write_examples(path, ids: list[list], x: np.ndarray) -> str:
    """A TFRecord file of Examples with a varying-length int64 ``ids`` and a float ``x`` feature."""
    path.parent.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row, values in zip(ids, x, strict=True):
            feature = {
                "ids": tf.train.Feature(int64_list=tf.train.Int64List(value=row)),
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist())),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return str(path)


def manifest(out) -> dict:
    m = json.loads((out / "_manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_failed"]
    return m


def test_ragged_batch_rows_and_sparse_components_match_tensorflow():
    lists = [[1, 2, 3], [], [4], [5, 6], [], [7, 8, 9, 10]]
    splits = np.array([0, *np.cumsum([len(r) for r in lists])], dtype=np.int64)
    batch = RaggedBatch(np.arange(1, 11, dtype=np.int64), splits)
    for index in (slice(1, 4), slice(0, 0), np.array([True, False, True, True, False, True]), np.array([5, 0, 3])):
        want = [lists[i] for i in np.arange(len(lists))[index]]
        got = batch[index]
        assert [got.values[a:b].tolist() for a, b in zip(got.splits[:-1], got.splits[1:], strict=True)] == want
    composite = CompositeInput("sp", "sparse", "int64", (None, None), ("sp", "sp_1", "sp_2"), True, "", ("int64",) * 3)
    parts = component_feeds(composite, batch)
    want = sparse_parts(lists, tf.int64)
    np.testing.assert_array_equal(parts[composite.components[0]], want[""])
    np.testing.assert_array_equal(parts[composite.components[1]], want["_1"])
    np.testing.assert_array_equal(parts[composite.components[2]], want["_2"])


def test_score_a_tft_style_graph_from_parquet_list_columns(composite, tmp_path, capsys):
    n = 23
    words, counts = rows(WORDS, n), rows(COUNTS, n)
    data = tmp_path / "in" / "a.parquet"
    data.parent.mkdir()
    pq.write_table(pa.table({"words": pa.array(words, pa.list_(pa.string())), "counts": counts}), data)
    out = tmp_path / "out"
    argv = ["score", "--model", composite["tft"], "--input", str(data), "--output", str(out), "--batch-size", "7"]
    assert main(argv) == 0, capsys.readouterr().err
    m = manifest(out)
    assert (m["rows_in"], m["rows_failed"]) == (n, 0)
    table = read_output(str(out))
    expected = {}
    for start in range(0, n, 7):  # the job's batches: a sparse input without a width is as wide as its batch
        for k, v in direct_tft(composite["tft"], words[start : start + 7], counts[start : start + 7]).items():
            expected.setdefault(k, []).append(v)
    for key in ("id_sum", "known", "count_total"):
        assert_scores_close(table[key], np.concatenate(expected[key]), key)
    assert table["id_sum"].to_pylist()[:3] == [0 + 4, 0, 3 + 1 + 0]


def test_a_row_longer_than_a_sparse_inputs_width_is_a_dead_letter(composite, tmp_path, capsys):
    words, counts = WORDS, [*COUNTS[:4], [1, 2, 3, 4, 5]]
    data = tmp_path / "in" / "a.parquet"
    data.parent.mkdir()
    pq.write_table(pa.table({"words": words, "counts": counts}), data)
    out = tmp_path / "out"
    argv = ["score", "--model", composite["tft"], "--input", str(data), "--output", str(out), "--max-failed-rows", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert (manifest(out)["rows_out"], manifest(out)["rows_failed"]) == (4, 1)
    (error,) = pq.read_table(str(out / "_errors"))["error"].to_pylist()
    assert "has 5 values; sparse input 'counts' takes at most 4" in error
    got = read_output(str(out))
    assert_scores_close(got["count_total"], direct_tft(composite["tft"], words[:4], counts[:4])["count_total"])


@pytest.mark.parametrize("fmt", ["parquet", "tfrecord"])
def test_score_a_ragged_ids_embedding_model(composite, tmp_path, capsys, fmt):
    n = 31
    ids = rows(IDS, n)
    x = np.linspace(-1, 1, n * 3, dtype=np.float32).reshape(n, 3)
    (tmp_path / "in").mkdir()
    if fmt == "parquet":
        data = str(tmp_path / "in" / "a.parquet")
        table = pa.table({"ids": ids, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 3)})
        pq.write_table(table, data, row_group_size=8)
    else:
        data = write_examples(tmp_path / "in" / "a.tfrecord", ids, x)
    out = tmp_path / "out"
    argv = ["score", "--model", composite["ragged"], "--input", data, "--output", str(out), "--batch-size", "5"]
    assert main(argv) == 0, capsys.readouterr().err
    assert manifest(out)["rows_failed"] == 0
    assert_scores_close(read_output(str(out))["score"], direct_ragged(composite["ragged"], ids, x))


def test_run_takes_the_components_as_saved_model_cli_does(composite, tmp_path, capsys):
    """A sparse input's dense shape (2,) was taken for a fixed batch size of 2 and the call cut;
    the components go by TensorFlow's SignatureDef keys, as ``saved_model_cli run`` takes them."""
    words, counts = WORDS[:3], COUNTS[:3]
    w, c = sparse_parts(words, tf.string), sparse_parts(counts, tf.int64, 4)
    exprs = (
        f"inputs_3={w[''].tolist()};inputs_4={[s.decode() for s in w['_1']]};inputs_5={w['_2'].tolist()};"
        f"inputs={c[''].tolist()};inputs_1={c['_1'].tolist()};inputs_2={c['_2'].tolist()}"
    )
    assert main(["run", composite["tft"], "--input-exprs", exprs, "--outdir", str(tmp_path)]) == 0, (
        capsys.readouterr().err
    )
    expected = direct_tft(composite["tft"], words, counts)
    for key, value in expected.items():
        assert_scores_close(np.load(tmp_path / f"{key}.npy"), value, key)


def test_show_says_which_column_kind_feeds_each(composite, capsys):
    assert main(["show", composite["tft"], "--signature", "serving_default"]) == 0
    out = capsys.readouterr().out
    assert "counts  sparse int64 (-1, 4)  <- a list column of up to 4 values per row" in out
    assert "words   sparse string (-1, -1)  <- a list column of any length" in out
    assert "components inputs_3 indices, inputs_4 values, inputs_5 dense shape" in out


def test_many_tf1_sparse_inputs_are_refused_in_one_short_line(tmp_path, capsys):
    v1 = tf.compat.v1
    model = str(tmp_path / "tf1sparse")
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        info = v1.saved_model.build_tensor_info
        inputs = {f"feature_{i:02d}": info(v1.sparse_placeholder(tf.float32, [None, 3])) for i in range(18)}
        y = v1.placeholder(tf.float32, [None], name="y")
        sig = v1.saved_model.build_signature_def(inputs, {"out": info(y * 2)}, "predict")
        builder = v1.saved_model.Builder(model)
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
        builder.save()
    data = tmp_path / "a.parquet"
    pq.write_table(pa.table({"y": [1.0]}), data)
    code = main(["score", "--model", model, "--input", str(data), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert len(err[0]) <= 320, err[0]
    assert (
        "18 TF1 sparse inputs: feature_00, feature_01, feature_02, feature_03, feature_04, ... (see beamscore show)"
        in err[0]
    )
