"""The format registry: suffixes pick the source, options reach only the formats that take them."""

from __future__ import annotations

import pytest

from beamscore.errors import BeamscoreError
from beamscore.io import NpySource, NpzSource, ParquetSource, TFRecordSource, source_for


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("gs://b/part-0.tfrecord", TFRecordSource),
        ("a/b.tfrecord.gz", TFRecordSource),
        ("x.tfrecords", TFRecordSource),
        ("x.npz", NpzSource),
        ("memory://x/y.npy", NpySource),
        ("x.parquet", ParquetSource),
        ("x.pq", ParquetSource),
    ],
)
def test_the_suffix_picks_the_source(name, cls):
    assert type(source_for(None, name)) is cls


def test_options_go_only_where_they_apply():
    tf = source_for("tfrecord", "x.data", 1000, compression="gzip", pad={"t": "4:0"}, allow_pickle=None)
    assert (tf.compression, tf.pad["t"].length) == ("gzip", 4)
    assert source_for("npz", "x.npz", 10, allow_pickle=True).rows_per_unit == 10
    assert source_for("parquet", "x.parquet", 10).rows_per_unit == 10
    assert source_for(None, "x.parquet", pad={"t": "4"}).pad["t"].length == 4
    with pytest.raises(BeamscoreError, match="--pad does not apply to npy input"):
        source_for(None, "x.npy", pad={"t": "4"})
    with pytest.raises(BeamscoreError, match="--allow-pickle does not apply to tfrecord input"):
        source_for(None, "x.tfrecord", allow_pickle=True)
    with pytest.raises(BeamscoreError, match=r"cannot tell the format of x\.csv from its name or its first bytes"):
        source_for(None, "x.csv")
