"""GPU set-up for a worker process, done once before its first model load.

TensorFlow by default reserves almost all of a GPU's memory in the first process that
touches it, so a second worker process on the same GPU (Beam starts one per core) fails to
allocate. :func:`configure_gpus` turns on memory growth for every visible GPU, so processes
sharing a GPU each take what they use. ``BEAMSCORE_GPU_MEMORY_GROWTH=0`` leaves TensorFlow's
default. On a machine without a GPU it does nothing. Models are placed on the GPU by
TensorFlow itself: a loaded SavedModel's ops run on ``/GPU:0`` when one is visible.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["configure_gpus", "gpu_names"]

_LOG = logging.getLogger(__name__)
_DONE = False
_LOCK = threading.Lock()


def configure_gpus() -> list[str]:
    """Turn on memory growth for each visible GPU (once per process); return their names."""
    global _DONE
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    with _LOCK:
        if _DONE:
            return [g.name for g in gpus]
        _DONE = True
        if os.environ.get("BEAMSCORE_GPU_MEMORY_GROWTH", "1") != "0":
            for gpu in gpus:
                try:
                    tf.config.experimental.set_memory_growth(gpu, True)
                except (RuntimeError, ValueError) as exc:  # the GPU was initialised before us
                    _LOG.warning("beamscore: cannot turn on memory growth for %s: %s", gpu.name, exc)
    if gpus:
        _LOG.info("beamscore: GPUs %s (memory growth %s)", [g.name for g in gpus], _growth_state())
    return [g.name for g in gpus]


def _growth_state() -> str:
    return "off" if os.environ.get("BEAMSCORE_GPU_MEMORY_GROWTH", "1") == "0" else "on"


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow sees in this process (empty on a CPU machine)."""
    import tensorflow as tf

    return [g.name for g in tf.config.list_physical_devices("GPU")]
