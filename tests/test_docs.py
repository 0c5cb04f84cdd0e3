"""The docs pages' code runs as written, and every command or code block is either run by a test
or says why it cannot be (``<!-- not run: REASON -->``), so the docs cannot drift."""

from __future__ import annotations

import os
import re

import builders
import numpy as np
import pyarrow.parquet as pq
from conftest import direct_call
from docs_blocks import ROOT, RUNNABLE, blocks, docs_block, pages
from scores import assert_scores_close


def _fetched_examples() -> set[tuple[str, str]]:
    """(page, name) of every call in the tests whose first two arguments are a page and a name,
    ``docs_block("page.md", "name")`` or a helper that passes them on."""
    found = set()
    tests = os.path.join(ROOT, "tests")
    for directory, _, files in os.walk(tests):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    for page, example in re.findall(r'\(\s*"([\w./-]+\.md)",\s*"([\w-]+)"', f.read()):
                        page = page if page == "README.md" or page.startswith("docs/") else "docs/" + page
                        found.add((page, example))
    return found


def test_every_command_and_code_block_is_run_or_says_why_not():
    fetched = _fetched_examples()
    unmarked, unrun, no_reason = [], [], []
    for page in pages():
        for block in blocks(page):
            where = f"{page}:{block.line}"
            if block.marker is None and block.language in RUNNABLE:
                unmarked.append(where)
            elif block.marker == "example" and (page, block.label) not in fetched:
                unrun.append(f"{where} ({block.label})")
            elif block.marker == "not run" and len(block.label.split()) < 2:
                no_reason.append(where)
    assert not unmarked, f"blocks with neither <!-- example: NAME --> nor <!-- not run: REASON -->: {unmarked}"
    assert not unrun, f"examples no test fetches with docs_block(page, name): {unrun}"
    assert not no_reason, f"'not run' without a reason: {no_reason}"


def test_example_names_are_unique_per_page():
    for page in pages():
        names = [b.label for b in blocks(page) if b.marker == "example"]
        assert len(names) == len(set(names)), page


def test_docs_api_pipeline_example_runs(models, tmp_path, monkeypatch):
    example = docs_block("api.md", "pipeline")
    monkeypatch.chdir(tmp_path)
    os.makedirs("models")
    os.symlink(models["two_sig"], "models/mlp")
    rows = 300
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    import pyarrow as pa

    os.makedirs("data")
    for i, part in enumerate(np.array_split(np.arange(rows), 2)):
        table = pa.table({"id": part, "x": pa.FixedSizeListArray.from_arrays(pa.array(x[part].reshape(-1)), 4)})
        pq.write_table(table, f"data/part-{i}.parquet")
    exec(compile(example, "docs/api.md", "exec"), {})  # the page's own code, unchanged
    files = sorted(f for f in os.listdir("scored") if f.startswith("part-"))
    assert files == ["part-00000-00000.parquet", "part-00001-00000.parquet"]
    table = pq.read_table(["scored/" + f for f in files])
    got = table.sort_by("id")
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
    assert got["id"].to_pylist() == list(range(rows))
    assert builders  # the fixture models come from tests/builders.py


def _workspace(models, tmp_path, monkeypatch, rows: int = 300) -> np.ndarray:
    """What the examples expect: models/mlp, data/part-{0,1}.parquet (id, x[4]),
    data/chunk-{0,1}.npy and data/examples.tfrecord (feature x). Returns all x rows."""
    import pyarrow as pa

    monkeypatch.chdir(tmp_path)
    os.makedirs("models")
    os.symlink(models["two_sig"], "models/mlp")
    os.makedirs("data")
    x = np.random.default_rng(7).normal(size=(rows, 4)).astype(np.float32)
    for i, part in enumerate(np.array_split(np.arange(rows), 2)):
        table = pa.table({"id": part, "x": pa.FixedSizeListArray.from_arrays(pa.array(x[part].reshape(-1)), 4)})
        pq.write_table(table, f"data/part-{i}.parquet", row_group_size=64)
    return x


def _scores(models, x: np.ndarray) -> np.ndarray:
    return direct_call(models["two_sig"], "serving_default", x=x)["scores"]


def _run_example(name: str) -> None:
    exec(compile(docs_block("api.md", name), "docs/api.md", "exec"), {"__name__": f"docs_{name}"})  # unchanged


def test_docs_api_example_without_write_manifest_leaves_no_temporary(models, tmp_path, monkeypatch):
    _workspace(models, tmp_path, monkeypatch)
    exec(compile(docs_block("api.md", "pipeline"), "docs/api.md", "exec"), {})
    assert sorted(os.listdir("scored")) == ["_units", "part-00000-00000.parquet", "part-00001-00000.parquet"]


def test_docs_api_arrow_example(models, tmp_path, monkeypatch):
    x = _workspace(models, tmp_path, monkeypatch)
    _run_example("arrow")  # docs_block("api.md", "arrow")
    got = pq.read_table(["scored-arrow/" + f for f in os.listdir("scored-arrow")]).sort_by("id")
    assert got.column_names == ["id", "x", "scores"] and got["id"].to_pylist() == list(range(len(x)))
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), _scores(models, x))


