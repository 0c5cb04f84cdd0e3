"""Worker processes of a local multi-process run stop when their launcher dies.

Beam's DirectRunner in ``multi_processing`` mode starts SDK worker processes that outlive a
launcher killed with SIGKILL: they go on scoring and committing units that no manifest will
ever cover, racing with the ``--resume`` that follows. The launcher of a local run puts its
pid in :data:`LAUNCHER_ENV`; worker processes inherit it. A local worker starts the watch
as its first act (its entry point is :mod:`beamscore.worker_main`, see
:func:`beamscore.pipelines.runners.make_runner`), and so, as a second guard, does the first
DoFn set up in a process other than the launcher: a thread checks every :data:`POLL_S`
seconds that the launcher is alive and ends the process at once when it is not. Remote
runners' workers do not inherit the variable and are not watched.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = [
    "LAUNCHER_ENV",
    "POLL_S",
    "WORKER_LOG",
    "end_worker_processes",
    "launcher_alive",
    "remove_orphaned_logs",
    "watch_launcher",
]

LAUNCHER_ENV = "BEAMSCORE_LAUNCHER_PID"
POLL_S = 0.2
#: exit status of a worker that ended because its launcher was gone
EXIT_ORPHANED = 3

_lock = threading.Lock()
_watching = False


#: the log of a launcher's local worker processes, in the temporary directory (``{pid}``: the launcher's)
WORKER_LOG = "beamscore-workers-{pid}.log"


def remove_orphaned_logs(directory: str) -> list[str]:
    """Remove the worker logs in ``directory`` whose launcher is gone (killed with SIGKILL
    before it could remove its own); return their paths. Only this user's files are touched."""
    prefix, _, suffix = WORKER_LOG.partition("{pid}")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        pid = name[len(prefix) : -len(suffix)] if name.startswith(prefix) and name.endswith(suffix) else ""
        if not pid.isdigit() or int(pid) == os.getpid() or launcher_alive(int(pid)):
            continue
        path = os.path.join(directory, name)
        try:
            if os.lstat(path).st_uid == os.getuid():
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue
    return removed


def launcher_alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_launcher() -> None:
    """Start the watch in this process if it is a worker of a local launcher (idempotent).

    The launcher is checked once at once (a worker that starts after its launcher died ends
    here), then every :data:`POLL_S` seconds by a daemon thread. Where the launcher is the
    direct parent, the kernel is also asked to kill this process when the parent goes
    (``PR_SET_PDEATHSIG`` on Linux)."""
    global _watching
    text = os.environ.get(LAUNCHER_ENV, "")
    if not text.isdigit() or int(text) == os.getpid():
        return
    with _lock:
        if _watching:
            return
        _watching = True
    launcher = int(text)
    parent = os.getppid()
    if parent == launcher:
        _die_with_parent()
    if not launcher_alive(launcher):
        os._exit(EXIT_ORPHANED)

    def watch() -> None:
        while True:
            # a killed launcher's children are reparented, and its pid stops existing
            if os.getppid() != parent or not launcher_alive(launcher):
                os._exit(EXIT_ORPHANED)
            threading.Event().wait(POLL_S)

    threading.Thread(target=watch, name="beamscore-launcher-watch", daemon=True).start()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (best effort; the poll stays)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


#: what the command line of a local worker process holds (see :mod:`beamscore.worker_main`)
WORKER_MODULE = "beamscore.worker_main"


def worker_processes(launcher: int | None = None) -> list[int]:
    """The pids of this launcher's local SDK worker processes (Linux ``/proc``; elsewhere none):
    its children whose command line runs :data:`WORKER_MODULE`."""
    launcher = os.getpid() if launcher is None else launcher
    pids = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()  # after "pid (comm)": state, ppid, ...
        if len(fields) > 1 and fields[1] == str(launcher).encode() and WORKER_MODULE.encode() in cmdline:
            pids.append(int(entry))
    return pids


def end_worker_processes(wait_s: float = 5.0) -> list[int]:
    """End this launcher's local worker processes (SIGKILL) and wait, at most ``wait_s``
    seconds, until they are gone; return their pids.

    A job stopped by a signal removes its temporary files before it exits; its worker
    processes would otherwise go on writing for up to :data:`POLL_S` seconds after, until
    they see their launcher gone, and leave a new temporary file behind."""
    import signal
    import time

    pids = worker_processes()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + wait_s
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break  # reaped elsewhere (the runner's Popen)
            if done:
                break
            time.sleep(0.01)
    return pids
