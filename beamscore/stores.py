"""Object-store set-up checks: is the endpoint a ``gs://`` or ``s3://`` URL goes to reachable?

A mistyped or stopped endpoint (a GCS emulator that is down, ``FSSPEC_S3_ENDPOINT_URL`` at
the wrong port) otherwise surfaces only after gcsfs has retried with back-off for ~35 s and
logged every attempt, or after botocore's retries: dozens of lines and a library's error
type. :func:`check_reachable` opens one TCP connection to the endpoint (at most
:data:`PROBE_TIMEOUT_S`) the first time a process uses it and turns a failure into one
:class:`BeamscoreError` line naming the URL, the endpoint and the variable that chose it.
An emulator without ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` gets gcsfs's experimental
client, whose gRPC bucket-type lookups wait a minute or more per bucket (FACTS.md): that is
refused at once, with the fix.

Only endpoints set explicitly (an emulator, MinIO, moto, any S3-compatible server) and
reached without an HTTP proxy are probed: the clouds' own endpoints, and any endpoint behind
``HTTP(S)_PROXY``, may be reachable only through the proxy, which a bare TCP connect would
not use, so they are left to the client libraries.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from urllib.parse import urlsplit

import fsspec

from beamscore.errors import BeamscoreError

__all__ = ["PROBE_TIMEOUT_S", "STORE_LOGGERS", "check_reachable", "describe_store_error", "endpoint_of"]

#: seconds one TCP connect to an endpoint may take before it counts as unreachable
PROBE_TIMEOUT_S = 5.0
#: the loggers of the object-store clients; the CLI silences them unless ``--debug``
STORE_LOGGERS = ("gcsfs", "s3fs", "aiobotocore", "botocore", "fsspec")

_reached: set[tuple[str, int]] = set()
_lock = threading.Lock()


def endpoint_of(fs: fsspec.AbstractFileSystem) -> tuple[str, str, str] | None:
    """``(store, endpoint URL, where it was set)`` for an explicitly set endpoint, else ``None``.

    ``store`` is ``"GCS"`` or ``"S3"``; ``where`` names the variable or setting a user
    changes to point elsewhere (``STORAGE_EMULATOR_HOST``, ``FSSPEC_S3_ENDPOINT_URL``...).
    """
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & {"gs", "gcs"}:
        return _gcs_endpoint(fs)
    if protocols & {"s3", "s3a"}:
        return _s3_endpoint(fs)
    return None


def _gcs_endpoint(fs) -> tuple[str, str, str] | None:
    given = getattr(fs, "_endpoint", None)
    if given:
        return "GCS", given, _setting_source(("gs", "gcs"), "endpoint_url", given)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
    if emulator in ("", "default"):
        return None
    url = emulator if emulator.startswith(("http://", "https://")) else f"http://{emulator}"
    return "GCS", url, "STORAGE_EMULATOR_HOST"


def _s3_endpoint(fs) -> tuple[str, str, str] | None:
    given = getattr(fs, "endpoint_url", None)
    if given:
        return "S3", given, _setting_source(("s3", "s3a"), "endpoint_url", given)
    given = (getattr(fs, "client_kwargs", None) or {}).get("endpoint_url")
    if given:
        return "S3", given, "client_kwargs.endpoint_url in the fsspec config or storage options"
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):  # read by botocore itself
        if os.environ.get(name):
            return "S3", os.environ[name], name
    return None


def _setting_source(protocols: tuple[str, ...], key: str, value: str) -> str:
    """Where fsspec got ``key=value`` for these protocols: the variable or file a user edits."""
    for protocol in protocols:
        name = f"FSSPEC_{protocol.upper()}_{key.upper()}"
        if os.environ.get(name) == value:
            return name
        name = f"FSSPEC_{protocol.upper()}"
        if name in os.environ and f'"{value}"' in os.environ[name]:
            return name
    if any(fsspec.config.conf.get(p, {}).get(key) == value for p in protocols):
        return f"{key} in the fsspec config ({fsspec.config.conf_dir})"
    return f"the {key} storage option"


def check_reachable(fs: fsspec.AbstractFileSystem, url: str) -> None:
    """Raise :class:`BeamscoreError` when ``url``'s explicitly set endpoint does not answer.

    One TCP connect per endpoint and process (a success is remembered), so calling this
    before every store access costs a set lookup after the first time.
    """
    found = endpoint_of(fs)
    if found is None:
        return
    store, endpoint, where = found
    if where == "STORAGE_EMULATOR_HOST" and type(fs).__module__.startswith("gcsfs.extended"):
        raise BeamscoreError(
            f"cannot open {url} on the GCS emulator {endpoint}: set GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false "
            "(gcsfs's default client asks emulators gRPC questions they never answer, for minutes)"
        )
    parts = urlsplit(endpoint)
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host = None
    if not host:
        raise BeamscoreError(f"cannot open {url}: the {store} endpoint {endpoint!r} (from {where}) is not a URL")
    key = (host, port)
    with _lock:
        if key in _reached:
            return
    if _through_proxy(parts.scheme, host):
        return  # the client goes through the proxy; a direct connect would prove nothing
    try:
        socket.create_connection(key, timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise BeamscoreError(
            f"cannot reach {url}: the {store} endpoint {endpoint} (from {where}) {_why(exc)}; "
            f"start the server or point {where} at a running one"
        ) from None
    with _lock:
        _reached.add(key)


def _through_proxy(scheme: str, host: str) -> bool:
    """True when ``HTTP(S)_PROXY`` applies to ``host`` (not listed in ``NO_PROXY``)."""
    return scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


def _why(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused the connection"
    if isinstance(exc, socket.gaierror):
        return "has a host name that does not resolve"
    if isinstance(exc, TimeoutError):
        return f"did not answer within {PROBE_TIMEOUT_S:g} s"
    return f"is unreachable ({exc.strerror or exc})"


def describe_store_error(exc: BaseException) -> str | None:
    """One line for an object-store set-up error found in ``exc``'s chain, else ``None``.

    Today: botocore's ``NoCredentialsError`` (no AWS keys anywhere botocore looks), which
    otherwise reaches the user as the bare "Unable to locate credentials".
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "NoCredentialsError" and type(current).__module__.startswith("botocore"):
            return (
                "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, "
                "or key and secret in the fsspec s3 config; anon=true for a public bucket)"
            )
        current = current.__cause__ or current.__context__
    return None
