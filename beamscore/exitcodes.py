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
75      try again later (EX_TEMPFAIL), nothing written: no input matches yet, the input
        holds no rows (unless ``--allow-empty``), or another job holds the output;
        ``report``: the output is still being written or was interrupted
129     hung up (SIGHUP: the terminal or ssh session closed); ``--resume`` continues
130     interrupted (Ctrl-C / SIGINT); ``--resume`` continues
131     quit (SIGQUIT, Ctrl-\\): stopped at once, nothing cleaned up; ``--resume`` continues
143     terminated (SIGTERM); ``--resume`` continues
======  ==================================================================================
"""

from __future__ import annotations

__all__ = [
    "EXIT_CRASHED",
    "EXIT_HANGUP",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_QUIT",
    "EXIT_ROWS_FAILED",
    "EXIT_TEMPFAIL",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
]

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_USAGE = 2
EXIT_CRASHED = 3
#: sysexits.h's EX_TEMPFAIL: a scheduler retries the same job later, unchanged
EXIT_TEMPFAIL = 75
EXIT_HANGUP = 129
EXIT_INTERRUPTED = 130
EXIT_QUIT = 131
EXIT_TERMINATED = 143
