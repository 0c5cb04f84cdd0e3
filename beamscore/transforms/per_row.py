"""Per-row elements: one row dict or one serialized Example per element, batched inside the DoFn.

Most Beam pipelines hold rows: ``ReadFromTFRecord`` gives one record per element, a ``Map``
gives one dict per element. ``RunSignature(model, per_row=True)`` takes them as Beam's
``RunInference`` does, without a ``BatchElements`` step in front: :class:`PerRowFn` appends
each element to a buffer (per window), and every ``batch_size`` rows, and at the end of each
bundle, scores the buffer in one signature call, its columns built straight from the rows
(``np.stack`` of each input's values, or one ``tf.io.parse_example`` of the records; typed
from the signature, never inferred by Arrow). Each input row gives one output element:

- a row dict, or a ``beam.Row`` / ``NamedTuple`` (Beam's schema'd rows, read by field name):
  a dict of the row's columns (all, or ``keep``) and one entry per prediction;
- serialized Example ``bytes``: ``{"example": record, <prediction>: value, ...}``;
- ``(key, row)``: ``(key, output)`` with either of the above.

As with ``RunInference`` (whose ``BatchElements`` does the same), an output carries its
window and the window's end as its timestamp. A row that does not fit the signature, that
makes the model raise, or an element of another kind (``None``, a list...) fails alone: with
``with_exception_handling()`` it is one dead letter (a one-row table of
:data:`~beamscore.transforms.dead_letters.SCHEMA`, ``source`` ``"row"``, ``"record"`` or
``"row with key K"``; ``(key, table)`` for a keyed row) and the other rows are scored.

Two DoFns, as Beam's ``BatchElements`` has: :class:`PerRowFn` for the global window (no
window parameter, so Beam calls ``process`` on its fastest path) and
:class:`WindowedPerRowFn`, chosen by :meth:`RunSignature.expand` for any other windowing.

**Nothing rides on ``finish_bundle`` where a runner drops it.** Beam 2.77's DaskRunner
collects a DoFn's outputs before it calls ``finish_bundle`` and drops whatever that emits,
which would lose each bundle's last partial batch. On such a runner
(:func:`drops_finish_bundle`) the rows are batched through a step the runner honours
instead: :class:`KeyRowsFn` gives each row a key ``(bundle, window, n // batch_size)`` from
``process``, Beam's ``GroupByKey`` gathers the keys' rows, and :class:`GroupedPerRowFn`
scores each group from ``process`` (:class:`BatchedRows`).
"""

from __future__ import annotations

import gc
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from itertools import repeat
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from beamscore.errors import BeamscoreError
from beamscore.transforms import dead_letters
from beamscore.transforms.elements import Element, pack
from beamscore.transforms.run_signature import DEAD_LETTERS, SCORED, RunSignatureFn
from beamscore.wording import speaking

__all__ = [
    "DEFAULT_ROWS",
    "BatchedRows",
    "GroupedPerRowFn",
    "KeyRowsFn",
    "PerRowFn",
    "WindowedPerRowFn",
    "drops_finish_bundle",
    "score_each",
]

#: rows scored in one call when ``batch_size`` is not given (an image model's 1,024 rows of
#: 224x224x3 float32 hold 600 MB: pass a smaller ``batch_size`` for large rows)
DEFAULT_ROWS = 1024

#: windows buffered at once by :class:`WindowedPerRowFn` before the fullest is flushed
MAX_LIVE_WINDOWS = 10

_GLOBAL = GlobalWindow()

#: set-up PerRowFns of this process that keep the collector's frozen objects frozen
_FREEZERS = [0]
_FREEZE_LOCK = threading.Lock()

_EXPECTED = (
    "per_row=True takes one row (a dict, beam.Row or NamedTuple) or one serialized tf.train.Example (bytes) "
    "per element, or a (key, row) pair"
)


