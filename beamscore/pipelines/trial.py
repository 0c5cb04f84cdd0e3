"""The trial call: a few rows of the first input through the signature on the launcher.

A model that loads but cannot run here (a jax2tf export for CUDA only, a ``tf.py_function``
whose Python is gone, an op with no kernel on this machine) used to be found by the workers:
a failed job (exit 3) whose cause showed only with ``--debug``, or every row dead-lettered as
"the model failed on this row". The trial call finds it before anything is written and
refuses the job in one line (exit 2), naming the model's error.

The rows are the first :data:`TRIAL_ROWS` of the first input file (a fixed batch size pads
them to it, as the workers do), validated as the workers validate them. Rows the model
rejects one by one are the job's business (dead letters): only a call on which *every* row
fails, each alone too, refuses the job (a shape rule is found here as on the workers:
:meth:`~beamscore.model.runner.SignatureRunner.probe_multiple`).

Where the job's workers run in the launcher (Beam's in-process runner), the loaded copy is
left to :mod:`beamscore.model.loader`'s preloaded models: the worker takes it instead of
loading its own. Where they are other processes (multi-process, remote, ``--model-copies``)
the trial runs in a child process instead (:mod:`beamscore.pipelines.trial_apart`):
TensorFlow keeps a dropped model's memory in the process, so the launcher never loads it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from typing import TYPE_CHECKING

import pyarrow as pa

from beamscore.errors import BeamscoreError, first_line
from beamscore.io import structs
from beamscore.io.base import BadRows
from beamscore.model.loader import load_model, offer_preloaded, tf_message
from beamscore.model.runner import SignatureRunner
from beamscore.transforms.validate import check_rows
from beamscore.wording import option

if TYPE_CHECKING:
    from beamscore.pipelines.plan import Planning

__all__ = ["TRIAL_ROWS", "refusal", "trial_call"]

log = logging.getLogger(__name__)

#: rows of the first input the trial call scores
TRIAL_ROWS = 8


def trial_call(s: Planning, keep: bool = True) -> None:
    """Load each model of the job, read :data:`TRIAL_ROWS` rows of the first file, score them;
    refuse the job when a model fails on every one. The seconds of each part are logged (debug).
    ``keep``: offer the first model's loaded copy to an in-process worker."""
    assert s.info is not None and s.signature is not None and s.source is not None
    began = time.perf_counter()
    table = _first_rows(s)
    s.trial_s = {"read": round(time.perf_counter() - began, 4), "load": 0.0, "call": 0.0}
    if not s.models:  # the one unnamed model
        outputs = list(s.config.outputs) or sorted(s.signature.outputs)
        _trial(s, table, s.info.path, s.signature, s.bindings, outputs, s.model_spec(), keep=keep)
        return
    for i, m in enumerate(s.models):  # several: each model's own inputs and outputs; the first one kept
        spec = s.model_spec(m.model, s.config, m.tag_set, m.files)
        _trial(s, table, f"{m.name!r} ({m.model.path})", m.signature, m.bindings, m.outputs, spec, keep=keep and i == 0)


def _trial(s: Planning, table, model: str, signature, bindings, outputs, spec, keep: bool) -> None:
    """The trial call of one model: load it, score the first rows, refuse when every one fails;
    ``keep``: offer the loaded copy to an in-process worker."""
    began = time.perf_counter()
    loaded = load_model(dataclasses.replace(spec, copies=0))  # the trial runs here, not in the copies' server
    loaded_at = time.perf_counter()
    where = f"{s.first} (trial call of {signature.key!r})"
    checked = None
    if table is not None:  # struct fields (--map features.x) as columns, as the workers feed them
        rows = structs.with_fields(table, [b.column for b in bindings.values()])
        checked = check_rows(rows, bindings, s.config.reject_nan, where)
    if checked is not None and len(checked.good):
        runner = SignatureRunner(loaded.signature(signature.key), bindings, outputs, s.config.batch_multiple or 1)
        _call(runner, checked.columns, len(checked.good), where, model)
    if keep and not spec.copies:
        offer_preloaded(loaded)  # an in-process worker takes this copy
    del loaded
    load, call = loaded_at - began, time.perf_counter() - loaded_at
    s.trial_s["load"] = round(s.trial_s["load"] + load, 4)
    s.trial_s["call"] = round(s.trial_s["call"] + call, 4)
    log.debug("trial call of %s: load %.3f s, call %.3f s (rows read in %.3f s)", model, load, call, s.trial_s["read"])


def _first_rows(s: Planning) -> pa.Table | None:
    """Up to :data:`TRIAL_ROWS` decodable rows of the first file with rows (``None``: none)."""
    source = s.source
    assert source is not None
    units = [u for u in s.units if u.path == s.first][:1] or source.with_dead_letters().units(s.first, 0)[:1]
    if not units:
        return None
    bound = [s.bindings, *(m.bindings for m in s.models)]
    columns = [b.column for bindings in bound for b in bindings.values()]
    unit = units[0].members[0] if units[0].members else units[0]  # a packed unit: its first file's own unit
    reader = source.with_dead_letters().read(unit, list(dict.fromkeys(columns)), TRIAL_ROWS)
    try:
        for part in itertools.islice(reader, 4):
            if not isinstance(part, BadRows) and part.num_rows:
                return part.slice(0, TRIAL_ROWS)
    finally:
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    return None


def _call(runner: SignatureRunner, columns: dict, n: int, where: str, model: str) -> None:
    """Score ``n`` rows; refuse when every row fails (alone too), in one line."""
    from beamscore.transforms.run_signature import ROW_FAILED, call_isolating, every_row_failed

    try:
        _, bad, messages = call_isolating(runner, columns, n, where)
    except BeamscoreError as exc:
        raise BeamscoreError(refusal(model, where, str(exc).removeprefix(f"{where}: "))) from exc
    except Exception as exc:  # any error of the model's call: its type and first line, no traceback
        raise BeamscoreError(refusal(model, where, f"{type(exc).__name__}: {tf_message(exc)}")) from exc
    if every_row_failed(runner, n, bad, messages):
        reason = messages[0].removeprefix(ROW_FAILED)
        raise BeamscoreError(refusal(model, where, f"it failed on all {n} rows: {first_line(reason)}"))


def refusal(model: str, where: str, reason: str) -> str:
    """The one line refusing a job whose ``model`` cannot run (``where``: file and signature)."""
    return f"{where}: the model {model} cannot run here: {reason[:500]} ({option('trial')} skips this check)"
