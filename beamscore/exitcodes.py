"""The exit codes of ``beamscore``: one meaning each, for schedulers that read them.

======  ==================================================================================
code    meaning
======  ==================================================================================
0       succeeded: every row scored or dead-lettered within the limit; ``_SUCCESS`` written
1       the job ran, but more rows failed than ``--max-failed-rows`` allows: outputs and a
        manifest with ``"status": "failed"`` are written, ``_SUCCESS`` is not
2       refused before anything was written (bad flag, config, model, input or output)
3       the job crashed, was killed on a worker or stalled on a store: nothing committed
        past the per-unit receipts; ``--resume`` continues
130     interrupted (Ctrl-C / SIGINT); ``--resume`` continues
143     terminated (SIGTERM); ``--resume`` continues
======  ==================================================================================
"""

from __future__ import annotations

__all__ = ["EXIT_CRASHED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_ROWS_FAILED", "EXIT_TERMINATED", "EXIT_USAGE"]

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_USAGE = 2
EXIT_CRASHED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