class PerRowFn(RunSignatureFn):
    """:class:`~beamscore.transforms.run_signature.RunSignatureFn` for one row per element,
    in the global window: rows are buffered and scored ``rows`` at a time (see the module
    docstring)."""

    #: freeze the objects alive once the model is loaded (``gc.freeze``) until teardown
    freeze_gc = True

    def __init__(self, *args: Any, rows: int = DEFAULT_ROWS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows = rows
        self._buffer: list[Any] = []
        self._froze = False

    def setup(self) -> None:
        """Load the model, then move every object alive to the collector's permanent
        generation: one row per element makes objects fast enough that Python runs full
        collections often, and each one walks TensorFlow's ~430k objects (0.2-0.5 s here,
        up to half of a 50,000-row job's time). Frozen objects are still freed when
        unreferenced; only cycles among them (garbage not yet collected) wait for
        :meth:`teardown` (``gc.unfreeze``, by the last PerRowFn of the process). A process
        whose code froze objects before is left alone."""
        super().setup()
        if not self.freeze_gc:
            return
        with _FREEZE_LOCK:
            if _FREEZERS[0] == 0 and gc.get_freeze_count():  # frozen by the caller's code: not ours
                return
            gc.freeze()  # (again for a second model's objects)
            _FREEZERS[0] += 1
            self._froze = True

    def teardown(self) -> None:
        if self._froze:
            with _FREEZE_LOCK:
                _FREEZERS[0] -= 1
                if _FREEZERS[0] == 0:
                    gc.unfreeze()
            self._froze = False

    def windowed(self) -> WindowedPerRowFn:
        """The same DoFn for windowed input (its state copied; nothing is loaded yet)."""
        clone = WindowedPerRowFn.__new__(WindowedPerRowFn)
        clone.__dict__.update(self.__dict__)
        return clone

    def start_bundle(self) -> None:
        super().start_bundle()
        self._buffer = []

    def process(self, element: Any) -> Any:  # type: ignore[override]
        # The hot path: one append per row; a full buffer is scored and its outputs returned.
        buffer = self._buffer
        buffer.append(element)
        if len(buffer) < self.rows:
            return ()  # (not None: Beam warns about a process that returns None)
        self._buffer = []
        return self._flush(buffer, _GLOBAL)

    def finish_bundle(self) -> Any:
        buffer, self._buffer = self._buffer, []
        return self._flush(buffer, _GLOBAL) if buffer else ()

    def _flush(self, buffer: list[Any], window: Any) -> list[WindowedValue]:
        """Score the buffered rows of ``window``; one output per row (and one dead letter per
        bad row), each a ``WindowedValue`` at the window's end."""
        start = time.perf_counter()
        with speaking(self.front):
            scored, dead = self._score(buffer)
        if dead:
            self.element_failed.inc(len(dead))
            if not self.dead_letter_output:
                where, message = dead[0][0], dead[0][1]
                raise BeamscoreError(
                    f"{where}: {message} ({len(dead)} of {len(buffer)} rows of a batch failed; "
                    "RunSignature(...).with_exception_handling() sends bad rows to a dead-letter output)"
                )
        self._measure(len(buffer), start)
        at = WindowedValue(None, window.max_timestamp(), (window,)).with_value  # cheaper than a new one per row
        if not self.dead_letter_output:
            return list(map(at, scored))
        out = list(map(at, zip(repeat(SCORED), scored)))
        for where, message, stage, row, keyed, key in dead:
            table = dead_letters.from_element_rows(where, [row], np.zeros(1, np.int64), [message], stage)
            out.append(at((DEAD_LETTERS, (key, table) if keyed else table)))
        return out

    def _score(self, buffer: list[Any]) -> tuple[list[Any], list[tuple]]:
        """The outputs of the good rows and ``(where, message, stage, row, keyed, key)`` per
        bad one. The usual buffers (all dicts, all records, or all keyed pairs of one of
        those) take one pass; mixed buffers are split by kind."""
        kinds = set(map(type, buffer))
        if len(kinds) == 1:
            kind = next(iter(kinds))
            if kind is dict:
                return self._score_kind("rows", buffer, None)
            if kind is bytes:
                return self._score_kind("examples", buffer, None)
            if kind is tuple and all(len(e) == 2 for e in buffer):
                values = [e[1] for e in buffer]
                inner = set(map(type, values))
                if inner == {dict}:
                    return self._score_kind("rows", values, [e[0] for e in buffer])
                if inner == {bytes}:
                    return self._score_kind("examples", values, [e[0] for e in buffer])
        return self._score_mixed(buffer)

    def _score_mixed(self, buffer: list[Any]) -> tuple[list[Any], list[tuple]]:
        groups: dict[tuple[str, bool], tuple[list[Any], list[Any]]] = {}
        dead: list[tuple] = []
        for element in buffer:
            keyed = type(element) is tuple and len(element) == 2
            key, value = element if keyed else (None, element)
            if not isinstance(value, Mapping | bytes) and hasattr(value, "_asdict"):
                value = value._asdict()  # pyright: ignore[reportAttributeAccessIssue]  (beam.Row, a NamedTuple)
            if isinstance(value, Mapping):
                kind = "rows"
            elif isinstance(value, bytes):
                kind = "examples"
            else:
                where = f"row with key {key!r}" if keyed else "row"
                dead.append((where, f"cannot score a {_describe(value)}; {_EXPECTED}", "validate", None, keyed, key))
                continue
            values, keys = groups.setdefault((kind, keyed), ([], []))
            values.append(value)
            keys.append(key)
        outputs: list[Any] = []
        for (kind, keyed), (values, keys) in groups.items():
            scored, bad = self._score_kind(kind, values, keys if keyed else None)
            outputs += scored
            dead += bad
        return outputs, dead

    def _score_kind(self, kind: str, values: list[Any], keys: list[Any] | None) -> tuple[list[Any], list[tuple]]:
        """Rows of one kind (``rows``: dicts, ``examples``: records), ``keys`` for keyed pairs:
        one :class:`~beamscore.transforms.run_signature.ElementScorer` call, then the rows
        back as the element kind's output, one each."""
        element = Element(kind, values, None)
        scored = self._scorer.score(element)
        good = scored.good
        # pack() gives one dict per scored row: its columns (or the record) and predictions.
        outputs = pack(element, good, scored.outputs, self.keep, self._scorer.variable_outputs)
        if keys is not None:
            good_keys = keys if len(good) == len(keys) else [keys[i] for i in good.tolist()]
            outputs = list(zip(good_keys, outputs, strict=True))
        dead = []
        noun = "record" if kind == "examples" else "row"
        for index, messages, stage in scored.rejected:
            for i, message in zip(index.tolist(), messages, strict=True):
                key = None if keys is None else keys[i]
                where = noun if keys is None else f"{noun} with key {key!r}"
                dead.append((where, _own(message), stage, values[i], keys is not None, key))
        return outputs, dead


class WindowedPerRowFn(PerRowFn):
    """:class:`PerRowFn` for windowed input: one buffer per window (at most
    :data:`MAX_LIVE_WINDOWS` at once; then the fullest is flushed), as Beam's
    ``BatchElements`` does."""

    def start_bundle(self) -> None:
        super().start_bundle()
        self._buffers: dict[Any, list[Any]] = {}

    def process(self, element: Any, window: Any = beam.DoFn.WindowParam) -> Any:  # type: ignore[override]
        buffer = self._buffers.get(window)
        if buffer is None:
            buffer = self._buffers[window] = []
        buffer.append(element)
        if len(buffer) >= self.rows:
            del self._buffers[window]
            return self._flush(buffer, window)
        if len(self._buffers) > MAX_LIVE_WINDOWS:
            fullest = max(self._buffers, key=lambda w: len(self._buffers[w]))
            return self._flush(self._buffers.pop(fullest), fullest)
        return ()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        buffers, self._buffers = self._buffers, {}
        for window, buffer in buffers.items():
            yield from self._flush(buffer, window)


def score_each(scorer: Any, keep: list[str] | None, values: list[Any]) -> list[Any]:
    """One result per row of ``values`` (row dicts, schema'd rows or serialized Examples, not
    keyed): the row's output (as :class:`PerRowFn` gives it) or, for a row that cannot be
    scored, a :class:`~beamscore.inference.RowFailed` saying why. Rows of one kind are scored
    in one call. (``SignatureModelHandler``'s rows; ``scorer`` an
    :class:`~beamscore.transforms.run_signature.ElementScorer`.)"""
    from beamscore.inference import RowFailed

    out: list[Any] = [None] * len(values)
    groups: dict[str, list[int]] = {}
    values = list(values)
    for i, value in enumerate(values):
        if not isinstance(value, Mapping | bytes) and hasattr(value, "_asdict"):
            value = values[i] = value._asdict()  # a schema'd row (beam.Row, a NamedTuple)
        if isinstance(value, Mapping):
            groups.setdefault("rows", []).append(i)
        elif isinstance(value, bytes):
            groups.setdefault("examples", []).append(i)
        else:
            out[i] = RowFailed("row", f"cannot score a {_describe(value)}; {_EXPECTED}", "validate")
    for kind, members in groups.items():
        element = Element(kind, [values[i] for i in members], None)
        scored = scorer.score(element)
        packed = pack(element, scored.good, scored.outputs, keep, scorer.variable_outputs)
        for j, output in zip(scored.good.tolist(), packed, strict=True):
            out[members[j]] = output
        noun = "record" if kind == "examples" else "row"
        for index, messages, stage in scored.rejected:
            for j, message in zip(index.tolist(), messages, strict=True):
                out[members[j]] = RowFailed(noun, _own(message), stage)
    return out


def drops_finish_bundle(pipeline: Any) -> str | None:
    """The name of ``pipeline``'s runner when it drops what a DoFn emits from
    ``finish_bundle`` (Beam 2.77's DaskRunner, measured: 0 of 40 rows arrive), else ``None``."""
    runner = getattr(pipeline, "runner", None)
    for cls in type(runner).__mro__:
        if cls.__module__.startswith("apache_beam.runners.dask."):
            return cls.__name__
    return None


class KeyRowsFn(beam.DoFn):
    """Each row as ``((bundle, window, n // rows), row)``, emitted from ``process``: the keys
    cut a bundle's rows of one window into groups of ``rows`` (the last one smaller)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def start_bundle(self) -> None:
        self._bundle = uuid.uuid4().hex
        self._counts: dict[Any, int] = {}

    def process(self, element: Any, window: Any = beam.DoFn.WindowParam) -> Iterator[tuple[tuple, Any]]:
        n = self._counts.get(window, 0)
        self._counts[window] = n + 1
        yield (self._bundle, window, n // self.rows), element


class GroupedPerRowFn(PerRowFn):
    """:class:`PerRowFn` for ``(key, rows)`` groups from ``GroupByKey``: each group is scored
    (``rows`` at a time) and its outputs emitted from ``process``, in the key's window."""

    def process(self, element: Any) -> Any:  # type: ignore[override]
        (_, window, _), rows = element
        rows = list(rows)
        out: list[WindowedValue] = []
        for start in range(0, len(rows), self.rows):
            out += self._flush(rows[start : start + self.rows], window)
        return out

    def finish_bundle(self) -> Any:
        return ()  # (nothing is buffered across elements)


class BatchedRows(beam.PTransform):
    """Rows batched through ``GroupByKey`` and scored by :class:`GroupedPerRowFn`: the
    per-row step for runners that drop ``finish_bundle``'s outputs."""

    def __init__(self, fn: PerRowFn) -> None:
        super().__init__()
        grouped = GroupedPerRowFn.__new__(GroupedPerRowFn)
        grouped.__dict__.update(fn.__dict__)
        self.fn = grouped

    def expand(self, pcoll: Any) -> Any:
        return (
            pcoll
            | "KeyRows" >> beam.ParDo(KeyRowsFn(self.fn.rows))
            | "GroupRows" >> beam.GroupByKey()
            | "ScoreGroups" >> beam.ParDo(self.fn)
        )


def _own(message: str) -> str:
    """A message about row ``i`` of the buffer, without the buffer's index (the dead letter
    is the row's own): ``record 7: bad length`` -> ``bad length``."""
    head, sep, rest = message.partition(": ")
    if sep and head.split(" ")[0] in ("record", "row") and head.split(" ")[-1].isdigit():
        return rest
    return message


def _describe(value: Any) -> str:
    if isinstance(value, list | tuple):
        inner = f" of {type(value[0]).__name__}" if value else ""
        return f"{type(value).__name__}{inner} (a batch: drop per_row=True to score batches)"
    return type(value).__name__
