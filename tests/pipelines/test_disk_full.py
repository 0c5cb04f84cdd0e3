"""A full disk mid-job: one line naming the path and ``No space left on device``, exit 1, no
manifest; ``--resume`` after space is freed finishes the job with every row accounted for.

The disk is a real local directory behind a small fsspec filesystem (``fullfs://``) whose
writes raise ``ENOSPC`` once a byte budget is spent, as a full disk does.
"""

from __future__ import annotations

import errno
import json
from typing import ClassVar

import builders
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import _registry as fsspec_classes  # the mutable registry behind fsspec.registry

from beamscore.cli import main


class _Budgeted:
    """A writable file whose writes draw on :attr:`FullFS.space`."""

    def __init__(self, f, path: str) -> None:
        self._f, self._path = f, path

    def write(self, data) -> int:
        size = len(memoryview(data).cast("B"))
        if size > FullFS.space:
            FullFS.space = 0
            raise OSError(errno.ENOSPC, "No space left on device", self._path)
        FullFS.space -= size
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


class FullFS(LocalFileSystem):
    """The local disk, with only :attr:`space` bytes left for writes."""

    protocol = ("fullfs",)
    space: ClassVar[int] = 1 << 40

    @classmethod
    def _strip_protocol(cls, path):
        path = path[len("fullfs://") :] if isinstance(path, str) and path.startswith("fullfs://") else path
        return super()._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return "fullfs://" + self._strip_protocol(name)

    def _open(self, path, mode="rb", *args, **kwargs):
        f = super()._open(path, mode, *args, **kwargs)
        return _Budgeted(f, path) if any(c in mode for c in "wax") else f


@pytest.fixture
def full_disk():
    fsspec.register_implementation("fullfs", FullFS, clobber=True)
    FullFS.clear_instance_cache()
    yield FullFS
    FullFS.space = 1 << 40
    fsspec_classes.pop("fullfs", None)


def test_disk_full_is_one_line_and_resume_finishes_after_space_is_freed(models, tmp_path, capsys, full_disk):
    paths, ids, _x = builders.write_parquet_shards(str(tmp_path / "in"), rows=400, shards=2, row_group_size=50)
    out = tmp_path / "out"
    args = ["score", "--model", models["two_sig"], "--output", f"fullfs://{out}", "--keep", "id"]
    args += ["--rows-per-unit", "50", "--input", paths[0], "--input", paths[1]]
    full_disk.space = 12_000  # room for the job file and a few units, not for all eight
    assert main(args) == 3  # crashed: nothing committed past the receipts
    # the last line is ours (Beam's in-process runner also logs the worker's traceback)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    # file and unit, stage, the OS error and the path it was writing
    assert any(last.startswith(f"beamscore: error: the job failed: {p} (part-0000{i}-") for i, p in enumerate(paths))
    assert ": write: OSError: [Errno 28] No space left on device" in last and str(out) in last
    assert not (out / "_manifest.json").exists()
    done = sorted(p.name for p in (out / "_units").glob("part-*.json"))
    assert 0 < len(done) < 8

    full_disk.space = 1 << 40  # space freed
    code = main([*args, "--resume"])
    assert code == 0, capsys.readouterr().err.strip().splitlines()[-1]
    m = json.loads((out / "_manifest.json").read_text())
    assert (m["rows_in"], m["rows_out"], m["rows_failed"], m["units"]) == (400, 400, 0, 8)
    assert m["units_resumed"] == len(done)
    table = pa.concat_tables([pq.read_table(str(out / f.rsplit("/", 1)[-1])) for f in m["outputs"]])
    assert table["id"].to_pylist() == ids.tolist()
