"""TFRecord specifics: serialized-Example signatures, ``--pad``, GZIP, CRCs and offsets.

Files are written with ``tf.io.TFRecordWriter`` (the reference implementation of the
framing) and read back by :class:`beamscore.io.tfrecord.TFRecordSource`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close
from source_files import example, write_tfrecord

from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.io.tfrecord import TFRecordSource, parse_pad, read_records


def records_of(rows: dict[str, np.ndarray]) -> list[bytes]:
    n = len(next(iter(rows.values())))
    return [example({k: v[i] for k, v in rows.items()}) for i in range(n)]


def score_tokens(io_models, path: str, out, capsys, max_failed: int) -> dict:
    """Score ``path`` with the tokens model keeping ``id``; the job must pass; its manifest."""
    args = ["score", "--model", io_models["tokens"], "--input", path, "--output", str(out), "--keep", "id"]
    assert main([*args, "--max-failed-rows", str(max_failed)]) == 0, capsys.readouterr().err
    return json.loads((out / "_manifest.json").read_text())


def read_all(source: TFRecordSource, path: str, columns: list[str], batch_size: int = 64):
    import pyarrow as pa

    source.columns(path)
    (unit,) = source.units(path, 0)
    return pa.concat_tables(list(source.read(unit, columns, batch_size)))


def test_a_serialized_example_signature_gets_the_raw_records(io_models, rows, tmp_path, capsys):
    records = records_of(rows)
    path = write_tfrecord(str(tmp_path / "in" / "shard-00.tfrecord.gz"), records)
    out = tmp_path / "out"
    code = main(["score", "--model", io_models["examples"], "--input", path, "--output", str(out), "--keep", "id"])
    assert code == 0, capsys.readouterr().err
    table = read_output(str(out))
    assert table.column_names == ["score", "id"]
    assert table["id"].to_numpy().tolist() == rows["id"].tolist()
    expected = direct_call(io_models["examples"], "serving_default", examples=np.array(records, dtype=object))
    assert_scores_close(table["score"].to_numpy(), expected["score"])


def test_a_variable_length_feature_that_does_not_fit_names_feature_record_and_lengths(io_models, tmp_path, capsys):
    lengths = [5, 5, 5, 3, 5, 7]
    records = [example({"tokens": np.arange(n, dtype=np.int64) + i}) for i, n in enumerate(lengths)]
    path = write_tfrecord(str(tmp_path / "tokens.tfrecord"), records)
    source = TFRecordSource()
    from beamscore.model.inspect import inspect_model

    signature = inspect_model(io_models["tokens"]).signature()
    bound = source.bind(signature, {})
    assert bound.columns(path)["tokens"].row_shape is None  # lengths differ: checked per record
    offset = sum(len(r) + 16 for r in records[:3])
    with pytest.raises(BeamscoreError) as err:
        read_all(bound, path, ["tokens"])
    message = str(err.value)
    assert f"{path}: record 3 (byte offset {offset}): feature 'tokens' has 3 values, expected 5" in message
    assert "--pad tokens=" in message


def test_pad_pads_and_truncates_to_the_signature(io_models, tmp_path, capsys):
    lengths = [5, 2, 8, 0, 5]
    tokens = [np.arange(1, n + 1, dtype=np.int64) * (i + 1) for i, n in enumerate(lengths)]
    records = [example({"tokens": t, "id": np.int64(i)}) for i, t in enumerate(tokens)]
    path = write_tfrecord(str(tmp_path / "in" / "tokens.tfrecord"), records)
    out = tmp_path / "out"
    code = main(
        [
            *("score", "--model", io_models["tokens"], "--input", path, "--output", str(out)),
            *("--pad", "tokens=5:-1", "--keep", "id"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    padded = np.full((len(tokens), 5), -1, dtype=np.int64)
    for i, t in enumerate(tokens):
        padded[i, : min(len(t), 5)] = t[:5]
    expected = direct_call(io_models["tokens"], "serving_default", tokens=padded)
    table = read_output(str(out))
    assert_scores_close(table["total"].to_numpy(), expected["total"])
    np.testing.assert_array_equal(table["id"].to_numpy(), np.arange(len(tokens)))


def test_pad_values_are_checked():
    assert parse_pad({"t": "8:0", "u": 3}) == {"t": parse_pad({"t": "8:0"})["t"], "u": parse_pad({"u": "3"})["u"]}
    with pytest.raises(BeamscoreError, match=r"--pad t=x: expected NAME=LENGTH\[:VALUE\]"):
        parse_pad({"t": "x"})


@pytest.mark.parametrize("where", ["data", "length"])
def test_a_bad_crc_names_the_record_and_byte_offset(rows, tmp_path, where):
    records = records_of(rows)
    path = write_tfrecord(str(tmp_path / "bad.tfrecord"), records)
    offset = sum(len(r) + 16 for r in records[:10])
    data = bytearray(open(path, "rb").read())  # noqa: SIM115
    data[offset + (20 if where == "data" else 2)] ^= 0xFF
    open(path, "wb").write(bytes(data))  # noqa: SIM115
    with pytest.raises(BeamscoreError) as err:
        read_all(TFRecordSource(), path, ["x", "id"])
    assert f"{path}: corrupt record 10 at byte offset {offset}:" in str(err.value)
    assert ("data's CRC" if where == "data" else "length's CRC") in str(err.value)


def test_gzip_by_flag_by_its_bytes_and_a_gzip_file_read_as_plain(rows, tmp_path):
    records = records_of(rows)
    gz = write_tfrecord(str(tmp_path / "a.tfrecord.gz"), records)
    renamed = tmp_path / "a.rec"
    renamed.write_bytes(open(gz, "rb").read())  # noqa: SIM115
    for source in (TFRecordSource(compression="gzip"), TFRecordSource()):  # the flag, or found from its bytes
        table = read_all(source, str(renamed), ["x", "id"])
        assert table["id"].to_numpy().tolist() == rows["id"].tolist()
        np.testing.assert_array_equal(np.stack(table["x"].to_numpy(zero_copy_only=False)), rows["x"])
    with pytest.raises(BeamscoreError, match=r"a\.rec: a GZIP-compressed file read as plain"):
        read_all(TFRecordSource(compression="none"), str(renamed), ["x"])
    with pytest.raises(BeamscoreError, match="--compression 'zip': choose one of gzip, zlib, none"):
        TFRecordSource(compression="zip")


def test_a_gzipped_parquet_file_read_as_tfrecord_says_what_is_inside(tmp_path):
    """A ``.parquet.gz`` given as TFRecord, with no ``--compression``, said "drop --compression
    none", a flag nobody gave; it is inflated (found from its bytes), so what is inside is named."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1.0, 2.0]}), tmp_path / "t.parquet")
    path = tmp_path / "t.parquet.gz"
    path.write_bytes(gzip.compress((tmp_path / "t.parquet").read_bytes()))
    with pytest.raises(BeamscoreError) as err:
        read_all(TFRecordSource(), str(path), ["x"])
    assert str(err.value) == (
        f"{path}: a GZIP-compressed file holding a Parquet file, not a TFRecord file (no record header at "
        "byte 0); leave it out of --input"
    )


