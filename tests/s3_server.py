"""A real S3 server process on loopback (moto's server mode), with s3fs pointed at it.

``moto_server -H 127.0.0.1 -p PORT`` runs as a subprocess on a free port;
``FSSPEC_S3_ENDPOINT_URL`` sends s3fs there and dummy AWS keys satisfy botocore (FACTS.md).
The environment is restored and the server stopped when the context ends. Child processes
started inside the context (``python -m beamscore``) inherit the environment.
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
def s3_server() -> Iterator[str]:
    """Start moto's S3 server on a free 127.0.0.1 port, yield its endpoint URL, stop it."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "x")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "x")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        # fsspec read FSSPEC_* at import: tell this process's s3fs too
        mp.setitem(fsspec.config.conf, "s3", {**fsspec.config.conf.get("s3", {}), "endpoint_url": endpoint})
        process = subprocess.Popen(
            [*_server_command(), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(endpoint, timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        process.kill()
                        err = process.communicate()[1].decode(errors="replace")
                        raise RuntimeError(f"moto's S3 server did not start: {err[-2000:]}") from None
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
