"""Damaged inputs: no job crash, no silent corruption, every input row accounted for.

One contract for every damage a real job meets: each case writes two shards of the same
300 rows (``shard-00`` rows 0-179, ``shard-01`` rows 180-299) with a real writer (pyarrow
with page checksums, numpy, ``tf.io.TFRecordWriter``), damages ``shard-01`` (or a page of
``shard-00``) before or *after planning*, and runs the job on the in-process Beam runner
with the ``two_sig`` model. Every case asserts that the job finishes with its manifest,
that ``rows_in`` is the rows the input holds (TFRecord: as read, and the manifest says so),
that ``rows_in == rows_out + rows_failed``, that the dead letters say why and add up to
``rows_failed``, and that every scored row equals a direct signature call on the row as it
was written: a corrupt value that was scored would fail that comparison.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call
from scores import assert_scores_close
from source_files import example, write_tfrecord

from beamscore.config import ScoreConfig
from beamscore.errors import BeamscoreError
from beamscore.pipelines.plan import plan_job
from beamscore.pipelines.runners import pipeline_options
from beamscore.pipelines.score import run_plan

SPLIT = 180  # shard-00 holds rows 0-179, shard-01 rows 180-299
ROW_GROUP = 60


# -- writers: the same rows, as real tools write them -----------------------------------------


def write_parquet(path: str, rows: dict[str, np.ndarray]) -> None:
    x = pa.FixedSizeListArray.from_arrays(pa.array(rows["x"].reshape(-1)), 4)
    table = pa.table({"id": rows["id"], "x": x})
    pq.write_table(
        table, path, row_group_size=ROW_GROUP, write_page_checksum=True, compression="none", use_dictionary=False
    )


def write_npz(path: str, rows: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, id=rows["id"], x=rows["x"])


def write_npy(path: str, rows: dict[str, np.ndarray]) -> None:
    np.save(path, rows["x"])


def tfrecord_writer(compression: str) -> Callable[[str, dict[str, np.ndarray]], None]:
    def write(path: str, rows: dict[str, np.ndarray]) -> None:
        import tensorflow as tf

        records = [example({"id": rows["id"][i], "x": rows["x"][i]}) for i in range(len(rows["id"]))]
        with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type=compression)) as writer:
            for record in records:
                writer.write(record)

    return write


WRITERS = {
    "parquet": (".parquet", write_parquet),
    "npz": (".npz", write_npz),
    "npy": (".npy", write_npy),
    "tfrecord.gz": (".tfrecord.gz", tfrecord_writer("GZIP")),
    "tfrecord.zlib": (".tfrecord", tfrecord_writer("ZLIB")),  # no hint in the name: found from its bytes
}


# -- damage ------------------------------------------------------------------------------------


def flip(path: str, offset: int) -> None:
    data = bytearray(open(path, "rb").read())  # noqa: SIM115
    data[offset] ^= 0xFF
    open(path, "wb").write(bytes(data))  # noqa: SIM115


def cut(path: str, fraction: float = 0.5) -> None:
    data = open(path, "rb").read()  # noqa: SIM115
    open(path, "wb").write(data[: int(len(data) * fraction)])  # noqa: SIM115


def parquet_page(path: str, row_group: int) -> tuple[int, int]:
    """Where column ``x``'s data page of ``row_group`` starts and how long its chunk is."""
    chunk = pq.ParquetFile(path).metadata.row_group(row_group).column(1)
    assert not chunk.has_dictionary_page  # one data page: header, then the values
    return chunk.data_page_offset, chunk.total_compressed_size


def flip_page_data(path: str) -> None:
    start, size = parquet_page(path, 1)
    flip(path, start + size - 7)  # inside the float values: without checksums, a silently wrong x


def flip_page_header(path: str) -> None:
    start, _ = parquet_page(path, 1)
    flip(path, start + 1)  # the thrift page header: "Couldn't deserialize thrift"