def test_bytes_and_variable_features_kept_and_a_missing_feature_named(tmp_path):
    records = [
        example({"x": np.ones(4, np.float32) * i, "key": np.array([f"k{i}".encode()]), "tags": np.arange(i)})
        for i in range(6)
    ]
    records.append(example({"key": np.array([b"k6"]), "tags": np.arange(2)}))
    path = write_tfrecord(str(tmp_path / "f.tfrecord"), records)
    source = TFRecordSource()
    columns = source.columns(path)
    assert (columns["key"].dtype, columns["key"].row_shape) == ("string", ())
    assert columns["tags"].row_shape is None
    table = read_all(source, path, ["key", "tags"])
    assert table["key"].to_pylist() == [f"k{i}".encode() for i in range(7)]
    assert table["tags"].to_pylist() == [list(range(i)) for i in range(6)] + [[0, 1]]
    offset = sum(len(r) + 16 for r in records[:6])
    with pytest.raises(BeamscoreError, match=rf"record 6 \(byte offset {offset}\): feature 'x' is missing"):
        read_all(source, path, ["x", "key"])


def test_read_records_batches_and_offsets(rows, tmp_path):
    records = records_of(rows)
    path = write_tfrecord(str(tmp_path / "r.tfrecord"), records)
    with open(path, "rb") as f:
        batches = list(read_records(f, path, 128))
    assert [len(b) for b, _ in batches] == [128, 128, 44]
    assert [r for b, _ in batches for r in b] == records
    assert [o for _, offs in batches for o in offs] == list(np.cumsum([0] + [len(r) + 16 for r in records[:-1]]))


