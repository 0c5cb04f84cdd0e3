"""A real GCS emulator process on loopback, with gcsfs pointed at it (shared by the gs:// tests).

``gcp-storage-emulator start --in-memory`` runs on a free 127.0.0.1 port;
``STORAGE_EMULATOR_HOST`` sends gcsfs there with anonymous credentials, and
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` spares 60 s of gRPC bucket-type lookups per bucket
(FACTS.md). The environment and fsspec's registry are restored when the context ends.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pytest
from fsspec.registry import _registry as fsspec_classes  # the mutable registry behind fsspec.registry
from servers import free_port, stop, venv_script


@contextmanager
def gcs_emulator(workdir: Path, bucket: str, env: dict[str, str] | None = None) -> Iterator:
    """Start the emulator, make ``bucket`` and yield a gcsfs filesystem on it."""
    port = free_port()
    log = workdir / "emulator.log"
    with pytest.MonkeyPatch.context() as mp, open(log, "wb") as log_file:
        mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        mp.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        mp.setitem(fsspec.config.conf, "gcs", {"token": "anon"})
        import gcsfs.core

        # the plain HTTP client: the experimental HNS class (chosen at gcsfs import) needs gRPC
        for protocol in ("gs", "gcs"):
            mp.setitem(fsspec_classes, protocol, gcsfs.core.GCSFileSystem)
        process = subprocess.Popen(
            [*venv_script("gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the GCS emulator did not start: {log.read_text()}") from None
                    time.sleep(0.2)
            gcsfs.core.GCSFileSystem.clear_instance_cache()
            fs = gcsfs.core.GCSFileSystem(token="anon")
            fs.mkdir(bucket)
            yield fs
        finally:
            stop([process])
            gcsfs.core.GCSFileSystem.clear_instance_cache()