def flip_npz_member(path: str) -> None:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("x.npy")
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
    flip(path, info.header_offset + 30 + int(name_len) + int(extra_len) + info.compress_size // 2)


def replace_with(rows: dict[str, np.ndarray], n: int, drop: str | None = None):
    """A damage that rewrites the file with its first ``n`` rows (and without ``drop``)."""

    def damage(path: str) -> None:
        smaller = {k: v[:n] for k, v in rows.items() if k != drop}
        if path.endswith(".parquet"):
            write_parquet(path, smaller)
        else:
            with open(path, "wb") as f:
                np.savez(f, **smaller)

    return damage


# -- the cases ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """``damage(path)`` hits ``target`` (0 or 1) before planning, or after when ``after``;
    ``lost`` are the row indices that must not be scored and ``failed`` how many rows the
    dead letters must count (None: worked out from the file, for cut compressed streams);
    ``error`` is in the dead letters."""

    id: str
    fmt: str
    damage: Callable[[str], None] | str
    after: bool
    target: int
    lost: range | None
    error: str


CASES = [
    Case("parquet-page-crc", "parquet", flip_page_data, False, 0, range(60, 120), "could not verify page integrity"),
    Case("parquet-page-header", "parquet", flip_page_header, False, 0, range(60, 120), "Couldn't deserialize thrift"),
    Case("parquet-deleted", "parquet", os.remove, True, 1, range(180, 300), "No such file"),
    Case("parquet-truncated", "parquet", cut, True, 1, range(180, 300), "not a readable Parquet file"),
    Case("parquet-replaced", "parquet", "replace", True, 1, range(180, 300), "changed after planning"),
    Case("npz-missing-array", "npz", "drop-x", True, 1, range(180, 300), "no array 'x'"),
    Case("npz-truncated", "npz", cut, True, 1, range(180, 300), "not a readable .npz"),
    Case("npz-deleted", "npz", os.remove, True, 1, range(180, 300), "No such file"),
    Case("npy-truncated", "npy", lambda p: cut(p, 0.6), True, 1, range(180 + 64, 300), "truncated"),
    Case("npy-replaced", "npy", "shorter-npy", True, 1, range(180, 300), "changed after planning"),
    Case("tfrecord-gzip-cut", "tfrecord.gz", cut, False, 1, None, "cut short"),
    Case("tfrecord-zlib-cut", "tfrecord.zlib", cut, False, 1, None, "cut short"),
    Case("tfrecord-gzip-deleted", "tfrecord.gz", os.remove, True, 1, range(180, 300), "no such file"),
]


def shards(fmt: str, root, rows: dict[str, np.ndarray]) -> list[str]:
    suffix, write = WRITERS[fmt]
    os.makedirs(root, exist_ok=True)
    paths = []
    for i, part in enumerate((slice(0, SPLIT), slice(SPLIT, None))):
        path = str(root / f"shard-{i:02d}{suffix}")
        write(path, {k: v[part] for k, v in rows.items()})
        paths.append(path)
    return paths


def apply(case: Case, path: str, rows: dict[str, np.ndarray]) -> None:
    if case.damage == "replace":
        replace_with(rows, 50)(path)
    elif case.damage == "drop-x":
        replace_with({k: v[SPLIT:] for k, v in rows.items()}, 120, drop="x")(path)
    elif case.damage == "shorter-npy":
        np.save(path, rows["x"][:50])
    else:
        case.damage(path)


def records_before_damage(path: str, compression: str) -> int:
    """The reference for a cut compressed TFRecord: the whole records in what zlib can inflate."""
    data = open(path, "rb").read()  # noqa: SIM115
    wbits = 16 + zlib.MAX_WBITS if compression == "gzip" else zlib.MAX_WBITS
    plain = zlib.decompressobj(wbits).decompress(data)
    count, pos = 0, 0
    while pos + 12 <= len(plain):
        length = int.from_bytes(plain[pos : pos + 8], "little")
        if pos + 16 + length > len(plain):
            break
        count, pos = count + 1, pos + 16 + length
    return count


def run_job(model: str, inputs: list[str], out, change: Callable[[], None] | None = None, **config) -> dict:
    """Plan, apply ``change`` (damage after planning), run; return the manifest."""
    keep = [] if inputs[0].endswith(".npy") else ["id"]
    plan = plan_job(ScoreConfig(model=model, inputs=inputs, output=str(out), batch_size=64, keep=keep, **config))
    if change is not None:
        change()
    return run_plan(plan, pipeline_options([], {}), progress=False).manifest


def dead_letters(out) -> pa.Table | None:
    files = sorted((out / "_errors").glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def scored_rows(out) -> pa.Table:
    """The output's rows, in unit order. The empty part file of a unit whose every row
    failed is left out: its ``--keep`` columns are typed null, not like the other parts'
    (one output schema per job is issue 10 item 13, not these tests' subject)."""
    parts = [pq.read_table(f) for f in sorted(out.glob("part-*.parquet"))]
    return pa.concat_tables([t for t in parts if t.num_rows])


def check_scored(out, model: str, rows: dict[str, np.ndarray], scored: np.ndarray, fmt: str) -> None:
    """The output holds exactly the rows ``scored`` (row indices), each equal to a direct call."""
    table = scored_rows(out)
    if fmt != "npy":
        assert table["id"].to_numpy().tolist() == rows["id"][scored].tolist()
    assert table.num_rows == len(scored)
    expected = direct_call(model, "serving_default", x=rows["x"][scored])
    assert_scores_close(np.stack(table["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
    assert_scores_close(table["label"].to_numpy(), expected["label"])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_damaged_input_costs_its_rows_not_the_job(case, models, rows, tmp_path):
    paths = shards(case.fmt, tmp_path / "in", rows)
    target = paths[case.target]
    if not case.after:
        apply(case, target, rows)
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], paths, out, (lambda: apply(case, target, rows)) if case.after else None)

    total = len(rows["id"])
    tfrecord = case.fmt.startswith("tfrecord")
    lost = case.lost
    if lost is None:  # a cut stream: the records before the damage are read, the cut one is a dead letter
        compression = "gzip" if case.fmt.endswith(".gz") else "zlib"
        good = records_before_damage(target, compression)
        assert good > 30, good  # most of the first half of the shard's 120 records
        lost = range(SPLIT + good, total)
    expected_in = (total - len(lost) + 1) if tfrecord else total  # TFRecord: as read, + the dead letter
    assert manifest["rows_in_count"] == ("as read" if tfrecord else "planned")
    assert manifest["rows_in"] == expected_in
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"]
    assert manifest["rows_out"] == total - len(lost)

    errors = dead_letters(out)
    assert errors is not None
    assert sum(errors["count"].to_pylist()) == manifest["rows_failed"]
    text = " | ".join(errors["error"].to_pylist())
    assert case.error in text, text
    assert set(errors["source"].to_pylist()) == {target}
    if not tfrecord:  # one dead letter for the unread range, named by its file rows
        first = lost.start - (SPLIT if case.target == 1 else 0)
        last = lost.stop - 1 - (SPLIT if case.target == 1 else 0)
        assert f"rows {first}-{last} unread: " in text, text
        assert errors.num_rows == 1

    scored = np.setdiff1d(np.arange(total), np.asarray(lost))
    check_scored(out, models["two_sig"], rows, scored, case.fmt)


def test_without_page_checksums_on_read_the_flipped_value_would_be_scored(rows, tmp_path):
    """The damage of ``parquet-page-crc`` is silent to a reader that does not verify: the
    case above proves the checksum, not some other failure, keeps it out of the output."""
    path = str(tmp_path / "a.parquet")
    write_parquet(path, rows)
    flip_page_data(path)
    unchecked = pq.read_table(path)  # pyarrow's default: page checksums not verified
    x = np.stack(unchecked["x"].to_numpy(zero_copy_only=False))
    assert not np.array_equal(x, rows["x"])
    assert np.array_equal(x[:60], rows["x"][:60]) and np.array_equal(x[120:], rows["x"][120:])


def test_a_gzip_stream_damaged_part_way_scores_the_records_before_it(models, rows, tmp_path):
    paths = shards("tfrecord.gz", tmp_path / "in", rows)
    flip(paths[1], os.path.getsize(paths[1]) // 2)
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], paths, out)
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"]
    assert manifest["rows_failed"] >= 1 and manifest["rows_out"] > SPLIT + 30
    errors = dead_letters(out)
    assert sum(errors["count"].to_pylist()) == manifest["rows_failed"]
    # the records before the damage, in order; a garbled one fails its CRC and is not scored
    scored = scored_rows(out)["id"].to_numpy() - rows["id"][0]
    assert (np.diff(scored) > 0).all() and scored[:SPLIT].tolist() == list(range(SPLIT))
    check_scored(out, models["two_sig"], rows, scored, "tfrecord.gz")


def test_a_flipped_byte_in_a_compressed_npz_member_is_found_before_any_row_is_scored(models, tmp_path):
    """Each unit reads the member through (its zip CRC) before it yields a row: no row of
    the damaged member is scored, each unit's rows are one dead letter."""
    rng = np.random.default_rng(3)
    rows = {"id": np.arange(2000, dtype=np.int64), "x": rng.normal(size=(2000, 4)).astype(np.float32)}
    paths = shards("npz", tmp_path / "in", rows)  # 180 good rows, then 1820 in the damaged file
    flip_npz_member(paths[1])
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], paths, out, rows_per_unit=500)
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_failed"]) == (2000, 180, 1820)
    errors = dead_letters(out)
    assert errors["error"].to_pylist() == [
        f"rows {a}-{b} unread: {paths[1]}: array 'x': damaged: Bad CRC-32 for file 'x.npy'"
        for a, b in ((0, 499), (500, 999), (1000, 1499), (1500, 1819))
    ]
    assert sum(errors["count"].to_pylist()) == 1820 and errors.num_rows == 4
    check_scored(out, models["two_sig"], rows, np.arange(180), "npz")


