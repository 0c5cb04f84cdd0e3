"""Object-store set-up errors: an endpoint with nothing behind it is one line, exit 2, in seconds.

Nothing listens on a free loopback port; ``STORAGE_EMULATOR_HOST`` or
``FSSPEC_S3_ENDPOINT_URL`` points there and ``beamscore`` runs as a user runs it (a fresh
process: ``python -m beamscore`` through runpy). Before the probe, gs:// took ~35 s of gcsfs
retries and printed 48 lines of log.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from runner_jobs import beamscore_cli, worker_env
from s3_server import s3_env

from beamscore.errors import BeamscoreError
from beamscore.fs import filesystem
from beamscore.stores import endpoint_of

#: beyond the child's own start-up, on a loaded machine (16.9 s seen at load 16); gcsfs alone
#: retries ~35 s against a closed port
WALL_S = 28

#: ``python -m beamscore ARGS`` as a user runs it, after importing what a ``score`` child imports
#: before its endpoint probe (TensorFlow the CLI's way, Beam's pipeline modules, the store's
#: client; their import-time chatter, which the CLI filters itself, to /dev/null) and writing
#: the time those imports were done to a file: the refusal is timed from there, so a loaded
#: machine's slow start-up does not count and no second process is needed to measure it.
_TIMED_CLI = """import os, runpy, sys, time
stamp, client = sys.argv.pop(1), sys.argv.pop(1)
from beamscore._quiet import import_tensorflow_quietly
import_tensorflow_quietly()
saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 2)
try:
    import beamscore.pipelines.score
    __import__(client)
finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
with open(stamp, "w") as f:
    f.write(repr(time.monotonic()))
runpy.run_module("beamscore", run_name="__main__", alter_sys=True)
"""


def _timed_cli(stamp, client: str, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a fresh process; return it and its seconds from the end of its imports to its exit."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_CLI, str(stamp), client, *args],
        env={**worker_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    end = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process on the machine
    return done, end - float(stamp.read_text())


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _env(scheme: str, endpoint: str) -> dict[str, str]:
    if scheme == "gs":
        return {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    return s3_env(endpoint)


@pytest.mark.parametrize(("scheme", "variable"), [("gs", "STORAGE_EMULATOR_HOST"), ("s3", "FSSPEC_S3_ENDPOINT_URL")])
@pytest.mark.parametrize("where", ["model", "output"])
def test_unreachable_endpoint_is_one_line_exit_2_in_seconds(scheme, variable, where, models, shards, tmp_path):
    endpoint = _closed_port()
    remote = f"{scheme}://bucket/{where}"
    model = remote if where == "model" else models["two_sig"]
    output = remote if where == "output" else str(tmp_path / "out")
    client = "gcsfs" if scheme == "gs" else "s3fs"
    args = ["score", "--model", model, "--input", shards[0][0], "--output", output]
    done, wall = _timed_cli(tmp_path / "imported", client, *args, env=_env(scheme, endpoint))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"beamscore: error: cannot reach {remote}"), lines[0]
    assert f"endpoint {endpoint} (from {variable}) refused the connection" in lines[0]
    assert wall < WALL_S, f"took {wall:.1f} s after its imports"
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_the_probe_names_the_endpoint_and_its_variable(monkeypatch):
    endpoint = _closed_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint.removeprefix("http://"))  # gcsfs adds http://
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    with pytest.raises(
        BeamscoreError, match=rf"cannot reach gs://b/x: the GCS endpoint {endpoint} \(from STORAGE_EMULATOR_HOST\)"
    ):
        filesystem("gs://b/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://no-such-host.invalid:9000")
    monkeypatch.delenv("FSSPEC_S3_ENDPOINT_URL", raising=False)
    import s3fs

    fs = s3fs.S3FileSystem(key="k", secret="s", skip_instance_cache=True)
    assert endpoint_of(fs) == ("S3", "http://no-such-host.invalid:9000", "AWS_ENDPOINT_URL_S3")
    # local, memory:// and the clouds' own endpoints are never probed
    for url in ("memory://x", "/tmp/x"):
        assert endpoint_of(filesystem(url)[0]) is None
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    assert endpoint_of(s3fs.S3FileSystem(key="k", secret="s", skip_instance_cache=True)) is None


def test_an_endpoint_behind_a_proxy_is_left_to_the_client(monkeypatch):
    """With ``HTTP_PROXY`` set the client connects through the proxy: no direct probe."""
    endpoint = _closed_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    filesystem("gs://b/x")  # no error: the probe stood aside
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with pytest.raises(BeamscoreError, match="refused the connection"):
        filesystem("gs://b/x")


def test_a_gcs_emulator_without_the_hns_switch_is_refused_at_once(models, shards, tmp_path):
    """gcsfs's default (HNS) client would wait minutes on gRPC lookups an emulator never answers."""
    env = {"STORAGE_EMULATOR_HOST": _closed_port(), "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "true"}
    done = beamscore_cli("show", "gs://bucket/model", env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("beamscore: error: cannot open gs://bucket/model on the GCS emulator http://127.0.0.1:")
    assert "set GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false" in line


def test_the_probe_names_fsspec_settings_a_user_edits(monkeypatch):
    """The endpoint's source is the variable or file to fix: ``FSSPEC_S3`` JSON, the config dir."""
    import fsspec
    import s3fs

    endpoint = _closed_port()
    monkeypatch.delenv("FSSPEC_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("FSSPEC_S3", f'{{"endpoint_url": "{endpoint}"}}')
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="k", secret="s", skip_instance_cache=True)
    assert endpoint_of(fs) == ("S3", endpoint, "FSSPEC_S3")
    monkeypatch.delenv("FSSPEC_S3")
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    assert endpoint_of(fs)[2] == f"endpoint_url in the fsspec config ({fsspec.config.conf_dir})"


def test_client_timeouts_are_storage_options_under_the_users_settings(monkeypatch):
    """The store timeout becomes botocore's connect/read timeouts and gcsfs's per-request
    timeout; what the fsspec config already says for a client wins."""
    import fsspec.config

    from beamscore.store_watch import client_options

    monkeypatch.setenv("BEAMSCORE_STORE_TIMEOUT", "30")
    monkeypatch.setitem(fsspec.config.conf, "s3", {})
    monkeypatch.setitem(fsspec.config.conf, "gcs", {})
    assert client_options("s3") == {"config_kwargs": {"connect_timeout": 10.0, "read_timeout": 33.0}}
    assert client_options("gs") == {"requests_timeout": 33.0}
    assert client_options("file") == {}
    monkeypatch.setitem(fsspec.config.conf, "s3", {"config_kwargs": {"read_timeout": 600}})
    monkeypatch.setitem(fsspec.config.conf, "gcs", {"requests_timeout": 600})
    assert client_options("s3") == {"config_kwargs": {"connect_timeout": 10.0, "read_timeout": 600}}
    assert client_options("gs") == {}
    monkeypatch.setenv("BEAMSCORE_STORE_TIMEOUT", "soon")
    with pytest.raises(BeamscoreError, match="BEAMSCORE_STORE_TIMEOUT must be a number of seconds above 0"):
        client_options("s3")
