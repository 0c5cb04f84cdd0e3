"""Outputs whose declared row shape has an unknown dimension (``(-1, -1)``): a model that pads
tokens per batch returns each batch at its own width. They are written as variable-length
lists, one type for every batch, so the part files share a schema (fixed-size lists gave each
batch its own type: ``ArrowInvalid: Schema at index 1 was different``, and a batch of width
0 failed outright)."""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import direct_call, read_output

import beamscore
from beamscore.cli import main

LENGTHS = np.array([1, 2, 3, 5, 1, 1, 0, 0, 0, 4], dtype=np.int64)


class Padded(tf.Module):
    """``n`` int64 [None] -> ``mask`` float32 (-1, -1): ``n`` ones padded to the batch's
    longest row; ``grid`` (-1, -1, 2) the same with a trailing pair; ``total`` = n."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="n")])
    def serve(self, n):
        mask = tf.cast(tf.sequence_mask(n), tf.float32)
        return {"mask": mask, "grid": mask[:, :, None] * tf.ones([1, 1, 2]), "total": tf.cast(n, tf.float32)}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("padded") / "m")
    module = Padded()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def expected_per_batch(model: str, batch: int) -> dict[str, list]:
    """A direct call on each batch of ``batch`` rows, as beamscore batches them."""
    out: dict[str, list] = {"mask": [], "grid": []}
    for start in range(0, len(LENGTHS), batch):
        got = direct_call(model, "serving_default", n=LENGTHS[start : start + batch])
        out["mask"] += got["mask"].tolist()
        out["grid"] += got["grid"].tolist()
    return out


def test_batches_of_different_widths_are_one_column_type(model, tmp_path, capsys):
    src = str(tmp_path / "n.parquet")
    pq.write_table(pa.table({"id": np.arange(len(LENGTHS)), "n": LENGTHS}), src)
    out = tmp_path / "out"
    args = ["score", "--model", model, "--input", src, "--output", str(out), "--keep", "id", "--batch-size", "3"]
    assert main(args) == 0, capsys.readouterr().err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (10, 10, 0)
    table = read_output(str(out))
    assert table.schema.field("mask").type == pa.list_(pa.float32())
    assert table.schema.field("grid").type == pa.list_(pa.list_(pa.float32()))
    want = expected_per_batch(model, 3)
    assert table["mask"].to_pylist() == want["mask"]  # widths 3, 5, 0 and 4
    assert table["grid"].to_pylist() == want["grid"]


def test_run_signature_output_schema_has_list_types_for_writers(model, tmp_path):
    score = beamscore.RunSignature(model, keep=["id"])
    schema = score.output_schema(pa.schema([("id", pa.int64()), ("n", pa.int64())]))
    assert schema.field("mask").type == pa.list_(pa.float32())
    tables = [pa.table({"id": np.arange(a, b), "n": LENGTHS[a:b]}) for a, b in ((0, 3), (3, 6), (6, 9), (9, 10))]
    with beam.Pipeline() as p:
        _ = (
            p
            | beam.Create(tables)
            | score
            | beam.io.WriteToParquetBatched(str(tmp_path / "o"), schema=schema, file_name_suffix=".parquet")
        )
    written = pq.read_table([str(f) for f in tmp_path.glob("o*.parquet")]).sort_by("id")
    assert written["mask"].to_pylist() == expected_per_batch(model, 3)["mask"]