def test_damage_where_the_planner_reads_is_refused_up_front(models, rows, tmp_path, capsys):
    """A small npz member is read through with its header: its CRC fails on the launcher,
    and the job is refused in one line naming the file (exit 2, nothing written)."""
    from beamscore.cli import main

    paths = shards("npz", tmp_path / "in", rows)
    flip_npz_member(paths[1])
    out = tmp_path / "out"
    code = main(["score", "--model", models["two_sig"], "--output", str(out), "--input", paths[0], "--input", paths[1]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"{paths[1]}: array 'x': not a .npy array: Bad CRC-32 for file 'x.npy'" in err[0]
    assert not (out / "_manifest.json").exists()


@pytest.mark.parametrize("how", ["flag", "found"])
def test_zlib_tfrecord_by_flag_or_found_from_its_bytes(how, models, rows, tmp_path):
    paths = shards("tfrecord.zlib", tmp_path / "in", rows)
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], paths, out, compression="zlib" if how == "flag" else None)
    assert manifest["rows_in"] == manifest["rows_out"] == len(rows["id"])
    check_scored(out, models["two_sig"], rows, np.arange(len(rows["id"])), "tfrecord")


# -- empty shards are skipped for schema discovery (item 9) ------------------------------------


def test_a_zero_record_tfrecord_sorted_first_does_not_describe_the_job(models, rows, tmp_path):
    empty = write_tfrecord(str(tmp_path / "in" / "a-empty.tfrecord"), [])
    full = write_tfrecord(
        str(tmp_path / "in" / "b.tfrecord"),
        [example({"id": i, "x": x}) for i, x in zip(rows["id"], rows["x"], strict=True)],
    )
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], [empty, full], out)  # --keep id: found in b, not in a
    assert manifest["rows_in"] == manifest["rows_out"] == len(rows["id"])
    check_scored(out, models["two_sig"], rows, np.arange(len(rows["id"])), "tfrecord")


