"""``beamscore run``: call one signature of a SavedModel on a few inputs, in one process, no Beam.

What ``saved_model_cli run`` does, without its sharp edges: inputs are parsed without
``eval`` or pickle (:mod:`beamscore.model.feeds`), checked against the signature before the
call (:mod:`beamscore.model.feed_check`), and ``--outdir`` file names are made from output
keys through :func:`beamscore.paths.child`, so a key such as ``../../escaped`` stays inside
the directory.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line
from beamscore.model.binding import WIDENED_OUTPUTS, widen_output
from beamscore.model.feed_check import check_feeds
from beamscore.model.feeds import (
    MAX_INPUT_BYTES,
    evaluate_expression,
    parse_examples,
    parse_expressions,
    parse_inputs,
)
from beamscore.model.inspect import DEFAULT_SIGNATURE, DEFAULT_TAGS, MetaGraphInfo, ModelInfo, SignatureInfo
from beamscore.paths import child

__all__ = [
    "PRINT_OPTIONS",
    "TrialResult",
    "collect_feeds",
    "format_outputs",
    "format_saved",
    "parse_print_options",
    "pick_meta_graph",
    "pick_signature",
    "run_signature",
    "save_outputs",
]

#: numpy print options ``--print-options`` may set.
PRINT_OPTIONS = frozenset(
    {"precision", "threshold", "edgeitems", "linewidth", "suppress", "floatmode", "sign", "nanstr", "infstr"}
)


@dataclass(frozen=True)
class TrialResult:
    """What one ``run`` did: the resolved model, tag set and signature, and the outputs by key."""

    info: ModelInfo
    tags: str
    signature: SignatureInfo
    outputs: dict[str, np.ndarray]


def collect_feeds(
    inputs: list[str] | None = None,
    exprs: list[str] | None = None,
    examples: list[str] | None = None,
    allow_pickle: bool = False,
    max_input_bytes: int = MAX_INPUT_BYTES,
) -> dict[str, np.ndarray]:
    """All arrays given by ``--inputs``, ``--input-exprs`` and ``--input-examples`` (each repeatable).

    ``max_input_bytes`` caps the size of each ``--inputs`` file, checked before reading it."""
    feeds: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for flag, texts, parse in (
        ("--inputs", inputs, lambda t: parse_inputs(t, allow_pickle, max_input_bytes)),
        ("--input-exprs", exprs, parse_expressions),
        ("--input-examples", examples, parse_examples),
    ):
        for text in texts or []:
            for key, array in parse(text).items():
                if key in feeds:
                    raise BeamscoreError(f"input {key!r} is given twice ({origin[key]} and {flag})")
                feeds[key], origin[key] = array, flag
    return feeds


def pick_meta_graph(info: ModelInfo, tag_set: str | None) -> MetaGraphInfo:
    """The MetaGraph asked for; without ``--tag-set``, the only one or else ``serve``."""
    if tag_set is not None:
        return info.meta_graph(tag_set)
    if len(info.meta_graphs) == 1:
        return info.meta_graphs[0]
    if any(mg.tags == (DEFAULT_TAGS,) for mg in info.meta_graphs):
        return info.meta_graph(DEFAULT_TAGS)
    available = "; ".join(mg.tag_str for mg in info.meta_graphs) or "none"
    raise BeamscoreError(f"{info.path} has several tag sets ({available}); choose one with --tag-set")


def pick_signature(info: ModelInfo, mg: MetaGraphInfo, name: str | None) -> SignatureInfo:
    """The signature asked for; without ``--signature``, ``serving_default`` or the only one."""
    if not mg.signatures:
        return info.signature(name or DEFAULT_SIGNATURE, mg.tags)  # raises, listing the saved functions
    if name is None:
        if DEFAULT_SIGNATURE not in mg.signatures and len(mg.signatures) == 1:
            return next(iter(mg.signatures.values()))
        if DEFAULT_SIGNATURE not in mg.signatures:
            available = ", ".join(mg.signatures) or "none"
            raise BeamscoreError(
                f"{info.path} [{mg.tag_str}] has no {DEFAULT_SIGNATURE!r} signature; choose one with "
                f"--signature: {available}"
            )
        name = DEFAULT_SIGNATURE
    return info.signature(name, mg.tags)


def run_signature(
    info: ModelInfo,
    feeds: dict[str, np.ndarray],
    signature: str | None = None,
    tag_set: str | None = None,
    imports: list[str] | tuple[str, ...] = (),
    allow_ops: list[str] | tuple[str, ...] = (),
) -> TrialResult:
    """Check ``feeds`` against the signature, load the model, call the signature once.

    The signature's ops are scanned first (:mod:`beamscore.model.scan`): one that reaches
    files, Python, the process or prints is refused unless ``allow_ops`` allows it.

    The model loads as ``score`` loads it (TF2 or a v1 Session for TF1 graphs), and a graph
    traced for a fixed batch size is fed in batches of exactly that size, as ``score`` does."""
    import tensorflow as tf

    from beamscore.model.checks import check_model_files, fixed_batch_size
    from beamscore.model.loader import ModelSpec, load_model, tf_message
    from beamscore.model.scan import check_model_ops

    mg = pick_meta_graph(info, tag_set)
    sig = pick_signature(info, mg, signature)
    checked = check_feeds(sig, feeds, any_batch=fixed_batch_size(sig) is not None)  # before loading
    check_model_files(info, mg, imports)
    check_model_ops(info, mg.tags, sig.key, allow_ops)
    loaded = load_model(
        ModelSpec(path=info.path, tags=mg.tag_str, fingerprint=info.fingerprint, imports=tuple(imports))
    )
    fn = loaded.signature(sig.key)
    specs = {**sig.defaulted, **sig.inputs}
    tensors = {k: tf.constant(v, dtype=tf.as_dtype(specs[k].dtype)) for k, v in checked.items()}
    try:
        result = fn(**tensors)
    except (tf.errors.OpError, TypeError, ValueError) as exc:
        raise BeamscoreError(f"signature {sig.key!r} of {info.path} failed on these inputs: {tf_message(exc)}") from exc
    outputs = {key: _numpy(result[key]) for key in sorted(result)}
    return TrialResult(info=info, tags=mg.tag_str, signature=sig, outputs=outputs)


def parse_print_options(text: str | None) -> dict[str, object]:
    """``"precision=3,threshold=20"`` -> numpy print options, values read as literals."""
    options: dict[str, object] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in PRINT_OPTIONS:
            names = ", ".join(sorted(PRINT_OPTIONS))
            raise BeamscoreError(f"--print-options {part.strip()!r}: expected NAME=VALUE with NAME one of {names}")
        options[key] = evaluate_expression(value, f"--print-options {key}", allow_calls=False)
    try:
        with np.printoptions(**options):  # numpy checks some values only when it prints
            str(np.array([[1.5, np.nan, -np.inf]] * 3))
            str(np.arange(3))
    except (TypeError, ValueError, OverflowError) as exc:
        raise BeamscoreError(f"--print-options {text!r}: {first_line(str(exc))}") from None
    return options


def format_outputs(outputs: dict[str, np.ndarray], print_options: dict[str, object] | None = None) -> str:
    """Each output as ``output 'KEY': DTYPE SHAPE`` and its values under numpy print options."""
    lines = []
    with np.printoptions(**(print_options or {})):
        for key, value in outputs.items():
            lines.append(f"output {key!r}: {_dtype_name(value)} {tuple(value.shape)}")
            lines.append(str(value))
    return "\n".join(lines)


def save_outputs(outputs: dict[str, np.ndarray], outdir: str, overwrite: bool = False) -> dict[str, str]:
    """Write ``DIR/<key>.npy`` per output (names made safe); existing files need ``overwrite``.

    Every target is checked before any is written, so a refused run writes nothing. String
    outputs are saved as fixed-width bytes (``S``), so reading them needs no pickle, unless a
    value ends in NUL bytes, which ``S`` drops on reading (``b'1\\x00\\x00'`` read back as
    ``b'1'``): those are saved as an object array of the exact bytes, as ``saved_model_cli``
    saves every string output (read with ``np.load(path, allow_pickle=True)``,
    :func:`format_saved` says so). bfloat16 outputs are saved as float32 (numpy would write a
    2-byte void type that reads back as raw bytes).
    """
    fs, root = bfs.filesystem(outdir)
    if fs.exists(root) and not fs.isdir(root):
        raise BeamscoreError(f"--outdir {outdir} is a file, not a directory")
    paths = {key: child(root, f"{key}.npy") for key in outputs}
    if not overwrite:
        existing = [(k, p) for k, p in paths.items() if _exists(fs, p)]
        if existing:
            key, path = existing[0]
            raise BeamscoreError(f"--outdir: {path} exists (output {key!r}); pass --overwrite to replace it")
    fs.makedirs(root, exist_ok=True)
    for key, path in paths.items():
        value = _saved_array(outputs[key])
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=value.dtype.kind == "O")
        # a temporary file renamed over the name: a planted link there is replaced, never followed
        bfs.write_atomic(fs, path, buffer.getvalue(), root)
    return {key: bfs.unstrip(fs, path) for key, path in paths.items()}


def _saved_array(value: np.ndarray) -> np.ndarray:
    """The array ``save_outputs`` writes for an output: strings as ``S`` when that keeps every
    byte, else as they are (an object array of bytes); bfloat16 widened to float32."""
    value = widen_output(value)
    if value.dtype.kind == "O":
        return value if _ends_in_nul(value) else value.astype(bytes)
    return value


def _ends_in_nul(value: np.ndarray) -> bool:
    """Whether a value of an object array of bytes ends in NUL, which an ``S`` array drops."""
    return any(isinstance(v, bytes) and v.endswith(b"\x00") for v in value.flat)


def _exists(fs, path: str) -> bool:
    """Whether ``path`` exists, counting a dangling symbolic link (which ``exists`` misses)."""
    return os.path.lexists(path) if bfs.is_local(fs) else fs.exists(path)


def format_saved(outputs: dict[str, np.ndarray], paths: dict[str, str]) -> str:
    """One line per saved output: key, dtype, shape and the file it went to (and how to read an
    object array, saved for strings ending in NUL bytes)."""
    lines = []
    for key, path in paths.items():
        value = outputs[key]
        how = " (object array: np.load(path, allow_pickle=True))" if _saved_array(value).dtype.kind == "O" else ""
        lines.append(f"output {key!r}: {_dtype_name(value, saved=True)} {tuple(value.shape)} -> {path}{how}")
    return "\n".join(lines)


def _numpy(value: object) -> np.ndarray:
    """A signature's output as numpy: TF2 returns tensors, a v1 Session numpy already."""
    numpy = getattr(value, "numpy", None)
    return np.asarray(numpy() if callable(numpy) else value)


def _dtype_name(value: np.ndarray, saved: bool = False) -> str:
    """``value``'s dtype as printed; ``saved``: as written to ``.npy`` (bfloat16 widened,
    :data:`~beamscore.model.binding.WIDENED_OUTPUTS`), without converting the array."""
    if value.dtype.kind in "OSU":
        return "string"
    return WIDENED_OUTPUTS.get(value.dtype.name, value.dtype).name if saved else value.dtype.name
