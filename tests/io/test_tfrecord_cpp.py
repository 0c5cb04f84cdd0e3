"""The TFRecord reader's tests again, every file read by TensorFlow's C++ reader first
(``tf.data.TFRecordDataset``, :func:`beamscore.io.tfrecord.cpp_records`): a damaged record,
a truncation, GZIP padding or a batch that does not parse hands the file to the Python
reader from that record on, so the results, the dead letters and their wording stay the
same. The tests of ``test_tfrecord.py`` and ``test_damaged_inputs.py`` are collected here
too, with :data:`~beamscore.io.tfrecord.CPP_MIN_BYTES` at 0 (their files are small)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from test_damaged_inputs import *  # noqa: F403 - the same tests, through the C++ reader
from test_tfrecord import *  # noqa: F403

import beamscore.io.tfrecord as tfrecord
from beamscore.io.base import BadRows
from beamscore.io.tfrecord import TFRecordSource, cpp_path, cpp_records, read_records


@pytest.fixture(autouse=True)
def cpp_for_every_file(monkeypatch):
    monkeypatch.setattr(tfrecord, "CPP_MIN_BYTES", 0)
    calls = []
    real = tfrecord.cpp_records

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(tfrecord, "cpp_records", counted)
    return calls


def _write(path, n: int, damage_at: int | None = None) -> list[bytes]:
    records = [
        tf.train.Example(
            features=tf.train.Features(feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[i] * 4))})
        ).SerializeToString()
        for i in range(n)
    ]
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)
    if damage_at is not None:  # flip a byte in the data of record damage_at: its data CRC fails
        data = bytearray(path.read_bytes())
        offset = sum(len(r) + 16 for r in records[:damage_at]) + 12
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
    return records


def test_same_records_and_offsets_as_the_python_reader(tmp_path):
    path = tmp_path / "a.tfrecord"
    _write(path, 50)
    with open(path, "rb") as f:
        python = list(read_records(f, str(path), 7))
    cpp = list(cpp_records(str(path), "none", 7))
    assert [list(r) for r, _ in cpp] == [r for r, _ in python]
    assert [o for _, o in cpp] == [o for _, o in python]


def test_a_damaged_record_hands_the_rest_of_the_file_to_the_python_reader(tmp_path, cpp_for_every_file):
    path = tmp_path / "a.tfrecord"
    _write(path, 20, damage_at=13)
    source = TFRecordSource().with_dead_letters()
    source.columns(str(path))
    unit = source.units(str(path), 0)[0]
    items = list(source.read(unit, ["x"], 4))
    assert cpp_for_every_file == [str(path)]
    bad = [i for i in items if isinstance(i, BadRows)]
    assert [b.rows for b in bad] == [[13]] and "data's CRC does not match" in bad[0].error
    xs = np.concatenate([np.stack(t["x"].to_numpy(zero_copy_only=False)) for t in items if not isinstance(t, BadRows)])
    assert xs[:, 0].tolist() == [i for i in range(20) if i != 13]  # every other record once, in order


def test_a_length_beyond_the_file_never_reaches_tensorflow(tmp_path, cpp_for_every_file):
    """A length field of 2**60 whose CRC matches ends a process in TensorFlow's reader: the
    frame walk sends such a file to the Python reader, which makes it one dead letter."""
    import struct

    path = tmp_path / "a.tfrecord"
    _write(path, 5)
    length = struct.pack("<Q", 1 << 60)
    with open(path, "ab") as f:
        f.write(length + struct.pack("<I", tfrecord._masked_crc(length)) + b"x" * 40)
    assert not tfrecord.frames_fit(str(path))
    source = TFRecordSource().with_dead_letters()
    source.columns(str(path))
    items = list(source.read(source.units(str(path), 0)[0], ["x"], 4))
    assert cpp_for_every_file == []
    assert sum(t.num_rows for t in items if not isinstance(t, BadRows)) == 5
    assert [b.rows for b in items if isinstance(b, BadRows)] == [[5]]


def test_which_files_tensorflow_reads(tmp_path, monkeypatch):
    path = tmp_path / "a.tfrecord"
    _write(path, 3)
    assert cpp_path(str(path)) == str(path) and cpp_path(f"file://{path}") == str(path)
    assert cpp_path("s3://bucket/a.tfrecord") is None and cpp_path("gs://bucket/a.tfrecord") is None
    assert tfrecord.frames_fit(str(path))
    monkeypatch.setattr(tfrecord, "CPP_MIN_BYTES", 1 << 20)
    assert cpp_path(str(path)) is None  # small: the Python reader, no tf.data set-up
