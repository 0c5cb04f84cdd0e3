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
