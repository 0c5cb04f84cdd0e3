"""Check arrays given for a signature's inputs before the call, and cast them where no value changes.

TensorFlow answers a wrong dtype or shape with a long "Could not find matching function"
trace. :func:`check_feeds` says instead which input is wrong, what the signature expects
and what was given. Values are cast to the signature's dtype when the cast keeps every
value: ``[[1, 2]]`` (int64 from a literal) feeds a float32 input, ``[3000000000]`` does not
feed an int32 one; float64 feeds float32 unless a finite value would overflow, since Python
floats are float64 and a model's are float32.
"""

from __future__ import annotations

import numpy as np

from beamscore.errors import BeamscoreError
from beamscore.model.binding import STRING, check_feedable_inputs, lossless, numpy_dtype
from beamscore.model.inspect import SignatureInfo, TensorSpec

__all__ = ["check_feeds", "check_one"]


def check_feeds(
    signature: SignatureInfo, feeds: dict[str, np.ndarray], any_batch: bool = False
) -> dict[str, np.ndarray]:
    """Every signature input given once, no other key, each with a fitting dtype and shape;
    inputs with a default (``signature.defaulted``) may be left out.

    ``any_batch``: the signature declares a fixed batch size, which the runner meets by
    feeding batches of exactly that size, so the first dimension may be anything."""
    check_feedable_inputs(signature, components=True)
    unknown = [k for k in feeds if k not in signature.inputs and k not in signature.defaulted]
    if unknown:
        raise BeamscoreError(
            f"input {unknown[0]!r} is not an input of signature {signature.key!r}; "
            f"its inputs: {', '.join(signature.inputs) or 'none'}"
        )
    missing = [k for k in signature.inputs if k not in feeds]
    if missing:
        wanted = ", ".join(f"{k} ({_describe(s)})" for k, s in signature.inputs.items() if k in missing)
        raise BeamscoreError(
            f"signature {signature.key!r} needs input {wanted}; "
            "give it with --inputs, --input-exprs or --input-examples"
        )
    checked = {key: check_one(spec, feeds[key], any_batch) for key, spec in signature.inputs.items()}
    # a TF1 placeholder_with_default: fed when given, else the graph's default
    checked.update({key: check_one(spec, feeds[key]) for key, spec in signature.defaulted.items() if key in feeds})
    return checked


def check_one(spec: TensorSpec, value: np.ndarray, any_batch: bool = False) -> np.ndarray:
    """``value`` as the array to feed ``spec``: cast if lossless, else a one-line error."""
    value = np.asarray(value)
    given = f"given {_kind(value)} of shape {_shape(value.shape)}"
    head = f"input {spec.key!r}: expected {_describe(spec)}, {given}"
    if spec.shape is not None:
        shape = (None, *spec.shape[1:]) if any_batch and spec.shape else spec.shape
        fits = len(shape) == value.ndim and all(d is None or d == n for d, n in zip(shape, value.shape, strict=True))
        if not fits:
            raise BeamscoreError(head)
    if spec.dtype == STRING:
        return _as_strings(value, head)
    want = numpy_dtype(spec.dtype)
    assert want is not None
    if value.dtype.kind in "USOV" or (value.dtype.kind == "c" and want.kind != "c"):
        raise BeamscoreError(head)
    if value.dtype == want:
        return value
    if lossless(value.dtype, want):  # else: cast, and check every value survived
        return value.astype(want)
    with np.errstate(all="ignore"):
        cast = value.astype(want)
        if value.dtype.kind == "f" and want.kind == "f":
            bad = np.isfinite(value) & ~np.isfinite(cast)
        else:
            back = cast.astype(value.dtype)
            bad = ~((back == value) | (np.isnan(value) & np.isnan(back) if value.dtype.kind == "f" else False))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise BeamscoreError(f"{head}; value {value[index].item()!r} at index {index} does not fit {spec.dtype}")
    return cast


def _as_strings(value: np.ndarray, head: str) -> np.ndarray:
    if value.dtype.kind == "S":
        return value
    if value.dtype.kind == "U":
        return np.char.encode(value, "utf-8")
    if value.dtype.kind == "O" and all(isinstance(v, str | bytes) for v in value.flat):
        return value
    raise BeamscoreError(head)


def _describe(spec: TensorSpec) -> str:
    return f"{spec.dtype} of shape {_shape(spec.shape)}"


def _shape(shape: tuple[int | None, ...] | None) -> str:
    if shape is None:
        return "unknown rank"
    return "(" + ", ".join("-1" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def _kind(value: np.ndarray) -> str:
    kind = value.dtype.kind
    if kind in "SU":
        return "string"
    if kind == "O":
        return "object"
    return value.dtype.name