def test_a_zero_row_parquet_file_sorted_first_does_not_describe_the_job(models, rows, tmp_path):
    os.makedirs(tmp_path / "in")
    empty = str(tmp_path / "in" / "a-empty.parquet")
    # what an empty pandas frame gives: no rows, and columns of no type
    pq.write_table(pa.table({"id": pa.array([], pa.null()), "x": pa.array([], pa.null())}), empty)
    full = str(tmp_path / "in" / "b.parquet")
    write_parquet(full, rows)
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], [empty, full], out)
    assert manifest["rows_in"] == manifest["rows_out"] == len(rows["id"])
    assert manifest["units"] == 2
    check_scored(out, models["two_sig"], rows, np.arange(len(rows["id"])), "parquet")


# -- a directory matched by the glob (item 11) -------------------------------------------------


def test_a_spark_directory_matched_by_the_glob_is_read_as_its_files(models, rows, tmp_path):
    root = tmp_path / "in"
    os.makedirs(root / "part-1.parquet" / "_temporary")
    write_parquet(str(root / "part-0.parquet"), {k: v[:100] for k, v in rows.items()})
    write_parquet(
        str(root / "part-1.parquet" / "part-00000-abc-c000.snappy.parquet"), {k: v[100:200] for k, v in rows.items()}
    )
    write_parquet(
        str(root / "part-1.parquet" / "part-00001-abc-c000.snappy.parquet"), {k: v[200:] for k, v in rows.items()}
    )
    (root / "part-1.parquet" / "_SUCCESS").write_bytes(b"")
    (root / "part-1.parquet" / ".part-00000-abc-c000.snappy.parquet.crc").write_bytes(b"crc")
    (root / "part-1.parquet" / "_temporary" / "junk.parquet").write_bytes(b"not parquet")
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], [str(root / "*.parquet")], out)
    assert len(manifest["inputs"]) == 3
    assert manifest["rows_in"] == manifest["rows_out"] == len(rows["id"])
    check_scored(out, models["two_sig"], rows, np.arange(len(rows["id"])), "parquet")


