"""What the tests' server processes share (GCS emulator, moto S3, Dask, Beam's job service):
a free loopback port, the venv's console scripts, and stopping processes without leaks; and
two misbehaving servers for stalled-store tests (a blackhole, a proxy that holds PUTs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

__all__ = ["blackhole_server", "free_port", "holding_proxy", "stop", "venv_script"]


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def venv_script(name: str) -> list[str]:
    """The command of a console script: this interpreter's venv first, then ``PATH``."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    return [script] if os.path.exists(script) else [shutil.which(name) or name]


def stop(processes: Iterable[subprocess.Popen], timeout: float = 10) -> None:
    """Terminate all at once, then wait (a graceful close can take seconds); kill stragglers."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@contextmanager
def blackhole_server() -> Iterator[str]:
    """A loopback server that accepts connections and reads what it is sent, and never
    answers (a stalled store, a proxy that lost its upstream); yields ``http://127.0.0.1:PORT``."""
    with _serving(_swallow) as url:
        yield url


@contextmanager
def holding_proxy(upstream: str, hold: str = "") -> Iterator[str]:
    """A loopback HTTP proxy to ``upstream`` that never answers a ``PUT`` whose path contains
    ``hold``: one sent with ``Expect: 100-continue`` never gets its ``100 Continue``, one
    without has its body read and no reply. Every other request is passed on (one upstream
    connection each, ``Connection: close``). Yields ``http://127.0.0.1:PORT``."""
    target = urlsplit(upstream)

    def handle(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                return
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if method == "PUT" and hold in path:
            _swallow(conn)
            return

        def more() -> bytes:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("the client went")
            return chunk

        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            at = 0  # walk the chunks: SIZE\r\nDATA\r\n ... 0\r\n[trailers]\r\n
            while True:
                while b"\r\n" not in body[at:]:
                    body += more()
                line_end = body.index(b"\r\n", at)
                size = int(body[at:line_end].split(b";")[0], 16)
                if size == 0:
                    while not body.endswith(b"\r\n\r\n") or len(body) < line_end + 4:
                        body += more()
                    break
                at = line_end + 2 + size + 2
                while len(body) < at:
                    body += more()
        else:
            length = int(headers.get("content-length", "0") or 0)
            while len(body) < length:
                body += more()
        kept = [line for line in lines[1:] if not line.lower().startswith(("connection:", "expect:"))]
        request = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
        with socket.create_connection((target.hostname, target.port), timeout=30) as up:
            up.sendall(request)
            while chunk := up.recv(65536):
                conn.sendall(chunk)

    with _serving(handle) as url:
        yield url


def _swallow(conn: socket.socket) -> None:
    """Read until the peer closes; answer nothing."""
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


@contextmanager
def _serving(handle) -> Iterator[str]:
    """Serve each connection of a fresh loopback port with ``handle(conn)`` in its own thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stopping = threading.Event()
    conns: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            handle(conn)

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