def test_an_unparseable_record_and_the_manifest_format(io_models, tmp_path, capsys):
    path = write_tfrecord(str(tmp_path / "in" / "junk.tfrecord"), [b"\xff\xff not a proto"])
    code = main(["score", "--model", io_models["tokens"], "--input", path, "--output", str(tmp_path / "out")])
    assert code == 2
    assert f"{path}: record 0 (byte offset 0): not a tf.train.Example" in capsys.readouterr().err
    good = write_tfrecord(str(tmp_path / "in2" / "ok.tfrecord"), [example({"tokens": np.arange(5)}) for _ in range(3)])
    assert main(["score", "--model", io_models["tokens"], "--input", good, "--output", str(tmp_path / "o2")]) == 0
    assert json.loads((tmp_path / "o2" / "_manifest.json").read_text())["input_format"] == "tfrecord"


def test_a_garbled_record_among_examples_is_a_dead_letter_not_a_refusal(io_models, tmp_path, capsys):
    """Schema discovery skips a record that is not an Example when others in the sample are;
    reading makes it a dead letter, and every other record is scored."""
    tokens = np.arange(100, dtype=np.int64).reshape(20, 5)
    good = [example({"id": np.int64(i), "tokens": tokens[i]}) for i in range(20)]
    records = [*good[:2], b"\xff\xff garbled", *good[2:], b"\x0a\x05 cut"]
    path = write_tfrecord(str(tmp_path / "in" / "mixed.tfrecord"), records)
    out = tmp_path / "out"
    m = score_tokens(io_models, path, out, capsys, max_failed=2)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (22, 20, 2)
    table = read_output(str(out))
    assert table["id"].to_pylist() == list(range(20))
    expected = direct_call(io_models["tokens"], "serving_default", tokens=tokens)
    assert_scores_close(table["total"].to_numpy(), expected["total"])
    import pyarrow.parquet as pq

    dead = pq.read_table(str(out / "_errors")).sort_by("row")
    assert dead["row"].to_pylist() == [2, 21]
    assert all(e.endswith("not a tf.train.Example") for e in dead["error"].to_pylist())


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    c = google_crc32c.value(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize("tail", ["huge-length", "trailing-garbage", "cut"])
def test_framing_damage_in_the_sampled_records_of_the_only_file_is_a_dead_letter(io_models, tmp_path, capsys, tail):
    """Damage among the first 64 records of the launcher's schema file: a length field that
    claims 2**60 bytes (was ``MemoryError``), bytes appended after the last record, a file
    cut inside a record (each was a refusal of the whole job, yet a dead letter in a second
    file). The records before it are scored; the damage is one dead letter."""
    import struct

    tokens = np.arange(50, dtype=np.int64).reshape(10, 5)
    path = write_tfrecord(
        str(tmp_path / "in" / "t.tfrecord"), [example({"id": np.int64(i), "tokens": tokens[i]}) for i in range(10)]
    )
    with open(path, "r+b") as f:
        if tail == "huge-length":
            length = struct.pack("<Q", 1 << 60)
            f.seek(0, 2)
            f.write(length + struct.pack("<I", _masked_crc(length)) + b"x" * 40)
        elif tail == "trailing-garbage":
            f.seek(0, 2)
            f.write(b"garbage\n")
        else:
            f.truncate(f.seek(0, 2) - 10)
    scored = 9 if tail == "cut" else 10
    out = tmp_path / "out"
    m = score_tokens(io_models, path, out, capsys, max_failed=1)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (scored + 1, scored, 1)
    table = read_output(str(out))
    assert table["id"].to_pylist() == list(range(scored))
    expected = direct_call(io_models["tokens"], "serving_default", tokens=tokens[:scored])
    assert_scores_close(table["total"].to_numpy(), expected["total"])
    import pyarrow.parquet as pq

    (error,) = pq.read_table(str(out / "_errors"))["error"].to_pylist()
    assert error.startswith(f"{path}: truncated record {scored} at byte offset ")


def test_a_file_with_no_readable_record_is_still_refused_up_front(io_models, tmp_path, capsys):
    path = str(tmp_path / "in" / "not.tfrecord")
    (tmp_path / "in").mkdir()
    with open(path, "wb") as f:
        f.write(b"PAR1" + bytes(range(40)))
    out = tmp_path / "out"
    assert main(["score", "--model", io_models["tokens"], "--input", path, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: a Parquet file, not a TFRecord file (no record header at byte 0)" in err[0]
    assert not (out / "_manifest.json").exists()


def save_int32_bool_model(path: str) -> str:
    """``ids`` int32 [None, 3] and ``flag`` bool [None] -> ``score`` int32 [None]: inputs
    no TFRecord feature kind matches (``int64_list`` is the only integer kind)."""
    import tensorflow as tf

    class Module(tf.Module):
        signature = [tf.TensorSpec([None, 3], tf.int32, name="ids"), tf.TensorSpec([None], tf.bool, name="flag")]

        @tf.function(input_signature=signature)
        def serve(self, ids, flag):
            return {"score": tf.reduce_sum(ids * tf.constant([1, 10, 100]), axis=1) * tf.cast(flag, tf.int32)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_int64_features_feed_int32_and_bool_inputs_checked_per_record(tmp_path, capsys):
    """An int32 or bool input was refused without --cast (TFRecord cannot hold anything
    else), and --cast wrapped 2**33 to 0. Now each value is checked: one that does not fit
    is a dead letter naming record, feature, value and input; the others are scored."""
    model = save_int32_bool_model(str(tmp_path / "model"))
    ids = np.arange(30, dtype=np.int64).reshape(10, 3) - 5
    flag = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=np.int64)
    ids[3, 1] = 1 << 33
    flag[6] = 2
    records = [example({"id": np.int64(i), "ids": ids[i], "flag": flag[i]}) for i in range(10)]
    path = write_tfrecord(str(tmp_path / "in" / "ints.tfrecord"), records)
    out = tmp_path / "out"
    args = ["score", "--model", model, "--input", path, "--output", str(out), "--keep", "id"]
    assert main([*args, "--max-failed-rows", "2"]) == 0, capsys.readouterr().err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (10, 8, 2)
    good = [i for i in range(10) if i not in (3, 6)]
    table = read_output(str(out))
    assert table["id"].to_pylist() == good
    expected = direct_call(model, "serving_default", ids=ids[good].astype(np.int32), flag=flag[good].astype(bool))
    assert_scores_close(table["score"].to_numpy(), expected["score"])
    import pyarrow.parquet as pq

    dead = pq.read_table(str(out / "_errors")).sort_by("row")
    assert dead["row"].to_pylist() == [3, 6]
    first, second = dead["error"].to_pylist()
    assert f"{path}: record 3 (byte offset " in first
    assert "feature 'ids' holds 8589934592, which does not fit input 'ids' of dtype int32" in first
    assert "feature 'flag' holds 2, which does not fit input 'flag' of dtype bool (0 or 1)" in second


def test_an_empty_feature_is_named_as_empty_not_as_missing(io_models, tmp_path, capsys):
    """``tf.train.Feature()`` (no list set, as a writer that skips empty values leaves it)
    was reported as "feature 'tokens' is missing; features: tokens"."""
    import tensorflow as tf

    tokens = np.arange(15, dtype=np.int64).reshape(3, 5)
    records = [example({"tokens": t}) for t in tokens]
    empty = tf.train.Example(features=tf.train.Features(feature={"tokens": tf.train.Feature()}))
    records.insert(1, empty.SerializeToString())
    path = write_tfrecord(str(tmp_path / "in" / "empty.tfrecord"), records)
    out = tmp_path / "out"
    args = ["score", "--model", io_models["tokens"], "--input", path, "--output", str(out), "--max-failed-rows", "1"]
    assert main(args) == 0, capsys.readouterr().err
    table = read_output(str(out))
    expected = direct_call(io_models["tokens"], "serving_default", tokens=tokens)
    assert_scores_close(table["total"].to_numpy(), expected["total"])
    import pyarrow.parquet as pq

    (error,) = pq.read_table(str(out / "_errors"))["error"].to_pylist()
    assert error == (
        f"{path}: record 1 (byte offset {len(records[0]) + 16}): feature 'tokens' is empty "
        "(a tf.train.Feature with no value list set: 0 values, expected 5)"
    )


def test_a_record_of_another_feature_kind_in_the_sample_is_a_dead_letter(io_models, tmp_path, capsys):
    """One record among the first 64 whose ``tokens`` is a float_list (another writer)
    refused the whole job ("is a float_list, earlier records have a int64_list"), while the
    same record further on was a dead letter. The kind most sampled records hold wins."""
    tokens = np.arange(60, dtype=np.int64).reshape(12, 5)
    records = [example({"id": np.int64(i), "tokens": tokens[i]}) for i in range(12)]
    records[0] = example({"id": np.int64(0), "tokens": tokens[0].astype(np.float32)})
    records[7] = example({"id": np.int64(7), "tokens": np.array([b"a"] * 5)})
    path = write_tfrecord(str(tmp_path / "in" / "kinds.tfrecord"), records)
    out = tmp_path / "out"
    m = score_tokens(io_models, path, out, capsys, max_failed=2)
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (12, 10, 2)
    good = [i for i in range(12) if i not in (0, 7)]
    table = read_output(str(out))
    assert table["id"].to_pylist() == good
    expected = direct_call(io_models["tokens"], "serving_default", tokens=tokens[good])
    assert_scores_close(table["total"].to_numpy(), expected["total"])
    import pyarrow.parquet as pq

    errors = pq.read_table(str(out / "_errors")).sort_by("row")["error"].to_pylist()
    assert (
        errors[0]
        == f"{path}: record 0 (byte offset 0): feature 'tokens' holds float32 values (float_list), expected int64"
    )
    assert errors[1].endswith("feature 'tokens' holds string values (bytes_list), expected int64")


def test_a_pad_fill_value_of_the_wrong_type_is_refused_before_the_job(io_models, tmp_path, capsys):
    """``--pad tokens=5:abc`` on an int64 feature was checked only while parsing: every
    record became a dead letter carrying the flag's error. It is refused up front."""
    records = [example({"tokens": np.arange(n, dtype=np.int64)}) for n in (3, 5, 7)]
    path = write_tfrecord(str(tmp_path / "in" / "t.tfrecord"), records)
    out = tmp_path / "out"
    args = ["score", "--model", io_models["tokens"], "--input", path, "--output", str(out), "--pad", "tokens=5:abc"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "beamscore: error: --pad tokens=5:abc: 'abc' is not a int64 value"
    ]
    assert not (out / "_manifest.json").exists()


def test_pad_naming_no_feature_is_refused_like_npz(io_models, tmp_path, capsys):
    """``--pad token=5`` (a typo of ``tokens``) was silently ignored, and ragged ``tokens``
    then failed record by record, each message asking for the --pad already given."""
    records = [example({"tokens": np.arange(n, dtype=np.int64)}) for n in (3, 5, 7)]
    path = write_tfrecord(str(tmp_path / "in" / "t.tfrecord"), records)
    out = tmp_path / "out"
    args = ["score", "--model", io_models["tokens"], "--input", path, "--output", str(out)]
    assert main([*args, "--pad", "token=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"beamscore: error: {path}: --pad token: no feature 'token' in the first 64 records; features: tokens"
    ]
    assert main([*args, "--pad", "tokens=5"]) == 0, capsys.readouterr().err
    padded = np.array([[0, 1, 2, 0, 0], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]], dtype=np.int64)
    expected = direct_call(io_models["tokens"], "serving_default", tokens=padded)
    assert_scores_close(read_output(str(out))["total"].to_numpy(), expected["total"])


def test_zero_padding_after_gzip_members_is_skipped(io_models, tmp_path, capsys):
    """A GZIP file padded with zero bytes (a tape or block store's padding, which gzip and
    Python's gzip skip) after a member, with another member after the padding: the zeros
    were read as a member header ("incorrect header check"), one dead letter more."""
    import gzip

    tokens = np.arange(40, dtype=np.int64).reshape(8, 5)
    plain = write_tfrecord(str(tmp_path / "p.tfrecord"), [example({"tokens": t}) for t in tokens])
    data = open(plain, "rb").read()  # noqa: SIM115
    cut = sum(len(example({"tokens": t})) + 16 for t in tokens[:3])
    path = tmp_path / "in" / "padded.tfrecord.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(data[:cut]) + bytes(300) + gzip.compress(data[cut:]) + bytes(4096))
    assert len(gzip.decompress(path.read_bytes())) == len(data)  # as Python's gzip reads it
    out = tmp_path / "out"
    assert main(["score", "--model", io_models["tokens"], "--input", str(path), "--output", str(out)]) == 0, (
        capsys.readouterr().err
    )
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (8, 8, 0)
    expected = direct_call(io_models["tokens"], "serving_default", tokens=tokens)
    assert_scores_close(read_output(str(out))["total"].to_numpy(), expected["total"])


def test_a_kept_feature_empty_in_every_record_is_a_list_column(io_models, tmp_path, capsys):
    """``tags`` with 0 values in every record (``int64_list {}``) was sampled as a fixed
    length of 0, which Arrow cannot hold: the batch raised, its records were neither scored
    nor counted (rows_in 1 of 3). It is now a list column of empty lists."""
    tokens = np.arange(15, dtype=np.int64).reshape(3, 5)
    empty = np.array([], dtype=np.int64)
    records = [example({"tokens": t, "tags": empty, "names": np.array([], dtype=bytes)}) for t in tokens]
    path = write_tfrecord(str(tmp_path / "in" / "t.tfrecord"), records)
    out = tmp_path / "out"
    args = ["score", "--model", io_models["tokens"], "--input", path, "--output", str(out)]
    assert main([*args, "--keep", "tags", "--keep", "names"]) == 0, capsys.readouterr().err
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (3, 3, 0)
    table = read_output(str(out))
    assert table["tags"].to_pylist() == [[], [], []] and table["names"].to_pylist() == [[], [], []]
    expected = direct_call(io_models["tokens"], "serving_default", tokens=tokens)
    assert_scores_close(table["total"].to_numpy(), expected["total"])


def test_an_unexpected_error_in_a_batch_makes_its_records_dead_letters(io_models, tmp_path, monkeypatch):
    """Records that were read count, whatever goes wrong after: an error that is not the
    data's (a bug) makes the batch's records dead letters naming it (it lost them)."""
    tokens = np.arange(20, dtype=np.int64).reshape(4, 5)
    path = write_tfrecord(str(tmp_path / "t.tfrecord"), [example({"tokens": t}) for t in tokens])
    from beamscore.model.inspect import inspect_model

    source = TFRecordSource().bind(inspect_model(io_models["tokens"]).signature(), {}).with_dead_letters()
    source.columns(path)

    def broken(*args, **kwargs):
        raise ValueError("cannot reshape array")

    monkeypatch.setattr(TFRecordSource, "_table", broken)
    (unit,) = source.units(path, 0)
    (bad,) = list(source.read(unit, ["tokens"], 64))
    assert list(bad.rows) == [0, 1, 2, 3]
    assert bad.error == f"{path}: records 0-3: ValueError: cannot reshape array"


def test_parse_feeds_a_feature_named_as_the_only_string_input_not_the_whole_record(tmp_path):
    """``RunSignature`` over ``ReadFromTFRecord`` parses records with :meth:`parse`, which
    fed a text model's one string input ``text`` [None] the whole serialized Example even
    when the Examples hold a ``text`` feature (``beamscore score`` parsed it): silently wrong
    scores. Records without that feature still go whole (an Estimator export)."""
    import tensorflow as tf

    from beamscore.model.inspect import inspect_model

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"length": tf.strings.length(text)}

    model = str(tmp_path / "model")
    module = Module()
    tf.saved_model.save(module, model, signatures={"serving_default": module.serve})
    signature = inspect_model(model).signature()
    texts = np.array([b"hello", b"hi", b"a longer text"], dtype=object)
    records = [example({"text": np.array([t]), "id": np.int64(i)}) for i, t in enumerate(texts)]
    source = TFRecordSource().bind(signature, {})
    table = source.parse(records)
    assert table["text"].to_pylist() == list(texts)
    assert source.parse(records[1:])["text"].to_pylist() == list(texts[1:])
    expected = direct_call(model, "serving_default", text=texts)["length"]
    fn = tf.saved_model.load(model).signatures["serving_default"]
    got = fn(text=tf.constant(table["text"].to_pylist()))["length"].numpy()
    np.testing.assert_array_equal(got, expected)
    other = [example({"body": np.array([t])}) for t in texts]
    raw = TFRecordSource().bind(signature, {})
    assert raw.parse(other)["text"].to_pylist() == other
    assert raw.parse(other[:1])["text"].to_pylist() == other[:1]


def test_schema_sampling_stops_at_a_byte_budget(tmp_path, monkeypatch):
    """The planner samples 32 files at once, each up to 64 records held together: with
    records of video frames that is gigabytes per file. Sampling reads one record at a time and
    stops once SAMPLE_BYTES are seen (here 1 byte: after the first record)."""
    import beamscore.io.tfrecord as tfrecord

    frames = [np.full(1000, i + 1, dtype=np.uint8).tobytes() for i in range(4)]
    records = [example({"frame": np.array([f]), "tags": np.arange(2 + i)}) for i, f in enumerate(frames)]
    path = write_tfrecord(str(tmp_path / "v.tfrecord"), records)
    assert TFRecordSource().columns(path)["tags"].row_shape is None  # 2, 3, 4, 5 values: variable
    monkeypatch.setattr(tfrecord, "SAMPLE_BYTES", 1)
    columns = TFRecordSource().columns(path)
    assert columns["tags"].row_shape == (2,) and columns["frame"].dtype == "string"
    table = read_all(TFRecordSource(), path, ["frame"])
    assert table["frame"].to_pylist() == frames