def test_docs_api_numpy_example_with_dead_letters(models, tmp_path, monkeypatch):
    x = _workspace(models, tmp_path, monkeypatch)
    np.save("data/chunk-0.npy", x[:100])
    np.save("data/chunk-1.npy", x[100:150].astype(np.float64))  # lossy to float32: every row a dead letter
    _run_example("numpy")  # docs_block("api.md", "numpy")
    assert_scores_close(np.load("scored-numpy/chunk-0.npy"), _scores(models, x[:100]))
    assert np.load("scored-numpy/chunk-1.npy").shape == (0, 3)
    dead = pq.read_table("scored-numpy/chunk-1.errors.parquet")
    assert dead["row"].to_pylist() == list(range(50))
    assert "has dtype float64, signature input 'x' expects float32" in dead["error"][0].as_py()
    assert not os.path.exists("scored-numpy/chunk-0.errors.parquet")


def test_docs_api_tfrecord_example(models, tmp_path, monkeypatch):
    import json

    import tensorflow as tf

    x = _workspace(models, tmp_path, monkeypatch)
    with tf.io.TFRecordWriter("data/examples.tfrecord") as writer:
        for row in x:
            feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=row))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    _run_example("tfrecord")  # docs_block("api.md", "tfrecord")
    lines = []
    for name in os.listdir("scored-tfrecord"):
        with open(os.path.join("scored-tfrecord", name)) as f:
            lines.extend(f)
    got = np.array(sorted(json.loads(line) for line in lines))
    expected = np.array(sorted(_scores(models, x).tolist()))
    assert_scores_close(got, expected)


def test_docs_api_runinference_example(models, tmp_path, monkeypatch, capsys):
    x = _workspace(models, tmp_path, monkeypatch)
    _run_example("runinference")  # docs_block("api.md", "runinference")
    got = pq.read_table(["scored-handler/" + f for f in os.listdir("scored-handler")]).sort_by("id")
    assert got["id"].to_pylist() == list(range(len(x)))
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), _scores(models, x))
    assert "failed:" not in capsys.readouterr().out


def test_docs_api_score_example(models, tmp_path, monkeypatch, capsys):
    x = _workspace(models, tmp_path, monkeypatch)
    _run_example("score")  # docs_block("api.md", "score")
    assert capsys.readouterr().out.split() == [str(len(x)), str(len(x)), "0"]
    got = pq.read_table(["scored-job/" + f for f in sorted(os.listdir("scored-job")) if f.startswith("part-")])
    assert got["id"].to_pylist() == list(range(len(x)))
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), _scores(models, x))
    assert os.path.exists("scored-job/_manifest.json") and not os.path.exists("scored-job/_temporary")


def _row_files(x: np.ndarray, bad: int) -> None:
    """data/rows-{0,1}.parquet: ``id`` and ``x`` as variable-length lists; row ``bad`` is short."""
    import pyarrow as pa

    lists = [row.tolist() for row in x]
    lists[bad] = lists[bad][:3]
    for i, part in enumerate(np.array_split(np.arange(len(x)), 2)):
        table = pa.table({"id": part, "x": pa.array([lists[j] for j in part], pa.list_(pa.float32()))})
        pq.write_table(table, f"data/rows-{i}.parquet")


def test_docs_api_dead_letters_example_writes_them_with_beams_parquet_sink(models, tmp_path, monkeypatch):
    import json

    import beamscore

    x = _workspace(models, tmp_path, monkeypatch, rows=60)
    _row_files(x, bad=17)
    _run_example("deadletters")  # docs_block("api.md", "deadletters")
    rows = []
    for name in os.listdir("scored-rows"):
        if name.startswith("scores"):
            with open(os.path.join("scored-rows", name)) as f:
                rows += [json.loads(line) for line in f]
    dead = pq.read_table(["scored-rows/" + f for f in os.listdir("scored-rows") if f.startswith("errors")])
    assert dead.schema == beamscore.DEAD_LETTER_SCHEMA and dead.num_rows == 1, dead["error"].to_pylist()[:3]
    assert len(rows) + dead.num_rows == len(x)  # rows in = rows out + dead letters
    good = sorted(r["id"] for r in rows)
    assert good == [i for i in range(len(x)) if i != 17]
    got = np.array([r["scores"] for r in sorted(rows, key=lambda r: r["id"])])
    assert_scores_close(got, _scores(models, x[good]))
    assert json.loads(dead["raw"][0].as_py())["id"] == 17


def test_docs_api_runinference_rows_example(models, tmp_path, monkeypatch, capsys):
    x = _workspace(models, tmp_path, monkeypatch, rows=40)
    _row_files(x, bad=5)
    _run_example("runinference-rows")  # docs_block("api.md", "runinference-rows")
    out = capsys.readouterr().out.splitlines()
    scored = {int(line.split()[1]): int(line.split()[2]) for line in out if line.startswith("id ")}
    failed = [line for line in out if line.startswith("failed:")]
    assert len(scored) + len(failed) == len(x) and 5 not in scored
    assert len(failed) == 1 and "row: " in failed[0]
    want = _scores(models, x).argmax(axis=1)
    assert all(scored[i] == want[i] for i in scored)