def test_an_empty_directory_matched_by_the_glob_is_refused_in_one_line(models, rows, tmp_path, capsys):
    from beamscore.cli import main

    root = tmp_path / "in"
    os.makedirs(root / "part-1.parquet")
    (root / "part-1.parquet" / "_SUCCESS").write_bytes(b"")
    write_parquet(str(root / "part-0.parquet"), rows)
    out = tmp_path / "out"
    code = main(["score", "--model", models["two_sig"], "--input", str(root / "*.parquet"), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"beamscore: error: input {str(root / '*.parquet')!r} matches the directory {root / 'part-1.parquet'}, "
        "which holds no data files"
    ]
    assert not out.exists() or not any(out.iterdir())
    shutil.rmtree(root / "part-1.parquet")


def patch_footer(path: str, old: bytes, new: bytes, done: Callable[[pq.FileMetaData], bool]) -> None:
    """Replace the one occurrence of the Thrift varint ``old`` in the footer by ``new`` (of the
    same length) after which ``done(metadata)`` holds."""
    data = open(path, "rb").read()  # noqa: SIM115
    length = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - length : -8]
    for at in (i for i in range(len(footer)) if footer[i : i + len(old)] == old):
        open(path, "wb").write(data[: -8 - length] + footer[:at] + new + footer[at + len(old) :] + data[-8:])  # noqa: SIM115
        if done(pq.read_metadata(path)):
            return
    raise AssertionError(f"no footer entry {old!r} found")


def write_short_row_group(path: str, rows: dict[str, np.ndarray]) -> None:
    """300 rows in row groups of 77, the footer's entry of row group 0 patched to 90 rows
    (zigzag varints: 77 is 9a 01, 90 is b4 01)."""
    table = pa.table({"id": rows["id"], "x": pa.FixedSizeListArray.from_arrays(pa.array(rows["x"].reshape(-1)), 4)})
    pq.write_table(table, path, row_group_size=77, compression="none", use_dictionary=False, write_statistics=False)
    patch_footer(
        path, b"\x9a\x01", b"\xb4\x01", lambda m: m.row_group(0).num_rows == 90 and m.row_group(1).num_rows == 77
    )


def test_a_row_group_holding_fewer_rows_than_its_footer_counts_is_a_dead_letter_in_place(models, rows, tmp_path):
    """A footer whose row group 0 counts 90 rows (and the file 313) over pages that hold 77:
    the 13 missing rows were one dead letter at the unit's end (``rows 300-312``), so every
    later row's position was off by 13; they are ``rows 77-89``, and row group 1 starts at
    row 90 as planned."""
    path = str(tmp_path / "short.parquet")
    write_short_row_group(path, rows)
    patch_footer(path, b"\xd8\x04", b"\xf2\x04", lambda m: m.num_rows == 313)  # the file's rows: 300 -> 313
    out = tmp_path / "out"
    manifest = run_job(models["two_sig"], [path], out)
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_failed"]) == (313, 300, 13)
    errors = dead_letters(out)
    assert errors.select(["row", "count"]).to_pylist() == [{"row": 77, "count": 13}]
    assert (
        errors["error"][0].as_py() == "rows 77-89 unread: row group 0 holds 77 of the 90 rows its footer entry counts"
    )
    check_scored(out, models["two_sig"], rows, np.arange(300), "parquet")


def test_a_footer_whose_row_groups_do_not_add_up_to_its_rows_is_refused(models, rows, tmp_path, capsys):
    """Row groups counting 313 rows in a footer that says 300: pyarrow reads what the row
    groups count, so a row group counting fewer than it holds lost rows unnoticed."""
    path = str(tmp_path / "short.parquet")
    write_short_row_group(path, rows)
    with pytest.raises(
        BeamscoreError, match=r"short.parquet: damaged footer: it counts 300 rows, its 4 row groups 313"
    ):
        run_job(models["two_sig"], [path], tmp_path / "out")
