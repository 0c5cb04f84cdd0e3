"""One contract for every source: the same rows written as Parquet, TFRecord (plain and GZIP),
npz, npy, Feather and ORC score to the same predictions as a direct signature call, and every format
fails the same bad inputs with one line naming the file.

Each test runs ``beamscore score`` through the CLI on the in-process Beam runner with the
``two_sig`` model (``x`` float32[None, 4] -> ``scores``, ``label``); rows are matched to the
direct call through the kept ``id`` (npy files hold one array, so they are matched by order).
"""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main

FORMATS = ["parquet", "tfrecord", "tfrecord.gz", "npz", "npy", "feather", "orc"]


def score(capsys, model: str, inputs: list[str], out: str, *extra: str) -> tuple[int, str]:
    args = ["score", "--model", model, "--output", out, "--batch-size", "64"]
    for path in inputs:
        args += ["--input", path]
    code = main([*args, *extra])
    return code, capsys.readouterr().err


def keep_id(fmt: str) -> list[str]:
    return [] if fmt == "npy" else ["--keep", "id"]


def shards(write_rows, fmt: str, root, columns: dict[str, np.ndarray], splits=(0, 180)) -> list[str]:
    """``columns`` split into files at ``splits``: shard-00, shard-01, ..."""
    bounds = [*splits, len(next(iter(columns.values())))]
    return [
        write_rows(fmt, str(root / f"shard-{i:02d}"), {k: v[a:b] for k, v in columns.items()})
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]


def check_predictions(table, model: str, rows: dict[str, np.ndarray], fmt: str) -> None:
    expected = direct_call(model, "serving_default", x=rows["x"])
    if fmt != "npy":
        ids = table["id"].to_numpy()
        order = ids - rows["id"][0]
        np.testing.assert_array_equal(ids, rows["id"][order])
    else:
        order = np.arange(table.num_rows)
    scores = np.stack(table["scores"].to_numpy(zero_copy_only=False))
    assert_scores_close(scores, expected["scores"][order])
    assert_scores_close(table["label"].to_numpy(), expected["label"][order])


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_over_two_shards_matches_a_direct_call(fmt, models, rows, write_rows, tmp_path, capsys):
    paths = shards(write_rows, fmt, tmp_path / "in", rows)
    out = str(tmp_path / "out")
    code, err = score(capsys, models["two_sig"], paths, out, *keep_id(fmt))
    assert code == 0, err
    table = read_output(out)
    assert table.num_rows == len(rows["id"])
    check_predictions(table, models["two_sig"], rows, fmt)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["input_format"] == fmt.removesuffix(".gz")
    assert manifest["rows_in"] == manifest["rows_out"] == len(rows["id"])


