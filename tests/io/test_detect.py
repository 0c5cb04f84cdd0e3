"""An input's format from its name, else its first bytes, for files named as tools name them."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import direct_call, read_output
from scores import assert_scores_close
from source_files import example

from beamscore.cli import main
from beamscore.io.detect import format_from_name, format_of


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.parquet", "parquet"),
        ("part-00000-1f2e.c000.snappy.parquet", "parquet"),
        ("train.tfrecord-00003-of-00010", "tfrecord"),
        ("train.tfrecord.gz-00000-of-00002", "tfrecord"),
        ("x.npz", "npz"),
        ("data-00000-of-00001", None),
        ("part-0", None),
    ],
)
def test_format_from_name(name, fmt):
    assert format_from_name(f"/d/{name}") == fmt


def test_format_from_first_bytes(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "p")
    np.save(tmp_path / "n.npy", x)
    (tmp_path / "n.npy").rename(tmp_path / "n")
    np.savez_compressed(tmp_path / "z.npz", x=x)
    (tmp_path / "z.npz").rename(tmp_path / "z")
    for codec in ("", "GZIP", "ZLIB"):
        with tf.io.TFRecordWriter(str(tmp_path / f"t{codec}"), codec) as w:
            w.write(example({"x": x[0]}))
    (tmp_path / "text").write_text("id,x\n1,2\n")
    (tmp_path / "empty").write_bytes(b"")
    found = {p.name: format_of(str(p)) for p in sorted(tmp_path.iterdir())}
    assert found == {
        "empty": None,
        "n": "npy",
        "p": "parquet",
        "t": "tfrecord",
        "tGZIP": "tfrecord",
        "tZLIB": "tfrecord",
        "text": None,
        "z": "npz",
    }


def test_shards_written_by_beams_write_to_tfrecord_are_scored_without_format(models, tmp_path, capsys):
    """``beam.io.WriteToTFRecord`` names its shards ``PREFIX-00000-of-00002``: no suffix."""
    x = np.random.default_rng(4).normal(size=(30, 4)).astype(np.float32)
    records = [example({"id": np.int64(i), "x": x[i]}) for i in range(30)]
    with beam.Pipeline() as p:
        _ = p | beam.Create(records) | beam.io.WriteToTFRecord(str(tmp_path / "in" / "data"), num_shards=2)
    out = tmp_path / "out"
    args = ["score", "--model", models["two_sig"], "--input", str(tmp_path / "in" / "data-*"), "--output", str(out)]
    assert main([*args, "--keep", "id"]) == 0, capsys.readouterr().err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["input_format"], m["rows_in"], m["rows_out"]) == ("tfrecord", 30, 30)
    table = read_output(str(out)).sort_by("id")
    expected = direct_call(models["two_sig"], "serving_default", x=x[table["id"].to_numpy()])
    assert_scores_close(np.stack(table["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
