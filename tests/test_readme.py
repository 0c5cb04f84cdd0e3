"""The README's example pipeline runs as written, and its quick start is two commands."""

from __future__ import annotations

import os
import re

import builders
import numpy as np
import pyarrow.parquet as pq
from conftest import direct_call
from scores import assert_scores_close

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_quick_start_is_make_demo_and_make_test():
    quick = _readme().split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_pipeline_example_runs(models, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    example = next(b for b in blocks if "beamscore.RunSignature" in b)
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
    exec(compile(example, "README.md", "exec"), {})  # the README's own code, unchanged
    files = sorted(f for f in os.listdir("scored") if f.startswith("part-"))
    assert files == ["part-00000-00000.parquet", "part-00001-00000.parquet"]
    table = pq.read_table(["scored/" + f for f in files])
    got = table.sort_by("id")
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
    assert got["id"].to_pylist() == list(range(rows))
    assert builders  # the fixture models come from tests/builders.py


def _example(name: str) -> str:
    """The README's python block that starts with ``# README example: NAME``."""
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    (block,) = [b for b in blocks if b.startswith(f"# README example: {name}\n")]
    return block


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
    exec(compile(_example(name), "README.md", "exec"), {"__name__": f"readme_{name}"})  # unchanged


def test_readme_example_without_write_manifest_leaves_no_temporary(models, tmp_path, monkeypatch):
    _workspace(models, tmp_path, monkeypatch)
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    exec(compile(next(b for b in blocks if "beamscore.RunSignature" in b), "README.md", "exec"), {})
    assert sorted(os.listdir("scored")) == ["_units", "part-00000-00000.parquet", "part-00001-00000.parquet"]


def test_readme_arrow_example(models, tmp_path, monkeypatch):
    x = _workspace(models, tmp_path, monkeypatch)
    _run_example("arrow")
    got = pq.read_table(["scored-arrow/" + f for f in os.listdir("scored-arrow")]).sort_by("id")
    assert got.column_names == ["id", "x", "scores"] and got["id"].to_pylist() == list(range(len(x)))
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), _scores(models, x))


def test_readme_numpy_example_with_dead_letters(models, tmp_path, monkeypatch):
    x = _workspace(models, tmp_path, monkeypatch)
    np.save("data/chunk-0.npy", x[:100])
    np.save("data/chunk-1.npy", x[100:150].astype(np.float64))  # lossy to float32: every row a dead letter
    _run_example("numpy")
    assert_scores_close(np.load("scored-numpy/chunk-0.npy"), _scores(models, x[:100]))
    assert np.load("scored-numpy/chunk-1.npy").shape == (0, 3)
    dead = pq.read_table("scored-numpy/chunk-1.errors.parquet")
    assert dead["row"].to_pylist() == list(range(50))
    assert "has dtype float64, signature input 'x' expects float32" in dead["error"][0].as_py()
    assert not os.path.exists("scored-numpy/chunk-0.errors.parquet")


def test_readme_tfrecord_example(models, tmp_path, monkeypatch):
    import json

    import tensorflow as tf

    x = _workspace(models, tmp_path, monkeypatch)
    with tf.io.TFRecordWriter("data/examples.tfrecord") as writer:
        for row in x:
            feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=row))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    _run_example("tfrecord")
    lines = []
    for name in os.listdir("scored-tfrecord"):
        with open(os.path.join("scored-tfrecord", name)) as f:
            lines.extend(f)
    got = np.array(sorted(json.loads(line) for line in lines))
    expected = np.array(sorted(_scores(models, x).tolist()))
    assert_scores_close(got, expected)


def test_readme_runinference_example(models, tmp_path, monkeypatch, capsys):
    x = _workspace(models, tmp_path, monkeypatch)
    _run_example("runinference")
    got = pq.read_table(["scored-handler/" + f for f in os.listdir("scored-handler")]).sort_by("id")
    assert got["id"].to_pylist() == list(range(len(x)))
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), _scores(models, x))
    assert "failed:" not in capsys.readouterr().out


def test_readme_score_example(models, tmp_path, monkeypatch, capsys):
    x = _workspace(models, tmp_path, monkeypatch)
    _run_example("score")
    assert capsys.readouterr().out.split() == [str(len(x)), str(len(x)), "0"]
    got = pq.read_table(["scored-job/" + f for f in sorted(os.listdir("scored-job")) if f.startswith("part-")])
    assert got["id"].to_pylist() == list(range(len(x)))
    assert_scores_close(np.stack(got["scores"].to_numpy(zero_copy_only=False)), _scores(models, x))
    assert os.path.exists("scored-job/_manifest.json") and not os.path.exists("scored-job/_temporary")
