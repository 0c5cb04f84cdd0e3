"""beamscore: batch scoring with TensorFlow SavedModels on Apache Beam.

The public API (docs/api.md, "The public API") is ``beamscore.score`` (the CLI's job as one
call), the pieces of the ``beamscore score`` pipeline as Beam transforms for users who build
their own pipeline, a ``ModelHandler`` for Beam's ``RunInference``, and model inspection::

    units | beamscore.ReadBatches(source, columns) | beamscore.RunSignature(model) | beamscore.WriteParquet(out)
    tables | beamscore.RunSignature(model)            # tables from beam.io.ReadFromParquetBatched
    tables | RunInference(beamscore.SignatureModelHandler(model))

Names are imported lazily so that ``import beamscore`` does not import TensorFlow or Beam;
the ``TYPE_CHECKING`` block beside the lazy table shows every name to type checkers and
editors (mypy, pyright and jedi see a module ``__getattr__``'s names as ``Any``), and
``py.typed`` says the annotations are meant to be used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from beamscore._version import __version__
from beamscore.errors import BeamscoreError

if TYPE_CHECKING:  # the same names as _LAZY (a test keeps them in step); never run
    from beamscore.config import ScoreConfig
    from beamscore.errors import JobFailed, RowsFailed
    from beamscore.inference import SignatureModelHandler
    from beamscore.io.base import WorkUnit
    from beamscore.io.npy import NpySource
    from beamscore.io.npy_sink import NpySink
    from beamscore.io.npz import NpzSource
    from beamscore.io.parquet import ParquetSource
    from beamscore.io.parquet_sink import ParquetSink
    from beamscore.io.tfrecord import TFRecordSource
    from beamscore.model.inspect import ModelInfo, inspect_model
    from beamscore.pipelines.plan import plan_job
    from beamscore.pipelines.score import score
    from beamscore.transforms.dead_letters import DEAD_LETTER_SCHEMA
    from beamscore.transforms.manifest import WriteManifest
    from beamscore.transforms.read import ReadBatches, plan_units
    from beamscore.transforms.run_models import RunSignatures
    from beamscore.transforms.run_signature import RunSignature
    from beamscore.transforms.write import WriteBatches, WriteParquet

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "BeamscoreError",
    "JobFailed",
    "ModelInfo",
    "NpySink",
    "NpySource",
    "NpzSource",
    "ParquetSink",
    "ParquetSource",
    "ReadBatches",
    "RowsFailed",
    "RunSignature",
    "RunSignatures",
    "ScoreConfig",
    "SignatureModelHandler",
    "TFRecordSource",
    "WorkUnit",
    "WriteBatches",
    "WriteManifest",
    "WriteParquet",
    "__version__",
    "inspect_model",
    "plan_job",
    "plan_units",
    "score",
]

_LAZY = {
    "inspect_model": "beamscore.model.inspect",
    "ModelInfo": "beamscore.model.inspect",
    "ScoreConfig": "beamscore.config",
    "plan_job": "beamscore.pipelines.plan",
    "ParquetSource": "beamscore.io.parquet",
    "TFRecordSource": "beamscore.io.tfrecord",
    "NpzSource": "beamscore.io.npz",
    "NpySource": "beamscore.io.npy",
    "ParquetSink": "beamscore.io.parquet_sink",
    "NpySink": "beamscore.io.npy_sink",
    "WorkUnit": "beamscore.io.base",
    "plan_units": "beamscore.transforms.read",
    "ReadBatches": "beamscore.transforms.read",
    "RunSignature": "beamscore.transforms.run_signature",
    "RunSignatures": "beamscore.transforms.run_models",
    "SignatureModelHandler": "beamscore.inference",
    "WriteBatches": "beamscore.transforms.write",
    "WriteParquet": "beamscore.transforms.write",
    "WriteManifest": "beamscore.transforms.manifest",
    "score": "beamscore.pipelines.score",
    "JobFailed": "beamscore.errors",
    "RowsFailed": "beamscore.errors",
    "DEAD_LETTER_SCHEMA": "beamscore.transforms.dead_letters",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'beamscore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
