"""One writer per output directory: the job's claim, ``OUTPUT/_claim.json``.

Before a job looks at its output directory it creates the claim file, atomically and only if
it does not exist: ``O_EXCL`` (a hard link of a complete temporary file) on a local disk, a
conditional write on object stores (gcsfs ``ifGenerationMatch=0``, S3 ``If-None-Match: *``,
both through fsspec's ``mode="create"``). A second job finds the claim and is refused with
one line naming the holder. On object stores the claim is also looked for before it is
written and read back after, a guard where a store ignores the precondition:
``gcp-storage-emulator`` does (a second ``ifGenerationMatch=0`` upload simply replaces the
object), so there only a job that starts while another holds the claim is refused, not two
that write their claims in the same instant. moto's S3 server honours ``If-None-Match: *``.

While the job runs, the launcher rewrites the claim's ``heartbeat`` every
:data:`HEARTBEAT_S` seconds; it removes the claim when the job ends, whatever the outcome.
A claim is stale when its launcher died: the claim names a process on this machine that no
longer exists, or its heartbeat is older than :data:`STALE_AFTER_S` seconds (environment
``BEAMSCORE_CLAIM_STALE_S``; for a launcher on another machine). The next job takes a stale
claim over and says so on stderr. Taking over a stale claim is not itself atomic: two jobs that start within
the same second after a crash can both take it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

import fsspec

from beamscore import fs as bfs
from beamscore.errors import TryLater
from beamscore.store_watch import mark_written
from beamscore.transforms.temp import TEMP_DIR, temp_path

__all__ = ["CLAIM_FILE", "HEARTBEAT_S", "STALE_AFTER_S", "Claim"]

CLAIM_FILE = "_claim.json"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0

#: test-only hook: DIR[:after]; the launcher writes DIR/ready-PID and waits for DIR/go
#: before creating its claim (or after, with ``:after``), so a race can be staged exactly
_BARRIER_ENV = "BEAMSCORE_TEST_CLAIM_BARRIER"


class Claim:
    """The claim of one job on one output directory; :meth:`acquire` it, then :meth:`release`."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.fs, self.root = bfs.filesystem(output)
        self.path = bfs.join(self.root, CLAIM_FILE)
        self.token = uuid.uuid4().hex
        self.holder = f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"
        self.started = _now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, output: str) -> Claim:
        """Claim ``output`` for this job, or raise naming the job that holds it."""
        claim = cls(output)
        _barrier("before")
        claim.fs.makedirs(claim.root, exist_ok=True)
        if not claim._create() and not claim._create_if_released():
            other = claim._read()
            if other is not None and not _stale(other):
                raise TryLater(_held_message(output, other))
            print(
                f"beamscore: warning: taking over the stale claim on {output} "
                f"({_describe(other) if other else 'unreadable claim file'})",
                file=sys.stderr,
            )
            with contextlib.suppress(FileNotFoundError):
                bfs.remove_file(claim.fs, claim.path)
            if not claim._create():
                other = claim._read()
                raise TryLater(_held_message(output, other or {}))
        mine = claim._read()
        if mine is None or mine.get("token") != claim.token:
            raise TryLater(_held_message(output, mine or {}))
        mark_written()  # from here on, a stalled store fails the job (exit 3), not a refusal
        _barrier("after")
        claim._thread = threading.Thread(target=claim._beat, name="beamscore-claim", daemon=True)
        claim._thread.start()
        return claim

    def _create_if_released(self) -> bool:
        """After a failed create: the holder may have released its claim since; if no claim
        file is there now, try once more (a vanished claim is not a stale one)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.invalidate_cache(self.root)
        return not self.fs.exists(self.path) and self._create()

    def abandon(self) -> None:
        """Stop the heartbeat but leave the claim: a job this launcher no longer watches may
        still be writing (a remote job that a SIGTERM'd launcher could not cancel)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it is still this job's."""
        self.abandon()
        current = self._read()
        if current is not None and current.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                bfs.remove_file(self.fs, self.path)
            # the heartbeat's writes made it; left empty, it is not left behind
            bfs.remove_empty_dir(self.fs, bfs.join(self.root, TEMP_DIR))
        self.fs.invalidate_cache(self.root)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _body(self) -> bytes:
        return json.dumps(
            {
                "holder": self.holder,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "token": self.token,
                "started": self.started,
                "heartbeat": _now(),
            }
        ).encode()

    def _create(self) -> bool:
        """Create the claim file only if none exists; False when another one is there.

        On object stores the claim is looked for first as well: the conditional write is
        what makes a race safe, the look is for stores (and emulators) that ignore it."""
        if not bfs.is_local(self.fs) and self._read() is not None:
            return False
        return _create_exclusive(self.fs, self.path, self._body())

    def _read(self) -> dict[str, Any] | None:
        self.fs.invalidate_cache(self.root)
        try:
            with self.fs.open(self.path, "rb") as f:
                data = json.loads(f.read() or b"null")
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # torn or foreign: holder unknown, judged stale by its age below
        return data if isinstance(data, dict) else {}

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            current = self._read()
            if current is None or current.get("token") != self.token:
                return  # taken over (our launcher looked dead): nothing of ours to refresh
            with contextlib.suppress(OSError):
                bfs.write_atomic(self.fs, self.path, self._body(), bfs.join(self.root, TEMP_DIR))


def _create_exclusive(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write ``path`` with ``data`` only if it does not exist; whole or not at all."""
    if bfs.is_local(fs):
        root = path.rsplit("/", 1)[0]
        for attempt in range(5):
            temp = temp_path(root, CLAIM_FILE, "tmp")
            bfs.write_new_local(temp, data)
            try:
                os.link(temp, path)  # fails if path exists (even as a dangling link): O_EXCL semantics
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:
                # the temp file went (an older beamscore cleaning up _temporary/): write it again
                if attempt == 4:
                    raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                bfs.remove_empty_dir(fs, temp.rsplit("/", 1)[0])
    try:
        fs.pipe_file(path, data, mode="create")
        return True
    except FileExistsError:
        return False


def _stale(claim: dict[str, Any]) -> bool:
    """A claim is stale when its launcher ran on this machine and is gone, or when its
    heartbeat is older than the limit (a launcher elsewhere that died)."""
    if claim.get("host") == socket.gethostname() and isinstance(claim.get("pid"), int):
        try:
            os.kill(claim["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
    limit = float(os.environ.get("BEAMSCORE_CLAIM_STALE_S", STALE_AFTER_S))
    try:
        beat = dt.datetime.fromisoformat(str(claim["heartbeat"]))
    except (KeyError, ValueError):
        return True
    return (dt.datetime.now(dt.UTC) - beat).total_seconds() > limit


def _describe(claim: dict[str, Any]) -> str:
    holder, started, beat = (claim.get(k, "?") for k in ("holder", "started", "heartbeat"))
    return f"{holder}, started {started}, last heartbeat {beat}"


def _held_message(output: str, claim: dict[str, Any]) -> str:
    return (
        f"output {output!r} is being written by another job ({_describe(claim)}); "
        f"wait for it, or if it died remove {bfs.join(output, CLAIM_FILE)} "
        f"(a claim is stale after {STALE_AFTER_S:.0f} s without a heartbeat)"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _barrier(moment: str) -> None:
    """The test-only hook of :data:`_BARRIER_ENV` (nothing happens when it is unset)."""
    spec = os.environ.get(_BARRIER_ENV)
    if not spec:
        return
    directory, _, when = spec.partition(":")
    if (when or "before") != moment:
        return
    with open(os.path.join(directory, f"ready-{os.getpid()}"), "w"):
        pass
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(directory, "go")) and time.monotonic() < deadline:
        time.sleep(0.02)
