"""Job integrity at the edges of a job: what ``--overwrite`` removes, inputs rewritten under a
``--resume``, damaged control files, and links planted in an output directory.

Every test runs real ``beamscore score`` jobs (in process, DirectRunner) on real files.
"""

from __future__ import annotations

import io
import json
import os

import builders
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import direct_call
from s3_server import s3_store
from scores import assert_scores_close

from beamscore.cli import main


@pytest.fixture
def data(tmp_path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Two small Parquet shards of this test's own (some tests rewrite them)."""
    return builders.write_parquet_shards(str(tmp_path / "in"), rows=200, shards=2, row_group_size=50)


def score(model: str, inputs: list[str], out, *extra: str) -> int:
    args = ["score", "--model", model, "--output", str(out), "--keep", "id", "--rows-per-unit", "50", *extra]
    for path in inputs:
        args += ["--input", path]
    return main(args)


def check_result(out, model: str, ids: np.ndarray, x: np.ndarray) -> None:
    """The output holds every row, scored as a direct call scores it; the manifest adds up."""
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["rows_in"], m["rows_out"], m["rows_failed"]) == (len(ids), len(ids), 0)
    table = pa.concat_tables([pq.read_table(f) for f in m["outputs"]])
    assert table["id"].to_pylist() == ids.tolist()
    want = direct_call(model, "serving_default", x=x)
    for key, value in want.items():
        assert_scores_close(np.stack(table[key].to_numpy(zero_copy_only=False)).reshape(value.shape), value)


USER_FILES = {
    "part-of-thesis.docx": "chapter 1",
    "part-archive/important.csv": "a,b\n1,2\n",
    "part-00099-00000.parquet": "not a parquet file, and no job of ours wrote it",
    "_temporary/mine.txt": "my scratch notes",
    "_units/notes.md": "what I ran",
    "_errors/README": "errors go here",
    "scores/part-00000-00000.npy": "a user's npy-looking file",
}


def test_overwrite_removes_only_what_the_earlier_job_recorded(models, data, tmp_path, capsys):
    paths, ids, x = data
    out = tmp_path / "out"
    assert score(models["two_sig"], paths, out) == 0
    first = sorted(os.listdir(out))
    assert "part-00000-00000.parquet" in first and not (out / "_claim.json").exists()
    for name, text in USER_FILES.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    leftover = out / "_temporary" / f"part-00001-00001.{'ab' * 16}.parquet"  # a temp file of a killed run
    leftover.write_bytes(b"half a file")
    capsys.readouterr()

    # the refused run removes nothing; --overwrite then replaces beamscore's files only
    assert score(models["two_sig"], paths, out) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert score(models["two_sig"], paths, out, "--overwrite") == 0
    err = capsys.readouterr().err
    assert f"--overwrite left {len(USER_FILES)} file(s) beamscore did not write" in err
    assert "_temporary/mine.txt" in err and "(and 2 more)" in err
    for name, text in USER_FILES.items():
        assert (out / name).read_text() == text, name
    assert not leftover.exists()
    check_result(out, models["two_sig"], ids, x)
    assert not (out / "_claim.json").exists()


