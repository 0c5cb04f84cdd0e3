"""The trial call in a child process, for jobs whose workers are other processes.

TensorFlow's CPU allocator (oneDNN's, on by default on x86) keeps the memory of a dropped
model for the process's lifetime: a launcher that loaded a 200 MB embedding for the trial
call stayed 200 MB larger while worker processes scored, whatever it released (measured:
with ``TF_ENABLE_ONEDNN_OPTS=0`` the same drop gave the memory back). Where the launcher's
copy is of no use to a worker (a multi-process local runner, a remote runner,
``--model-copies``), :func:`trial_apart` runs the trial call in a fresh interpreter
(``python -m beamscore.pipelines.trial_apart``) and the weights die with it. An in-process
runner keeps running it in the launcher, whose copy its worker then takes.

The child gets the planning state (a few KB: the first file's unit only) and the parent's
``sys.path`` (``--import`` modules found as the launcher finds them) pickled on stdin; it
answers on stdout. Both ends are this package's own code: nothing from the model or the
data is unpickled. A child that dies (a model that crashes TensorFlow) refuses the job in
one line, as a model that fails on every row does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from beamscore.errors import BeamscoreError, first_line

if TYPE_CHECKING:
    from beamscore.pipelines.plan import Planning

__all__ = ["TrialChild", "apart_named", "start_child", "start_early", "stop_child", "trial_apart"]

log = logging.getLogger(__name__)


#: what the child runs: the launcher's ``sys.path`` (argv 1, JSON) before anything is imported,
#: so that beamscore and ``--import`` modules are found as the launcher finds them; then the
#: launcher watch, so that a killed launcher's trial process ends at once, as its workers do
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from beamscore.transforms.watchdog import watch_launcher; watch_launcher(); "
    "from beamscore.pipelines.trial_apart import _child; sys.exit(_child(int(sys.argv[2])))"
)


@dataclasses.dataclass
class TrialChild:
    """A started trial process and when it started (``time.perf_counter``)."""

    proc: subprocess.Popen
    started: float


def start_child() -> TrialChild:
    """Start the trial call's process now: it imports TensorFlow while the launcher plans,
    then waits for the planning state on stdin. :func:`stop_child` ends one left unused."""
    level = logging.getLogger("beamscore").getEffectiveLevel()
    debug = level <= logging.DEBUG
    started = time.perf_counter()
    from beamscore.transforms.watchdog import LAUNCHER_ENV

    proc = subprocess.Popen(
        [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(level)],
        env={**os.environ, LAUNCHER_ENV: str(os.getpid())},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None if debug else subprocess.PIPE,
    )
    return TrialChild(proc, started)


def apart_named(beam_flags: Sequence[str], from_config: Mapping[str, Any] | None, copies: int | None) -> bool:
    """Whether the job's own flags say that its workers are other processes: ``--model-copies``,
    ``--direct_running_mode=multi_processing``, or a runner other than Beam's local one named.
    Decided from the tokens alone, before Beam is imported; anything unclear counts as not
    (planning then decides, as it always did)."""
    if copies:
        return True
    from beamscore._beam_import import is_local_runner, named_runners

    tokens = list(beam_flags)
    mode = (from_config or {}).get("direct_running_mode")
    for i, token in enumerate(tokens):
        name, eq, value = token.partition("=")
        if name == "--direct_running_mode":
            mode = value if eq else (tokens[i + 1] if i + 1 < len(tokens) else None)
    if mode == "multi_processing":
        return True
    runner = (named_runners(tokens, from_config) or [None])[-1]  # the last one named is Beam's
    return isinstance(runner, str) and bool(runner) and not is_local_runner(runner)


def start_early(config: Any, beam_flags: Sequence[str]) -> TrialChild | None:
    """The trial's process, started before the launcher imports TensorFlow and Beam, when the
    flags say the trial will run apart (:func:`apart_named`): the child's TensorFlow import
    then overlaps the launcher's (some 3 s of a multi-process or remote job's start, on two
    cores), where it used to start once planning began. ``None`` otherwise; planning hands
    back or ends a child it does not use."""
    if not config.trial or not apart_named(beam_flags, config.pipeline_options, config.model_copies):
        return None
    return start_child()


def stop_child(child: TrialChild | None) -> None:
    """End a trial process that planning did not use (a refusal before the trial step)."""
    if child is not None and child.proc.poll() is None:
        child.proc.kill()
        child.proc.communicate()


def trial_apart(s: Planning) -> None:
    """Run :func:`~beamscore.pipelines.trial.trial_call` on ``s`` in a child process (the one
    :func:`start_child` started, or a new one); raise its refusal here. Falls back to this
    process when ``s`` cannot be pickled."""
    child, s.trial_child = s.trial_child, None
    slim = dataclasses.replace(
        s,
        units=[u for u in s.units if u.path == s.first][:1],
        facts=[],
        files=[s.first],
        check=None,
    )
    try:
        payload = pickle.dumps(slim)
    except Exception as exc:  # noqa: BLE001 - e.g. a table snapshot holding a client
        stop_child(child)
        log.debug("trial call in the launcher: the planning state does not pickle (%s)", exc)
        from beamscore.pipelines.trial import trial_call

        trial_call(s)
        return
    child = child or start_child()
    sent = time.perf_counter()
    try:
        out, err = child.proc.communicate(payload)
    finally:
        stop_child(child)
    answer = _answer(out)
    if answer is not None:
        kind, text = answer
        if kind == "ok":
            s.trial_s = {**json.loads(text), "process": round(time.perf_counter() - child.started, 4)}
            waited = time.perf_counter() - sent
            log.debug("trial call in process %d: %s; answered in %.3f s", child.proc.pid, s.trial_s, waited)
            return
        if kind == "refused":
            raise BeamscoreError(text)
        raise RuntimeError(f"the trial call failed: {text}")
    last = [line for line in (err or b"").decode(errors="replace").splitlines() if line.strip()][-1:]
    cause = f": {first_line(last[0])}" if last else ""
    code = child.proc.returncode
    if code >= 0:  # not the model's doing (e.g. beamscore not importable there)
        raise RuntimeError(f"the trial call's process ended with exit status {code}{cause}")
    raise BeamscoreError(_died(s, -code, cause))


def _answer(out: bytes) -> tuple[str, str] | None:
    """The child's answer: its last stdout line, ``kind<TAB>text`` (``None``: no answer)."""
    lines = out.decode(errors="replace").splitlines()
    if not lines or "\t" not in lines[-1]:
        return None
    kind, text = lines[-1].split("\t", 1)
    return kind, text.replace("\\n", "\n")


