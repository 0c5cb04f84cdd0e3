"""Every TFRecord file of an input is checked before the job: its first records must be
``tf.train.Example`` s with features (or the file empty). A ``tf.data.Dataset.save`` snapshot,
a ``SequenceExample`` file, records of other protos and files that are no TFRecord at all are
refused in one line naming the file, what it is and the way out; nothing is written."""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest
from source_files import example, write_tfrecord

from beamscore.cli import main


def good_file(path: str, n: int = 4) -> str:
    return write_tfrecord(path, [example({"id": np.int64(i), "tokens": np.arange(5) + i}) for i in range(n)])


def refused(io_models, capsys, inputs: list[str], out) -> str:
    argv = ["score", "--model", io_models["tokens"], "--output", str(out)]
    for pattern in inputs:
        argv += ["--input", pattern]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert not out.exists() or not (out / "_manifest.json").exists()
    assert len(err[0]) < 400, err[0]
    return err[0]


def test_a_csv_named_tfrecord_beside_good_files_is_refused_up_front(io_models, tmp_path, capsys):
    good_file(str(tmp_path / "in" / "a.tfrecord"))
    bad = tmp_path / "in" / "b.tfrecord"
    bad.write_text("id,tokens\n1,2\n3,4\n")
    line = refused(io_models, capsys, [str(tmp_path / "in" / "*.tfrecord")], tmp_path / "out")
    assert str(bad) in line and "a text file (CSV, JSON?)" in line and "not a TFRecord file" in line


def test_a_dataset_save_snapshot_is_refused(io_models, tmp_path, capsys):
    import tensorflow as tf

    snap = str(tmp_path / "snap")
    tf.data.Dataset.from_tensor_slices({"tokens": tf.range(50, dtype=tf.int64)}).batch(5).save(snap)
    (shard,) = glob.glob(os.path.join(snap, "*", "*.shard", "*.snapshot"))
    line = refused(io_models, capsys, [shard], tmp_path / "out")
    assert shard in line and "tf.data.Dataset.save snapshot" in line and "tf.data.Dataset.load" in line
    # renamed out of its directory, its records parse as empty Examples: still refused
    renamed = str(tmp_path / "renamed.tfrecord")
    shutil.copy(shard, renamed)
    line = refused(io_models, capsys, [renamed], tmp_path / "out2")
    assert renamed in line and "with no features" in line and "tf.data.Dataset.load" in line


def test_a_sequence_example_file_is_refused_naming_its_feature_lists(io_models, tmp_path, capsys):
    import tensorflow as tf

    def seq(i: int) -> bytes:
        feats = tf.train.FeatureLists(
            feature_list={
                "tokens": tf.train.FeatureList(
                    feature=[tf.train.Feature(int64_list=tf.train.Int64List(value=[i, i + 1]))]
                )
            }
        )
        context = tf.train.Features(feature={"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))})
        return tf.train.SequenceExample(context=context, feature_lists=feats).SerializeToString()

    good_file(str(tmp_path / "in" / "a.tfrecord"))
    path = write_tfrecord(str(tmp_path / "in" / "b.tfrecord"), [seq(i) for i in range(3)])
    line = refused(io_models, capsys, [str(tmp_path / "in")], tmp_path / "out")
    assert path in line and "tf.train.SequenceExample (1 feature lists: tokens)" in line


def test_records_of_another_proto_are_refused(io_models, tmp_path, capsys):
    good_file(str(tmp_path / "in" / "a.tfrecord"))
    path = write_tfrecord(str(tmp_path / "in" / "b.tfrecord"), [b"\xff\xff not a proto"] * 3)
    line = refused(io_models, capsys, [str(tmp_path / "in")], tmp_path / "out")
    assert f"{path}: record 0 (byte offset 0): not a tf.train.Example" in line and "another proto" in line


@pytest.mark.parametrize("content", [b"", None], ids=["empty-file", "examples"])
def test_empty_and_good_files_pass(io_models, tmp_path, capsys, content):
    good_file(str(tmp_path / "in" / "a.tfrecord"))
    other = tmp_path / "in" / "b.tfrecord"
    if content is None:
        good_file(str(other), 3)
    else:
        other.write_bytes(content)
    out = tmp_path / "out"
    code = main(["score", "--model", io_models["tokens"], "--input", str(tmp_path / "in"), "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "_manifest.json").exists()
