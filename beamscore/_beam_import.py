"""Import Apache Beam for a local job without the optional packages it imports only
because they are installed.

``import apache_beam`` tries, each inside ``try: ... except ImportError``, packages that
serve Beam features a beamscore job on a local runner never uses: google-cloud-storage (Beam's
own ``gs://`` filesystem, and with it Beam's BigQuery and Pub/Sub modules: beamscore reads and
writes through fsspec/gcsfs), boto3 (Beam's own ``s3://`` filesystem: beamscore uses s3fs) and
pymongo (Beam's MongoDB IO; a dependency of Beam, so always installed). Measured here: Beam's
import 1.05-1.26 -> 0.92-1.01 CPU s with the three installed.

:func:`import_beam_for_local_job` imports Beam with those names marked missing
(``sys.modules[name] = None``, which Beam's ``except ImportError`` takes as "not installed")
and removes the marks at once: a later ``import google.cloud.storage`` (gcsfs) or ``import
boto3`` works as usual; only Beam's own optional parts stay unregistered in this process. It
is for the ``beamscore`` program itself (``python -m beamscore``, the console script) on a
local runner only: never in a process that imports beamscore as a library, and not for
Dataflow and other remote runners, whose launcher stages files through Beam's ``gs://``
filesystem. Worker processes (``multi_processing``, remote workers) import Beam as usual.

pandas is left alone: Beam imports it for its DataFrame batch types, but hiding it from Beam
only moves its import to the first batch, where pyarrow imports it (its first array
conversion does; the C++ side imports pandas when it is installed).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "HIDDEN_FROM_BEAM",
    "LOCAL_RUNNERS_NAMED",
    "import_beam_for_local_job",
    "is_local_runner",
    "local_runner_named",
    "named_runners",
]

#: what ``import apache_beam`` imports only when installed, for features a local job does not use
HIDDEN_FROM_BEAM = (
    "google.cloud.storage",  # apache_beam.io.gcp.gcsfilesystem: Beam's own gs:// filesystem
    "boto3",  # apache_beam.io.aws.s3filesystem: Beam's own s3:// filesystem
    "pymongo",  # apache_beam.io.mongodbio
)
#: Beam's logger that warns when pymongo is missing (the warning would be wrong here)
_MONGO_LOGGER = "apache_beam.io.mongodbio"
#: the runners that run the job in or beside this process (as :data:`~beamscore.pipelines.runners.LOCAL_RUNNERS`)
LOCAL_RUNNERS_NAMED = ("DirectRunner", "FnApiRunner", "SwitchingDirectRunner")


def named_runners(beam_flags: Sequence[str], from_config: Mapping[str, Any] | None) -> list[Any] | None:
    """The runners the flags (``--runner X``, ``--runner=X``) and the config's
    ``pipeline_options`` name, read from the tokens alone (Beam is not imported yet);
    ``None`` when that is unclear (a ``--runner_something`` flag)."""
    names: list[Any] = []
    if from_config and "runner" in from_config:
        names.append(from_config["runner"])
    tokens = list(beam_flags)
    for i, token in enumerate(tokens):
        if not token.startswith("--runner"):
            continue
        name, eq, value = token.partition("=")
        if name != "--runner":  # --runner_something: not Beam's --runner, but do not guess
            return None
        names.append(value if eq else (tokens[i + 1] if i + 1 < len(tokens) else None))
    return names


def is_local_runner(name: Any) -> bool:
    """Whether ``name`` names a runner that runs the job in or beside this process, in any
    case, ``Runner`` optional, as Beam reads it."""
    from beamscore.flags import runner_key

    return isinstance(name, str) and runner_key(name) in {runner_key(n) for n in LOCAL_RUNNERS_NAMED}


def local_runner_named(beam_flags: Sequence[str], from_config: Mapping[str, Any] | None) -> bool:
    """Whether the job certainly runs on a local runner: no runner named, or only local ones
    (:func:`named_runners`); anything unclear counts as not local."""
    names = named_runners(beam_flags, from_config)
    return names is not None and all(is_local_runner(n) for n in names)


def import_beam_for_local_job(hide: Iterable[str] = HIDDEN_FROM_BEAM) -> list[str]:
    """Import ``apache_beam`` with the packages ``hide`` marked missing meanwhile; returns
    the names marked (those not imported yet). Nothing when Beam is imported already."""
    if "apache_beam" in sys.modules:
        return []
    hidden = [name for name in hide if name not in sys.modules]
    mongo = logging.getLogger(_MONGO_LOGGER)
    level = mongo.level
    mongo.setLevel(logging.ERROR)
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import apache_beam  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
        mongo.setLevel(level)
    return hidden
