"""Read the last bytes of many files at once: the footers that planning needs.

On an object store every read is a request of 20-80 ms, so reading 20,000 Parquet footers
one after another takes minutes. :func:`fetch_tails` asks for the tails of a whole batch of
files concurrently: on an async filesystem (gcsfs, s3fs, HTTP) with one
``cat_ranges`` call, which runs up to ``concurrency`` range requests at a time on
fsspec's event loop; elsewhere (a local disk, ``memory://``) through a bounded pool of
threads. The sizes come from the listing (:class:`~beamscore.fs.FileFacts`), so a tail
costs one request and no ``info`` call.

:class:`TailFile` then serves such a tail to a reader (``pyarrow.parquet``) as if it were
the whole file, and raises :class:`OutsideTail` if the reader wants more.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from beamscore import fs as bfs

__all__ = ["DEFAULT_CONCURRENCY", "OutsideTail", "TailFile", "fetch_tails", "plan_concurrency"]

#: Range requests in flight at once (per filesystem) unless ``BEAMSCORE_PLAN_CONCURRENCY`` says.
DEFAULT_CONCURRENCY = 128


def plan_concurrency() -> int:
    """Requests in flight at once while planning: ``BEAMSCORE_PLAN_CONCURRENCY`` or the default.

    128 plans 20,000 files at 40 ms per request in about 8 s; a store (or an emulator) that
    slows down under many connections is better served with fewer."""
    value = os.environ.get("BEAMSCORE_PLAN_CONCURRENCY", "")
    return max(1, int(value)) if value.isdigit() else DEFAULT_CONCURRENCY


def fetch_tails(files: Sequence[bfs.FileFacts], nbytes: int, concurrency: int | None = None) -> list[bytes | None]:
    """The last ``nbytes`` bytes of each file (the whole file when it is smaller), in order.

    A file whose size is unknown or whose read failed gets ``None``: the caller then opens
    it the ordinary way, and that read reports the error with the file named.
    ``concurrency`` defaults to :func:`plan_concurrency`."""
    concurrency = concurrency or plan_concurrency()
    out: list[bytes | None] = [None] * len(files)
    groups: dict[int, tuple[object, list[int], list[str]]] = {}
    for i, facts in enumerate(files):
        if facts.size is None:
            continue
        fs, path = bfs.filesystem(facts.url)
        groups.setdefault(id(fs), (fs, [], []))
        groups[id(fs)][1].append(i)
        groups[id(fs)][2].append(path)
    for fs, positions, paths in groups.values():
        ends = [files[i].size for i in positions]
        starts = [max(0, end - nbytes) for end in ends]
        for i, data in zip(positions, _cat_ranges(fs, paths, starts, ends, concurrency), strict=True):
            out[i] = data if isinstance(data, bytes) else None
    return out


def _cat_ranges(fs, paths: list[str], starts: list[int], ends: list[int], concurrency: int) -> list:
    if getattr(fs, "async_impl", False):
        return fs.cat_ranges(paths, starts, ends, batch_size=concurrency, on_error="return")

    def one(args: tuple[str, int, int]) -> bytes | BaseException:
        path, start, end = args
        try:
            return fs.cat_file(path, start=start, end=end)
        except Exception as exc:  # noqa: BLE001 - reported by the caller's own read of the file
            return exc

    if bfs.is_local(fs):  # microseconds a read: a thread per file would cost more than it saves
        return [one(args) for args in zip(paths, starts, ends, strict=True)]
    with ThreadPoolExecutor(max_workers=min(concurrency, 32)) as pool:
        return list(pool.map(one, zip(paths, starts, ends, strict=True)))


class OutsideTail(Exception):
    """A reader of a :class:`TailFile` asked for bytes before the tail."""


class TailFile(io.RawIOBase):
    """A read-only file of ``size`` bytes of which only the last ``len(tail)`` are known."""

    def __init__(self, size: int, tail: bytes) -> None:
        super().__init__()
        self._size = size
        self._tail = tail
        self._start = size - len(tail)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        if self._pos < self._start and n > 0:
            raise OutsideTail(f"byte {self._pos} is before the last {len(self._tail)} bytes")
        data = self._tail[self._pos - self._start : self._pos - self._start + n]
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
