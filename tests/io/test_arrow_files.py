"""Feather (Arrow IPC file) and ORC inputs: the Parquet source's units, checks and dead
letters over the other columnar formats pyarrow reads (:mod:`beamscore.io.arrow_files`).

Files are written by pyarrow itself (``pyarrow.feather.write_feather``, ``pyarrow.orc.write_table``);
every job's scores are compared with a direct call of the signature, ids exact.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore import io as bio
from beamscore.cli import main
from beamscore.config import INPUT_FORMATS
from beamscore.errors import BeamscoreError

ROWS = 50


def _table(first: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(first)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    return pa.table(
        {"id": pa.array(np.arange(first, first + rows)), "x": pa.FixedSizeListArray.from_arrays(x.reshape(-1), 4)}
    )


def _write(fmt: str, path, table: pa.Table) -> None:
    if fmt == "feather":
        feather.write_feather(table, str(path), chunksize=16)  # record batches of 16 rows
    else:
        orc.write_table(table, str(path), stripe_size=1024)  # small stripes


@pytest.mark.parametrize("fmt", ["feather", "orc"])
def test_a_job_over_feather_or_orc_files_scores_every_row(models, tmp_path, fmt):
    """Two files, split into units of record batches / stripes (``--rows-per-unit``), read
    from the name's suffix and, renamed, from their first bytes: the same rows as the files
    hold, scored as a direct call scores them."""
    inp = tmp_path / "in"
    inp.mkdir()
    tables = [_table(0, ROWS), _table(ROWS, 30)]
    _write(fmt, inp / f"a.{fmt}", tables[0])
    _write(fmt, inp / "b-00001-of-00002", tables[1])  # a name that says nothing: its bytes do
    out = tmp_path / "out"
    flags = ["--keep", "id", "--rows-per-unit", "20", "--batch-size", "7"]
    code = main(["score", "--model", models["two_sig"], "--input", str(inp), "--output", str(out), *flags])
    assert code == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_failed"]) == (80, 80, 0)
    got = read_output(str(out))
    assert sorted(got["id"].to_pylist()) == list(range(80))
    if fmt == "feather":  # 50 rows in batches of 16: units of 32 and 18 rows, then one of 30 (<= 32)
        assert len([p for p in out.iterdir() if p.name.startswith("part-")]) == 3
    order = np.argsort(got["id"].to_numpy())
    x = np.concatenate([t["x"].combine_chunks().flatten().to_numpy().reshape(-1, 4) for t in tables])
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(got["scores"].to_numpy(zero_copy_only=False)[order].tolist(), expected["scores"])
    assert got["label"].to_numpy()[order].tolist() == expected["label"].tolist()


@pytest.mark.parametrize(("fmt", "label"), [("feather", "a Feather / Arrow IPC file"), ("orc", "an ORC file")])
def test_a_file_of_another_format_under_the_name_is_refused_naming_it(tmp_path, fmt, label):
    path = tmp_path / f"x.{fmt}"
    path.write_text("id,x\n1,2\n")
    source = bio.source_for(None, str(path))
    with pytest.raises(BeamscoreError) as err:
        source.columns(str(path))
    assert str(err.value) == f"{path}: another kind of file, not {label}; leave it out of --input"


def test_a_damaged_record_batch_refuses_its_file_in_one_line(models, tmp_path, capsys):
    """A record batch whose metadata cannot be read is found when the launcher counts the
    batches' rows: the job is refused (exit 2) naming the file and the batch, no traceback."""
    inp = tmp_path / "in"
    inp.mkdir()
    path = inp / "a.feather"
    table = _table(0, 48)
    with pa.ipc.new_file(str(path), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=16):
            writer.write_batch(batch)
    data = bytearray(path.read_bytes())
    # messages start with 0xFFFFFFFF (schema, batch 0, batch 1, ...): garble batch 1's metadata
    starts = [i for i in range(8, len(data) - 4) if data[i : i + 4] == b"\xff\xff\xff\xff"]
    data[starts[2] + 8 : starts[2] + 40] = b"\x7f" * 32
    path.write_bytes(bytes(data))
    code = main(["score", "--model", models["two_sig"], "--input", str(inp), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"beamscore: error: {path}: record batch 1 cannot be read (")
    assert "Traceback" not in "\n".join(err)


def test_the_format_hint_names_only_formats_that_can_be_given(tmp_path, capsys):
    """Every format a hint names is one ``--format`` takes, and every one it takes has a source."""
    assert set(bio.SOURCES) == set(INPUT_FORMATS)
    path = tmp_path / "data.bin"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(BeamscoreError) as err:
        bio.source_for(None, str(path))
    assert str(err.value).endswith(f"pass --format ({', '.join(INPUT_FORMATS)})")
    assert main(["score", "--format", "csv"]) == 2
    choices = capsys.readouterr().err.split("(choose from ", 1)[1].split(")", 1)[0]
    assert choices.replace("'", "").split(", ") == list(INPUT_FORMATS)


def test_a_compressed_file_of_no_known_format_is_not_told_to_pick_one(tmp_path):
    """A gzipped Parquet file (``data.parquet.gz``) was told to "pass --format (tfrecord, npz,
    npy, parquet)", though none of them reads it compressed; only TFRecord is read compressed."""
    import gzip

    path = tmp_path / "data.parquet.gz"
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1.0]}), buffer)
    path.write_bytes(gzip.compress(buffer.getvalue().to_pybytes()))
    with pytest.raises(BeamscoreError) as err:
        bio.source_for(None, str(path))
    assert str(err.value) == (
        f"{path}: a GZIP-compressed file with no TFRecord inside; only TFRecord inputs are read compressed: "
        "decompress it (then --format can name its format)"
    )
