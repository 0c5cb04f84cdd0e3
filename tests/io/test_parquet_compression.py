"""``--output-compression`` / ``--output-compression-level``: the codec each Parquet output
file is written with, recorded in the manifest, refused in one line when it cannot work."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beamscore.cli import main


def score(models, shards, out, *extra: str) -> int:
    args = ["score", "--model", models["two_sig"], "--input", shards[0][0], "--output", str(out), "--keep", "id"]
    return main([*args, *extra])


@pytest.mark.parametrize(
    ("flags", "codec", "level"),
    [
        ([], "SNAPPY", None),
        (["--output-compression", "zstd", "--output-compression-level", "7"], "ZSTD", 7),
        (["--output-compression", "lz4"], "LZ4", None),
        (["--output-compression", "gzip", "--output-compression-level", "9"], "GZIP", 9),
        (["--output-compression", "none"], "UNCOMPRESSED", None),
    ],
)
def test_every_output_file_has_the_codec_and_the_manifest_says_so(models, shards, tmp_path, flags, codec, level):
    out = tmp_path / "out"
    assert score(models, shards, out, *flags) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    name = flags[1] if flags else "snappy"
    assert manifest["output_options"] == {"compression": name, "compression_level": level}
    tables = []
    for path in manifest["outputs"]:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            assert {meta.row_group(g).column(c).compression for c in range(meta.num_columns)} == {codec}
        tables.append(pq.read_table(path))
    assert pa.concat_tables(tables)["id"].to_pylist() == shards[1][: manifest["rows_out"]].tolist()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--output-compression", "snappy", "--output-compression-level", "3"], "codec 'snappy' takes no level"),
        (
            ["--output-compression", "gzip", "--output-compression-level", "12"],
            "for gzip must be a whole number from 1 to 9",
        ),
        (["--output-format", "npy", "--output-compression", "zstd"], "--output-compression does not apply to npy"),
    ],
)
def test_a_codec_that_cannot_work_is_refused_before_the_job(models, shards, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert score(models, shards, out, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def _column_meta(path) -> dict:
    """``{column path: (encodings, statistics written)}`` of a file's first row group."""
    group = pq.ParquetFile(path).metadata.row_group(0)
    return {
        group.column(c).path_in_schema: (set(group.column(c).encodings), group.column(c).is_stats_set)
        for c in range(group.num_columns)
    }


@pytest.mark.parametrize("codec", ["zstd", "snappy"])
def test_outputs_are_written_without_statistics_and_split_under_zstd(tmp_path, codec):
    """Scalar columns (an id) keep min/max statistics and strings their dictionary; list and
    tensor columns get neither; under zstd their float values are BYTE_STREAM_SPLIT. The
    values read back unchanged either way."""
    import numpy as np

    from beamscore.io.arrow import from_numpy
    from beamscore.io.base import WorkUnit
    from beamscore.io.parquet_sink import ParquetSink

    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": pa.array(np.arange(50)),
            "label": pa.array([f"l{i % 3}" for i in range(50)]),
            "scores": from_numpy(rng.random((50, 4), dtype=np.float32)),
            "image": from_numpy(rng.random((50, 2, 3))),  # a fixed_shape_tensor column of float64
            "tokens": from_numpy(np.arange(100).reshape(50, 2)),
        }
    )
    writer = ParquetSink(str(tmp_path / codec), compression=codec).open(WorkUnit(0, 0, "in", 0, 1, 50), {})
    writer.write(table)
    (path,) = writer.close()
    meta = _column_meta(path)
    split = codec == "zstd"
    assert meta["id"][1] and meta["label"][1]
    assert "RLE_DICTIONARY" in meta["label"][0] and "RLE_DICTIONARY" not in meta["scores.list.element"][0]
    for column in ("scores.list.element", "image.list.element", "tokens.list.element"):
        assert not meta[column][1], column
    assert ("BYTE_STREAM_SPLIT" in meta["scores.list.element"][0]) is split
    assert ("BYTE_STREAM_SPLIT" in meta["image.list.element"][0]) is split
    assert "BYTE_STREAM_SPLIT" not in meta["tokens.list.element"][0]  # integers stay PLAIN
    assert pq.read_table(path).equals(table)


def test_tensor_statistics_are_written_when_asked(tmp_path):
    import numpy as np

    from beamscore.io.arrow import from_numpy
    from beamscore.io.base import WorkUnit
    from beamscore.io.parquet_sink import ParquetSink

    table = pa.table({"scores": from_numpy(np.ones((3, 2), dtype=np.float32))})
    writer = ParquetSink(str(tmp_path), tensor_statistics=True).open(WorkUnit(0, 0, "in", 0, 1, 3), {})
    writer.write(table)
    (path,) = writer.close()
    assert _column_meta(path)["scores.list.element"][1]
