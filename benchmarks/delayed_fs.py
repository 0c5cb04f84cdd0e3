"""``delayed://``: a local directory behind an object store's latency, for planning benchmarks.

An fsspec *async* filesystem (like gcsfs and s3fs) over the local disk that sleeps
``DelayedFileSystem.delay`` seconds on every request (a listing, an ``info``, a range read)
and counts them. Concurrent requests sleep concurrently, as requests to a real store do, so
code that reads files one after another pays files x latency and code that reads them
concurrently does not. ``delayed:///tmp/x/*.parquet`` names ``/tmp/x/*.parquet``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile

__all__ = ["DelayedFileSystem", "register"]


class DelayedFileSystem(AsyncFileSystem):
    """The local filesystem, ``delay`` seconds per request."""

    protocol = "delayed"
    root_marker = "/"
    #: seconds per request (a class attribute, so that every instance fsspec makes shares it)
    delay = 0.04
    requests = 0
    #: requests sleeping now, and the most there were at once since :func:`register`
    in_flight = 0
    most_in_flight = 0
    _lock = threading.Lock()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.local = LocalFileSystem()

    @classmethod
    def _strip_protocol(cls, path):
        path = path[len("delayed://") :] if path.startswith("delayed://") else path
        return LocalFileSystem._strip_protocol(path)

    @classmethod
    def _count(cls, change: int = 1) -> None:
        """A request starts (``change`` 1: counted, and in flight) or ends (-1)."""
        with cls._lock:
            cls.requests += max(change, 0)
            cls.in_flight += change
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)

    async def _request(self) -> None:
        self._count()
        try:
            await asyncio.sleep(self.delay)
        finally:
            self._count(-1)

    async def _info(self, path, **kwargs):
        await self._request()
        return self.local.info(self._strip_protocol(path))

    async def _ls(self, path, detail=True, **kwargs):
        await self._request()
        return self.local.ls(self._strip_protocol(path), detail=detail)

    async def _cat_file(self, path, start=None, end=None, **kwargs):
        await self._request()
        return self.local.cat_file(self._strip_protocol(path), start=start, end=end)

    def _open(self, path, mode="rb", **kwargs):
        if mode != "rb":
            raise NotImplementedError("delayed:// is read-only")
        return _DelayedFile(self, self._strip_protocol(path), mode, **kwargs)


class _DelayedFile(AbstractBufferedFile):
    """A read-only file whose every range read is one delayed request."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        DelayedFileSystem._count()
        try:
            time.sleep(DelayedFileSystem.delay)
        finally:
            DelayedFileSystem._count(-1)
        return self.fs.local.cat_file(self.path, start=start, end=end)


def register(delay: float) -> None:
    """Make ``delayed://`` available with ``delay`` seconds per request; reset the count."""
    DelayedFileSystem.delay = delay
    DelayedFileSystem.requests = 0
    DelayedFileSystem.in_flight = DelayedFileSystem.most_in_flight = 0
    fsspec.register_implementation("delayed", DelayedFileSystem, clobber=True)
