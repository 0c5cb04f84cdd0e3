"""``beamscore.fs.list_files``: each input file's size and version from one listing."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import fsspec.implementations.local
import pytest

from beamscore import fs as bfs


def test_local_files_get_size_and_mtime_sorted_without_hidden_files(tmp_path):
    for name, data in (("b.parquet", b"12345"), ("a.parquet", b"1"), ("_SUCCESS", b""), (".a.crc", b"x")):
        (tmp_path / name).write_bytes(data)
    facts = bfs.list_files([str(tmp_path / "*")])
    assert [(os.path.basename(f.url), f.size) for f in facts] == [("a.parquet", 1), ("b.parquet", 5)]
    assert facts[0].version == f"mtime:{os.stat(tmp_path / 'a.parquet').st_mtime}"
    assert facts[0].to_json() == {"url": facts[0].url, "size": 1, "version": facts[0].version}
    assert bfs.expand_globs([str(tmp_path / "*")]) == [f.url for f in facts]


def test_a_rewritten_file_gets_another_version(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"a")
    (before,) = bfs.list_files([str(path)])
    os.utime(path, (1, 2))
    (after,) = bfs.list_files([str(path)])
    assert before.url == after.url and before.version != after.version == "mtime:2.0"


def test_memory_files_are_listed_with_their_urls_and_sizes():
    fs = fsspec.filesystem("memory")
    fs.pipe({"/facts/d/1.bin": b"abc", "/facts/d/2.bin": b"de"})
    facts = bfs.list_files(["memory://facts/d"])
    assert [(f.url, f.size) for f in facts] == [("memory:///facts/d/1.bin", 3), ("memory:///facts/d/2.bin", 2)]
    assert all(f.version for f in facts)
    fs.rm("/facts", recursive=True)


class _TornWrites(fsspec.implementations.local.LocalFileSystem):
    """A filesystem that is neither local nor an object store, whose writes stop half-way."""

    protocol = ("torn",)

    def _open(self, path, mode="rb", *args, **kwargs):
        f = super()._open(path, mode, *args, **kwargs)
        if "w" in mode:
            real_write = f.write

            def write(data):
                real_write(bytes(data)[: len(data) // 2])
                raise OSError(28, "No space left on device", path)

            f.write = write
        return f


def test_write_atomic_on_other_filesystems_never_leaves_a_torn_file(tmp_path):
    fs = _TornWrites()
    final = str(tmp_path / "_units" / "part-00000-00000.json")
    os.makedirs(os.path.dirname(final))
    with open(final, "w") as f:
        f.write('{"old": 1}')
    with pytest.raises(OSError, match="No space left"):
        bfs.write_atomic(fs, final, b'{"new": 2}', str(tmp_path / "_temporary"))
    assert Path(final).read_text() == '{"old": 1}'  # the old receipt, whole
    assert not os.listdir(tmp_path / "_temporary")  # and no temporary file left
    assert not bfs.is_object_store(fs) and not bfs.is_local(fs)
    assert bfs.is_object_store(fsspec.filesystem("memory"))


def test_a_file_whose_name_has_glob_characters_is_that_file(tmp_path):
    for name in ("data[1].parquet", "data1.parquet", "q?.parquet", "qa.parquet", "what*"):
        (tmp_path / name).write_bytes(b"x")
    listed = lambda pattern: [os.path.basename(u) for u in bfs.expand_globs([str(tmp_path / pattern)])]  # noqa: E731
    assert listed("data[1].parquet") == ["data[1].parquet"]  # not data1.parquet, which the glob matches
    assert listed("q?.parquet") == ["q?.parquet", "qa.parquet"]  # without [: a pattern when it matches
    assert listed("data[12].parquet") == ["data1.parquet"]  # no such file: a pattern
    assert listed("*.parquet") == ["data1.parquet", "data[1].parquet", "q?.parquet", "qa.parquet"]
    assert listed("what*") == ["what*"]
    with pytest.raises(bfs.BeamscoreError, match=r"matches no files"):
        bfs.expand_globs([str(tmp_path / "nothing[0-9].parquet")])


def test_a_directory_input_skips_hidden_names_at_every_level(tmp_path):
    """An earlier job's ``_units/`` receipts and a ``.git`` or ``_temporary`` directory are not data."""
    for name in ("a.parquet", "sub/b.parquet", "_units/part-00000-00000.json", ".git/HEAD", "sub/_temporary/x"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listed = [os.path.relpath(u, tmp_path) for u in bfs.expand_globs([str(tmp_path)])]
    assert listed == ["a.parquet", "sub/b.parquet"]


def test_a_delta_lake_table_directory_is_listed_as_files_and_left_to_the_stale_read_step(tmp_path):
    """Listing is listing: the refusal of files inside a table (Delta, Iceberg, Hudi) is the
    planning step "stale reads" (beamscore.tables.detect, tests/tables/test_detect.py), so
    that --raw-files can read them on purpose."""
    table = tmp_path / "events"
    (table / "_delta_log").mkdir(parents=True)
    (table / "_delta_log" / "00000000000000000000.json").write_text('{"add": {"path": "part-0.parquet"}}\n')
    for name in ("part-0.parquet", "part-1.parquet"):
        (table / name).write_bytes(b"PAR1")
    listed = [os.path.basename(f.url) for f in bfs.list_files([str(table)])]
    assert listed == ["part-0.parquet", "part-1.parquet"]