def test_the_same_rows_written_three_ways_give_identical_predictions(models, rows, write_rows, tmp_path, capsys):
    results = {}
    for fmt in ("parquet", "tfrecord", "npz"):
        path = write_rows(fmt, str(tmp_path / fmt / "rows"), rows)
        out = str(tmp_path / f"out-{fmt}")
        code, err = score(capsys, models["two_sig"], [path], out, "--keep", "id")
        assert code == 0, err
        results[fmt] = read_output(out)
    first = results["parquet"]
    for fmt, table in results.items():
        assert table.column_names == first.column_names, fmt
        for name in table.column_names:
            assert table[name].equals(first[name]), (fmt, name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_with_zero_rows_scores_to_an_empty_unit(fmt, models, rows, write_rows, tmp_path, capsys):
    head = {k: v[:50] for k, v in rows.items()}
    none = {k: v[:0] for k, v in rows.items()}
    paths = [
        write_rows(fmt, str(tmp_path / "in" / "shard-00"), head),
        write_rows(fmt, str(tmp_path / "in" / "shard-01"), none),
    ]
    out = str(tmp_path / "out")
    code, err = score(capsys, models["two_sig"], paths, out, *keep_id(fmt))
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == 50
    assert manifest["units"] == 2
    check_predictions(read_output(out), models["two_sig"], head, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_file(fmt, models, rows, write_rows, tmp_path, capsys):
    """Zero bytes: a valid TFRecord file of no records; for every other format an error."""
    head = {k: v[:50] for k, v in rows.items()}
    good = write_rows(fmt, str(tmp_path / "in" / "shard-00"), head)
    empty = str(tmp_path / "in" / ("shard-01" + os.path.basename(good).removeprefix("shard-00")))
    open(empty, "wb").close()
    code, err = score(capsys, models["two_sig"], [good, empty], str(tmp_path / "out"), *keep_id(fmt))
    if fmt.startswith("tfrecord"):
        assert code == 0, err
        assert read_output(str(tmp_path / "out")).num_rows == 50
    else:
        assert code == 2
        assert len(err.strip().splitlines()) == 1
        assert empty in err


def failure_text(code: int, err: str, out) -> str:
    """The one-line error of a job that stopped (exit 2), or the dead letters of one that
    finished with failed rows (exit 1): either way nothing is skipped silently."""
    assert code in (1, 2), (code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
        return err
    errors = [pq.read_table(path)["error"].to_pylist() for path in sorted((out / "_errors").glob("*.parquet"))]
    assert errors, err
    return " | ".join(e for part in errors for e in part)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_truncated_file_is_an_error_naming_it(fmt, models, rows, write_rows, tmp_path, capsys):
    path = write_rows(fmt, str(tmp_path / "in" / "shard-00"), rows)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) * 2 // 3 - 5])  # not on a record boundary: TFRecord has no footer
    code, err = score(capsys, models["two_sig"], [path], str(tmp_path / "out"), *keep_id(fmt))
    text = failure_text(code, err, tmp_path / "out")
    assert path in text
    if fmt.startswith("tfrecord") or fmt == "npy":
        assert "byte offset" in text, text


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_wrong_dtype_is_refused_before_the_job_runs(fmt, models, rows, write_rows, tmp_path, capsys):
    ints = {"id": rows["id"], "x": (rows["x"] * 10).astype(np.int64)}
    path = write_rows(fmt, str(tmp_path / "in" / "shard-00"), ints)
    code, err = score(capsys, models["two_sig"], [path], str(tmp_path / "out"), *keep_id(fmt))
    assert code == 2
    assert "int64" in err and "float32" in err and "--cast" in err, err
    assert not (tmp_path / "out" / "_manifest.json").exists()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "npy"])
def test_a_missing_feature_or_column_is_named(fmt, models, rows, write_rows, tmp_path, capsys):
    renamed = {"id": rows["id"], "features": rows["x"]}
    path = write_rows(fmt, str(tmp_path / "in" / "shard-00"), renamed)
    code, err = score(capsys, models["two_sig"], [path], str(tmp_path / "out"), *keep_id(fmt))
    assert code == 2
    assert "'x'" in err and "features" in err and "--map" in err, err
    code, err = score(capsys, models["two_sig"], [path], str(tmp_path / "out"), "--map", "x=features", "--keep", "id")
    assert code == 0, err
    check_predictions(read_output(str(tmp_path / "out")), models["two_sig"], rows, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_shard_deleted_after_planning_costs_its_rows_not_the_job(fmt, models, rows, write_rows, tmp_path):
    """Every source: the job finishes with its manifest, the lost shard is dead letters (one
    for its unread range where the row count is planned; TFRecord counts as read)."""
    from beamscore.config import ScoreConfig
    from beamscore.pipelines.plan import plan_job
    from beamscore.pipelines.runners import pipeline_options
    from beamscore.pipelines.score import run_plan

    paths = shards(write_rows, fmt, tmp_path / "in", rows)
    out = tmp_path / "out"
    plan = plan_job(
        ScoreConfig(model=models["two_sig"], inputs=paths, output=str(out), batch_size=64, keep=keep_id(fmt)[1:])
    )
    os.remove(paths[1])
    manifest = run_plan(plan, pipeline_options([], {}), progress=False).manifest
    planned = not fmt.startswith("tfrecord")
    assert manifest["rows_in"] == (300 if planned else 181)
    assert (manifest["rows_out"], manifest["rows_failed"]) == (180, 120 if planned else 1)
    errors = pq.read_table(out / "_errors" / "part-00001-00000.parquet").to_pylist()
    assert len(errors) == 1 and errors[0]["source"] == paths[1] and errors[0]["count"] == manifest["rows_failed"]
    if planned:
        assert errors[0]["error"].startswith("rows 0-119 unread: ")
    # shard 0's parts (shard 1's empty part types --keep columns null: issue 10 item 13)
    table = pa.concat_tables([pq.read_table(f) for f in sorted(out.glob("part-00000-*.parquet"))])
    check_predictions(table, models["two_sig"], {k: v[:180] for k, v in rows.items()}, fmt)