def test_overwrite_refuses_a_foreign_file_where_the_job_will_write_unless_force(models, data, tmp_path, capsys):
    paths, ids, x = data
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-00000-00001.parquet").write_text("someone else's file at one of our names")
    (out / "keep-me.txt").write_text("mine")
    assert score(models["two_sig"], paths, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "holds 1 file(s) that no earlier beamscore job recorded where this job will write" in err
    assert "part-00000-00001.parquet" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert (out / "part-00000-00001.parquet").read_text().startswith("someone else's")
    assert score(models["two_sig"], paths, out, "--overwrite", "--force") == 0
    check_result(out, models["two_sig"], ids, x)
    assert (out / "keep-me.txt").read_text() == "mine"


def test_resume_refuses_inputs_rewritten_in_place(models, data, tmp_path, capsys):
    paths, ids, x = data
    out = tmp_path / "out"
    assert score(models["two_sig"], paths, out) == 0
    job = json.loads((out / "_units" / "_job.json").read_text())
    assert set(job["input_versions"]) == set(paths) and all(
        v["version"].startswith("mtime:") for v in job["input_versions"].values()
    )
    (out / "_manifest.json").unlink()  # as if killed before the end
    (out / "_units" / "part-00001-00000.json").unlink()
    # the second shard is rewritten at the same path: same schema and row groups, other values
    half = len(ids) // 2
    x[half:] = -x[half:]
    table = pq.read_table(paths[1])
    flipped = pa.FixedSizeListArray.from_arrays(pa.array(x[half:].reshape(-1)), x.shape[1])
    stat = os.stat(paths[1])
    pq.write_table(table.set_column(table.schema.get_field_index("x"), "x", flipped), paths[1], row_group_size=50)
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    capsys.readouterr()
    assert score(models["two_sig"], paths, out, "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--resume: input {paths[1]} changed since" in err and "version was mtime:" in err and "--overwrite" in err
    assert score(models["two_sig"], paths, out, "--overwrite") == 0
    check_result(out, models["two_sig"], ids, x)


def test_torn_job_file_is_one_line_saying_how_to_recover(models, data, tmp_path, capsys):
    paths, ids, x = data
    out = tmp_path / "out"
    (out / "_units").mkdir(parents=True)
    for torn in (b"", b'{"model_fingerprint": "ab'):
        (out / "_units" / "_job.json").write_bytes(torn)
        assert score(models["two_sig"], paths, out, "--resume") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "JSONDecodeError" not in err
        assert "_units/_job.json is " in err and "pass --overwrite to start it again" in err
    assert score(models["two_sig"], paths, out, "--overwrite") == 0
    check_result(out, models["two_sig"], ids, x)
    assert json.loads((out / "_units" / "_job.json").read_text())["units"]
    assert not (out / "_temporary").exists()


def test_planted_links_are_replaced_or_refused_never_written_through(models, data, tmp_path, capsys):
    paths, ids, x = data
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("precious")

    # a link at a part name and at a receipt of an unfinished job: replaced by the resume
    out = tmp_path / "out"
    assert score(models["two_sig"], paths, out) == 0
    (out / "_manifest.json").unlink()
    for name in ("part-00000-00001.parquet", "_units/part-00000-00001.json"):
        (out / name).unlink()
        os.symlink(victim, out / name)
    assert score(models["two_sig"], paths, out, "--resume") == 0, capsys.readouterr().err
    assert victim.read_text() == "precious"
    assert (
        not (out / "part-00000-00001.parquet").is_symlink() and not (out / "_units/part-00000-00001.json").is_symlink()
    )
    check_result(out, models["two_sig"], ids, x)

    # a link at a fresh output's part name: a foreign file where the job writes, --force replaces the link
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    os.symlink(victim, fresh / "part-00000-00000.parquet")
    assert score(models["two_sig"], paths, fresh, "--overwrite") == 2
    assert score(models["two_sig"], paths, fresh, "--overwrite", "--force") == 0
    assert victim.read_text() == "precious" and not (fresh / "part-00000-00000.parquet").is_symlink()

    # a link in place of a directory the job writes into: refused before anything is written
    for name in ("_units", "_temporary", "scores"):
        linked = tmp_path / f"linked-{name}"
        linked.mkdir()
        os.symlink(outside, linked / name)
        capsys.readouterr()
        fmt = ["--output-format", "npy"] if name == "scores" else []
        assert score(models["two_sig"], paths, linked, "--resume", *fmt) == 2
        err = capsys.readouterr().err
        assert f"{name} is a symbolic link" in err and "does not write through links" in err
        assert sorted(os.listdir(outside)) == ["victim"]


def test_run_outdir_replaces_a_planted_link(models, tmp_path, capsys):
    outside = tmp_path / "victim.npy"
    outside.write_text("precious")
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    dangling = tmp_path / "nowhere.npy"
    os.symlink(outside, outdir / "scores.npy")
    args = ["run", models["two_sig"], "--input-exprs", "x=[[1.0,2.0,3.0,4.0]]", "--outdir", str(outdir)]
    assert main(args) == 2  # it exists (as a link): refused without --overwrite
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert outside.read_text() == "precious" and not (outdir / "scores.npy").is_symlink()
    assert_scores_close(
        np.load(outdir / "scores.npy"),
        direct_call(models["two_sig"], "serving_default", x=np.array([[1.0, 2.0, 3.0, 4.0]], np.float32))["scores"],
    )
    # a dangling link is an existing name too, and is never followed to create its target
    (outdir / "scores.npy").unlink()
    os.symlink(dangling, outdir / "scores.npy")
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0
    assert not dangling.exists() and not (outdir / "scores.npy").is_symlink()


def test_names_too_long_for_the_filesystem_are_refused_before_the_job(models, tmp_path, capsys):
    long = "k" * 300
    x = np.random.default_rng(3).normal(size=(20, 4)).astype(np.float32)
    data = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4), long: np.arange(20)}), data
    )
    out = tmp_path / "out"
    args = ["score", "--model", models["two_sig"], "--input", str(data), "--output", str(out), "--keep", long]
    assert main([*args, "--output-format", "npy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--keep column 'kkkk" in err and "(300 characters)" in err and "longer than the 255 bytes" in err
    assert not out.exists()
    # in Parquet the name is a column, not a file name: fine
    assert main(args) == 0
    assert pq.read_table(out / "part-00000-00000.parquet")[long].to_pylist() == list(range(20))


def test_resume_sees_an_object_rewritten_on_s3(models, data, tmp_path, capsys):
    paths, _ids, x = data
    with s3_store():
        fs = fsspec.filesystem("s3")
        fs.mkdir("inputs-bucket")
        urls = []
        for path in paths:
            fs.put_file(path, f"inputs-bucket/{os.path.basename(path)}")
            urls.append(f"s3://inputs-bucket/{os.path.basename(path)}")
        out = tmp_path / "out"
        assert score(models["two_sig"], urls, out) == 0
        versions = json.loads((out / "_units" / "_job.json").read_text())["input_versions"]
        assert all(v["version"].startswith("etag:") for v in versions.values())
        (out / "_manifest.json").unlink()
        table = pq.read_table(paths[0])
        flipped = pa.FixedSizeListArray.from_arrays(pa.array(-x[: len(x) // 2].reshape(-1)), x.shape[1])
        buffer = io.BytesIO()
        pq.write_table(table.set_column(table.schema.get_field_index("x"), "x", flipped), buffer, row_group_size=50)
        fs.pipe_file(urls[0][len("s3://") :], buffer.getvalue())
        capsys.readouterr()
        assert score(models["two_sig"], urls, out, "--resume") == 2
        err = capsys.readouterr().err
        assert f"--resume: input {urls[0]} changed since" in err and "version was etag:" in err


def test_an_output_where_an_input_reads_is_refused_before_the_job(models, data, tmp_path, capsys):
    """``--input DIR --output DIR/scores`` scores once, then the rerun (``--overwrite``,
    tomorrow's schedule) would read its own part files: refused up front, nothing written."""
    _paths, ids, x = data
    inside = tmp_path / "in" / "scores"
    for pattern in (str(tmp_path / "in"), str(tmp_path / "in" / "*")):
        assert score(models["two_sig"], [pattern], inside) == 2
        line = capsys.readouterr().err.strip()
        assert line.startswith(f"beamscore: error: output {inside} overlaps --input {pattern} (as real paths: ")
        assert line.endswith("the next run would read its part files; score into a directory apart from the inputs")
        assert not inside.exists()
    # a glob that cannot match the output's part files is fine, on every run
    assert score(models["two_sig"], [str(tmp_path / "in" / "*.parquet")], inside) == 0
    check_result(inside, models["two_sig"], ids, x)
    assert score(models["two_sig"], [str(tmp_path / "in" / "*.parquet")], inside, "--overwrite") == 0
