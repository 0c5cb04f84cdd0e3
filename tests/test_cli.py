"""End-to-end: ``beamscore score`` through the CLI entry point on a real Beam runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main


def score(*args: str) -> int:
    return main(["score", *args])


def test_scores_every_row_like_a_direct_call(models, shards, tmp_path, capsys):
    paths, ids, x = shards
    out = tmp_path / "out"
    code = score(
        "--model",
        models["two_sig"],
        "--input",
        os.path.dirname(paths[0]) + "/*.parquet",
        "--output",
        str(out),
        "--keep",
        "id",
        "name",
        "--batch-size",
        "100",
    )
    assert code == 0, capsys.readouterr().err
    table = read_output(str(out))
    assert table.column_names == ["label", "scores", "id", "name"]
    assert table["id"].to_numpy().tolist() == ids.tolist()  # input order, shard by shard
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack(table["scores"].to_numpy(zero_copy_only=False)), expected["scores"])
    assert_scores_close(table["label"].to_numpy(), expected["label"])
    assert table["name"].to_pylist()[:2] == ["row-1000", "row-1001"]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_failed"] == len(ids)
    assert manifest["model"]["signature"] == "serving_default"
    assert manifest["model"]["fingerprint"]
    assert sorted(os.path.basename(f) for f in manifest["outputs"]) == [
        "part-00000-00000.parquet",
        "part-00001-00000.parquet",
    ]
    assert set(manifest["versions"]) >= {"beamscore", "tensorflow", "apache_beam"}
    assert manifest["device"] == "CPU"
    assert "scored 700 rows" in capsys.readouterr().out


def test_named_signature_with_rank3_output_and_file_metadata(models, shards, tmp_path):
    paths, _ids, x = shards
    out = tmp_path / "out"
    assert (
        score(
            "--model",
            models["two_sig"],
            "--signature",
            "embed",
            "--input",
            paths[0],
            "--output",
            str(out),
            "--keep",
            "id",
        )
        == 0
    )
    table = pq.read_table(out / "part-00000-00000.parquet")
    assert isinstance(table.schema.field("embedding").type, pa.FixedShapeTensorType)
    assert table.schema.field("embedding").type.shape == [2, 4]
    n = table.num_rows
    expected = direct_call(models["two_sig"], "embed", x=x[:n])
    assert_scores_close(table["embedding"].combine_chunks().to_numpy_ndarray(), expected["embedding"])
    assert_scores_close(table["norm"].to_numpy(), expected["norm"])
    meta = json.loads(table.schema.metadata[b"beamscore"])
    assert meta["signature"] == "embed" and meta["fingerprint"]
    assert meta["model_path"] == models["two_sig"]


def test_keras_export_and_map(models, shards, tmp_path):
    paths, ids, x = shards
    out = tmp_path / "out"
    assert (
        score(
            "--model", models["keras"], "--input", paths[1], "--output", str(out), "--map", "features=x", "--keep", "id"
        )
        == 0
    )
    table = read_output(str(out))
    rows = np.isin(ids, table["id"].to_numpy())
    expected = direct_call(models["keras"], "serving_default", features=x[rows])
    assert_scores_close(np.stack(table["output_0"].to_numpy(zero_copy_only=False)), expected["output_0"])


def test_flat_column_is_reshaped_to_image(models, tmp_path):
    rng = np.random.default_rng(1)
    images = rng.random((50, 8, 8, 3), dtype=np.float32)
    data = tmp_path / "images.parquet"
    pq.write_table(pa.table({"image": pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1)), 192)}), data)
    out = tmp_path / "out"
    assert score("--model", models["image"], "--input", str(data), "--output", str(out)) == 0
    got = np.stack(read_output(str(out))["mean"].to_numpy(zero_copy_only=False))
    assert_scores_close(got, direct_call(models["image"], "serving_default", image=images)["mean"])


def test_lossless_casts_and_variable_lists(models, tmp_path):
    a = np.arange(20, dtype=np.int32)
    b = np.random.default_rng(2).random((20, 2)).astype(np.float16)
    data = tmp_path / "mixed.parquet"
    b_lists = pa.array([list(r) for r in b.astype(np.float32)], type=pa.list_(pa.float32()))
    pq.write_table(pa.table({"a": a, "b": b_lists}), data)
    # int32 -> int64 is lossless; b is a variable-length list column of equal lengths
    out = tmp_path / "out"
    assert score("--model", models["mixed"], "--input", str(data), "--output", str(out)) == 0
    got = read_output(str(out))["out"].to_numpy()
    expected = direct_call(models["mixed"], "serving_default", a=a.astype(np.int64), b=b.astype(np.float32))
    assert_scores_close(got, expected["out"])


def test_float16_is_cast_silently(models, tmp_path):
    a = np.arange(10, dtype=np.int64)
    b = np.random.default_rng(3).random((10, 2)).astype(np.float16)
    data = tmp_path / "half.parquet"
    pq.write_table(pa.table({"a": a, "b": pa.FixedSizeListArray.from_arrays(pa.array(b.reshape(-1)), 2)}), data)
    out = tmp_path / "out"
    assert score("--model", models["mixed"], "--input", str(data), "--output", str(out)) == 0
    expected = direct_call(models["mixed"], "serving_default", a=a, b=b.astype(np.float32))
    assert_scores_close(read_output(str(out))["out"].to_numpy(), expected["out"])


def test_float64_refused_without_cast_and_accepted_with_it(models, tmp_path, capsys):
    x = np.random.default_rng(4).random((30, 4))
    data = tmp_path / "f64.parquet"
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4)}), data)
    out = tmp_path / "out"
    assert score("--model", models["two_sig"], "--input", str(data), "--output", str(out)) == 2
    err = capsys.readouterr().err
    assert "column 'x' has dtype float64" in err and "expects float32" in err and "--cast" in err
    assert not out.exists() or not os.listdir(out)
    assert score("--model", models["two_sig"], "--input", str(data), "--output", str(out), "--cast") == 0
    expected = direct_call(models["two_sig"], "serving_default", x=x.astype(np.float32))
    assert_scores_close(np.stack(read_output(str(out))["scores"].to_numpy(zero_copy_only=False)), expected["scores"])


def test_versioned_base_dir_uses_highest_and_version_flag(models, shards, tmp_path):
    paths, _, _ = shards
    out = tmp_path / "out"
    assert score("--model", models["versioned"], "--input", paths[0], "--output", str(out)) == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["model"]["version"] == "2"
    assert (
        score(
            "--model", models["versioned"], "--version", "1", "--input", paths[0], "--output", str(out), "--overwrite"
        )
        == 0
    )
    assert json.loads((out / "_manifest.json").read_text())["model"]["version"] == "1"


def test_config_file_with_flag_override(models, shards, tmp_path):
    paths, _ids, _ = shards
    out = tmp_path / "out"
    config = tmp_path / "job.yaml"
    config.write_text(
        f"model:\n  path: {models['two_sig']}\n  signature: embed\n"
        f"input:\n  paths: [{paths[0]}]\n  keep: [id]\n"
        f"output:\n  path: {tmp_path / 'ignored'}\n  outputs: [norm]\n"
        "batch:\n  size: 64\n"
        "pipeline_options:\n  runner: DirectRunner\n"
    )
    assert main(["score", "--config", str(config), "--output", str(out)]) == 0
    table = read_output(str(out))
    assert table.column_names == ["norm", "id"]
    assert json.loads((out / "_manifest.json").read_text())["batch_size"] == 64
    assert not (tmp_path / "ignored").exists()


def test_shipped_local_config_is_valid(models, shards, tmp_path):
    from beamscore.config import load_yaml

    config = load_yaml(os.path.join(os.path.dirname(__file__), "..", "configs", "local.yaml"))
    assert config.model and config.inputs and config.output


def test_empty_file_gives_empty_output(models, tmp_path):
    data = tmp_path / "empty.parquet"
    schema = pa.schema([("x", pa.list_(pa.float32(), 4)), ("id", pa.int64())])
    pq.write_table(schema.empty_table(), data)
    out = tmp_path / "out"
    args = ("--model", models["two_sig"], "--input", str(data), "--output", str(out), "--keep", "id")
    assert score(*args) == 75  # no rows yet: try again later, nothing written (see test_scheduled)
    assert not (out / "_manifest.json").exists()
    assert score(*args, "--allow-empty") == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == 0


def test_big_file_is_split_into_units(models, tmp_path):
    import builders

    paths, ids, _x = builders.write_parquet_shards(str(tmp_path / "data"), rows=1000, shards=1, row_group_size=100)
    out = tmp_path / "out"
    assert (
        score(
            "--model",
            models["two_sig"],
            "--input",
            paths[0],
            "--output",
            str(out),
            "--keep",
            "id",
            "--rows-per-unit",
            "300",
        )
        == 0
    )
    files = sorted(f for f in os.listdir(out) if f.startswith("part-"))
    assert files == [f"part-00000-0000{i}.parquet" for i in range(4)]  # row groups 3+3+3+1
    assert read_output(str(out))["id"].to_numpy().tolist() == ids.tolist()


# --- errors: one line, exit code 2, before any worker starts ------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/model"], "model '/nonexistent/model' does not exist"),
        (["--signature", "classify"], "signature 'classify' not found in"),
        (["--tag-set", "serve,gpu"], "tag set 'gpu,serve' not found in"),
        (["--map", "x=nope"], "no column 'nope' for signature input 'x'"),
        (["--keep", "nope"], "no column 'nope' to --keep"),
        (["--outputs", "nope"], "--outputs nope not produced by signature 'serving_default'"),
    ],
)
def test_errors_before_the_job(models, shards, tmp_path, capsys, args, message):
    paths, _, _ = shards
    base = {"--model": models["two_sig"], "--input": paths[0], "--output": str(tmp_path / "out")}
    argv = []
    overridden = set(args[::2])
    for flag, value in base.items():
        if flag not in overridden:
            argv += [flag, value]
    assert score(*argv, *args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_error_lists_available_signatures_and_columns(models, shards, tmp_path, capsys):
    paths, _, _ = shards
    assert (
        score("--model", models["two_sig"], "--signature", "nope", "--input", paths[0], "--output", str(tmp_path)) == 2
    )
    assert "available: embed, serving_default" in capsys.readouterr().err
    assert score("--model", models["keras"], "--input", paths[0], "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "no column 'features' for signature input 'features'; columns: id, name, x" in err


def test_not_a_saved_model(tmp_path, shards, capsys):
    (tmp_path / "m").mkdir()
    assert score("--model", str(tmp_path / "m"), "--input", shards[0][0], "--output", str(tmp_path / "o")) == 2
    assert "is not a SavedModel: no saved_model.pb" in capsys.readouterr().err


def test_shape_that_cannot_fit(models, shards, tmp_path, capsys):
    assert (
        score("--model", models["image"], "--input", shards[0][0], "--map", "image=x", "--output", str(tmp_path / "o"))
        == 2
    )
    err = capsys.readouterr().err
    assert "column 'x' has 4 values per row" in err and "(-1, 8, 8, 3)" in err


def test_output_exists_refused_without_overwrite(models, shards, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", models["two_sig"], "--input", shards[0][0], "--output", str(out)]
    assert score(*args) == 0
    assert score(*args) == 2
    assert "is not empty: it holds a finished result (_manifest.json); pass --overwrite" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert score(*args, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes only beamscore's files
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert score("--model", models["two_sig"], "--input", shards[0][0], "--output", str(mine)) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "is not empty: it holds files no beamscore job recorded (notes.txt); score into a new directory, "
            "or pass --overwrite to write beside them (it removes only what an earlier beamscore job recorded)"
        )
    )


def test_runtime_error_names_file_and_rows(models, tmp_path, capsys):
    data = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"x": pa.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0]], type=pa.list_(pa.float32()))}), data)
    # the bad row is a dead letter (issue 4): the job finishes, then exits 1 because a row failed
    assert score("--model", models["two_sig"], "--input", str(data), "--output", str(tmp_path / "o")) == 1
    manifest = json.loads((tmp_path / "o" / "_manifest.json").read_text())
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_failed"]) == (2, 1, 1)
    errors = pq.read_table(tmp_path / "o" / "_errors" / "part-00000-00000.parquet").to_pylist()
    assert [(e["source"], e["row"]) for e in errors] == [(str(data), 1)]
    assert "column 'x' has 2 values, input 'x' takes 4 per row" in errors[0]["error"]


def test_console_script_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "beamscore",
            "score",
            "--model",
            str(tmp_path / "missing"),
            "--input",
            "x.parquet",
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"beamscore: error: model '{tmp_path / 'missing'}' does not exist"
    assert "Traceback" not in result.stderr


def test_debug_shows_traceback(tmp_path, capsys):
    assert score("--model", str(tmp_path / "missing"), "--input", "x", "--output", "o", "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_beam_options_with_space_separated_values(models, shards, tmp_path):
    out = tmp_path / "out"
    assert score("--model", models["two_sig"], "--input", shards[0][0], "--output", str(out),
                 "--direct_running_mode", "in_memory", "--job_name", "nightly") == 0  # fmt: skip
    assert json.loads((out / "_manifest.json").read_text())["rows_out"] > 0


def test_stray_argument_is_refused(models, shards, tmp_path, capsys):
    args = ["--model", models["two_sig"], "--input", shards[0][0], "--output", str(tmp_path / "o")]
    assert score(*args, "--direct_running_mode=in_memory", "extra.parquet") == 2
    assert "unexpected argument 'extra.parquet'; inputs are given with --input" in capsys.readouterr().err


def test_main_in_a_host_process_gives_back_its_loggers(models, capsys):
    """A host that calls ``main()`` (a notebook, a scheduler's Python task) keeps its own
    logging: the filter a command puts on the root handlers and the levels it gives Beam's,
    absl's and TensorFlow's loggers are taken back when the command returns."""
    import logging

    root = logging.getLogger()
    host = logging.StreamHandler()
    root.addHandler(host)
    names = ("apache_beam", "absl", "tensorflow")
    before = {name: logging.getLogger(name).level for name in names}
    try:
        assert main(["show", models["two_sig"]]) == 0
        assert host.filters == []
        assert {name: logging.getLogger(name).level for name in names} == before
    finally:
        root.removeHandler(host)


@pytest.mark.parametrize(
    ("stray", "content", "said"),
    [
        (
            "model/fingerprint.pb",
            b"\x08\x96\x01\x10\xa7\x9f\xd5\x02" * 8,
            "not Parquet, nor any format beamscore reads (TFRecord, .npz, .npy, Feather, ORC)",
        ),
        ("notes/notes.parquet", b"id,x\n1,2\n", "a text file (CSV, JSON?), not Parquet"),
    ],
)
def test_a_stray_file_among_parquet_inputs_is_named_with_what_it_is(
    models, shards, tmp_path, capsys, stray, content, said
):
    """A directory given as --input that also holds another file (a model's fingerprint.pb,
    a CSV named .parquet) is refused in one line saying what the file is and the way out,
    not as a damaged Parquet file ("magic bytes not found in footer")."""
    folder = tmp_path / "inputs"
    (folder / "data").mkdir(parents=True)
    (folder / stray).parent.mkdir()
    shutil.copy(shards[0][0], folder / "data" / "shard.parquet")  # listed first: the job's format
    (folder / stray).write_bytes(content)
    out = tmp_path / "out"
    code = score(models["two_sig"], "--input", str(folder), "--output", str(out), "--no-progress")
    err = capsys.readouterr().err
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line == f"beamscore: error: {folder / stray}: {said}; leave it out of --input"
    assert not out.exists()
