"""A real S3 server on loopback: moto's server mode (``moto_server``) as a subprocess.

``s3_server()`` starts it on a free 127.0.0.1 port, waits until it answers HTTP, yields the
endpoint URL (``http://127.0.0.1:PORT``) and stops it; the environment is not touched, so
child processes get it through :func:`s3_env`. ``s3_store()`` does the same and also points
this process's s3fs at the server (``FSSPEC_S3_ENDPOINT_URL`` is read by fsspec only at
import, so its config is set too), restoring everything when the context ends. Buckets live
in the server's memory and vanish with it; any key pair is accepted (FACTS.md).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pytest
from servers import free_port, stop, venv_script

__all__ = ["S3_ENV", "s3_env", "s3_server", "s3_store"]

STARTUP_S = 30
#: Credentials moto accepts (any value); the region keeps botocore from asking for one.
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def s3_env(endpoint: str) -> dict[str, str]:
    """The environment variables that point s3fs (through fsspec's config) at ``endpoint``."""
    return {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": endpoint}


@contextmanager
def s3_server() -> Iterator[str]:
    """Run ``moto_server -H 127.0.0.1 -p PORT`` until the context ends; yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:  # its request log; a pipe nobody reads would fill and stall it
        process = subprocess.Popen(
            [*venv_script("moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_it_answers(url, process, log)
            yield url
        finally:
            stop([process])


@contextmanager
def s3_store(workdir: Path | None = None) -> Iterator[str]:
    """:func:`s3_server`, with this process's s3fs (and its children's) pointed at it."""
    with s3_server() as url, pytest.MonkeyPatch.context() as mp:
        for name, value in s3_env(url).items():
            mp.setenv(name, value)
        mp.setitem(fsspec.config.conf, "s3", {"endpoint_url": url})
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield url
        finally:
            s3fs.S3FileSystem.clear_instance_cache()


def _wait_until_it_answers(url: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:  # it answers, if not with 200
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                log.seek(0)
                raise RuntimeError(f"moto_server did not start: {log.read()[-2000:]!r}") from None
            time.sleep(0.1)