def _died(s: Planning, signum: int, cause: str) -> str:
    """The one line for a trial process killed by a signal (a model that crashes TensorFlow)."""
    from beamscore.pipelines.trial import refusal

    try:
        how = signal.Signals(signum).name
    except ValueError:
        how = str(signum)
    assert s.info is not None and s.signature is not None
    where = f"{s.first} (trial call of {s.signature.key!r})"
    return refusal(s.info.path, where, f"its process ended with signal {how}{cause}")


def _child(level: int) -> int:
    """The child's side: import what the trial needs, read the state, run the trial call,
    answer one line on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what TensorFlow or Beam print goes to stderr, not into the answer
    if level <= logging.DEBUG:
        logging.basicConfig(level=level, format="%(asctime)s trial call (pid %(process)d) %(name)s: %(message)s")
    else:
        from beamscore._quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
    import beamscore.pipelines.plan  # noqa: F401 - the state's classes, imported while the launcher plans
    from beamscore.pipelines.trial import trial_call

    state = _load(sys.stdin.buffer.read())
    kind, text = _run(state, trial_call)
    out.write(f"{kind}\t{text.replace(chr(10), chr(92) + 'n')}\n")
    out.flush()
    return 0


def _load(raw: bytes) -> Any:
    return pickle.loads(raw)  # the launcher's own planning state, written just now


def _run(state: Planning, trial_call: Any) -> tuple[str, str]:
    from beamscore.model.loader import remember

    for info in [state.info, *(m.model for m in state.models)]:
        if info is not None:
            remember(info)  # the launcher's inspection: no second parse of saved_model.pb
    try:
        trial_call(state, keep=False)
    except BeamscoreError as exc:
        return "refused", str(exc)
    except Exception as exc:  # noqa: BLE001 - any other failure goes back as its type and first line
        return "error", f"{type(exc).__name__}: {first_line(str(exc))}"
    return "ok", json.dumps(state.trial_s)
