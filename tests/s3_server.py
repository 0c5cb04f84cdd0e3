"""A real S3 server process on loopback (moto's server mode), with s3fs pointed at it.

``moto_server -H 127.0.0.1 -p PORT`` (from ``moto[server]``) answers the S3 API over HTTP;
``FSSPEC_S3_ENDPOINT_URL`` sends s3fs there (in child processes; fsspec reads it at import,
so this process gets the same in ``fsspec.config.conf``) and any key pair is accepted
(FACTS.md). The environment is restored and the process stopped when the context ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "moto_server")
    return [script] if os.path.exists(script) else [shutil.which("moto_server") or "moto_server"]


@contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """Start moto's S3 server on a free port, point s3fs at it and yield its endpoint URL."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = workdir / "moto.log"
    with pytest.MonkeyPatch.context() as mp, open(log, "wb") as log_file:
        mp.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "x")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "x")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        process = subprocess.Popen(
            [*_server_command(), "-H", "127.0.0.1", "-p", str(port)], stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(endpoint, timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"moto's S3 server did not start: {log.read_text()}") from None
                    time.sleep(0.2)
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
