"""A full disk for a job run in this process: the soft file-size limit (``RLIMIT_FSIZE``).

A write past the limit fails with ``OSError: [Errno 27] File too large`` (``EFBIG``), as a
full disk gives ``No space left on device``: a real kernel error on the job's own write. The
limit is per process, so :func:`file_size_limit` holds it only around the call and restores
the soft limit and the ``SIGXFSZ`` handler after (an unprivileged process may raise its soft
limit back up to the hard one). Tests whose point is what the user's terminal shows run the
same job in a child under the same limit instead (``tests/test_cli_failures.py``).
"""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator

__all__ = ["file_size_limit"]


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Within the block, a write that makes a file larger than ``limit`` bytes fails with ``EFBIG``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
