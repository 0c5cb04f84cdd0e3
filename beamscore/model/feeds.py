"""Parse the inputs of ``beamscore run`` into numpy arrays, with no ``eval`` and no pickle.

Three forms, as ``saved_model_cli run`` takes them, each a ``;``-separated list of
``KEY=VALUE`` pairs:

- ``--inputs 'x=a.npy;y=b.npz[arr];z=c.npz'``: arrays from ``.npy``/``.npz`` files (any
  fsspec URL). An ``.npz`` holding one array needs no ``[name]``. Pickled data (object
  arrays, pickle files) is refused unless ``allow_pickle``: unpickling runs code.
- ``--input-exprs 'x=[[1.0,2.0]];y=np.ones((2,3))'``: Python literals, plus calls of
  ``np.zeros/ones/full/arange/linspace/eye`` whose arguments are literals. The text is
  parsed with :mod:`ast` and only those nodes are evaluated; anything else (a name, an
  attribute, another call, an operator) is refused. ``saved_model_cli`` runs ``eval`` here.
- ``--input-examples 'examples=[{"age":[22,24],"education":["BS","MS"]}]'``: a list of
  dicts, each made into a ``tf.train.Example`` (ints -> int64_list, floats -> float_list,
  strings -> bytes_list) and fed serialized, as a 1-D string array.

Every error is a :class:`BeamscoreError` naming the flag, the key and what was wrong.
"""

from __future__ import annotations

import ast
import io
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line

__all__ = [
    "MAX_ELEMENTS",
    "MAX_INPUT_BYTES",
    "evaluate_expression",
    "examples_to_array",
    "parse_examples",
    "parse_expressions",
    "parse_inputs",
    "split_pairs",
]

#: The largest array an expression may build (``np.ones((10**6, 10**6))`` is refused, not attempted).
MAX_ELEMENTS = 100_000_000
#: The largest file ``--inputs`` reads (``--max-input-bytes`` raises it).
MAX_INPUT_BYTES = 1 << 30

_FILE_VALUE = re.compile(r"^(?P<path>.+?)(?:\[(?P<name>[^\[\]]+)\])?$")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_NUMPY_MODULES = frozenset({"np", "numpy"})
_DTYPE_NAMES = frozenset(
    {
        "bool_",
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "str_",
        "bytes_",
        "object_",
    }
)


def split_pairs(text: str, flag: str) -> list[tuple[str, str]]:
    """``"a=1;b=[1;2]"`` -> ``[("a", "1"), ("b", "[1;2]")]``.

    Splits on ``;`` outside quotes and brackets, so string literals and nested lists may
    hold ``;``; the key is everything before the first ``=``.
    """
    pairs = []
    for part in _split_top_level(text, flag):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise BeamscoreError(f"{flag} {part.strip()!r}: expected INPUT_KEY=VALUE")
        pairs.append((key, value))
    return pairs


def _split_top_level(text: str, flag: str) -> list[str]:
    parts, current, depth, quote = [], [], 0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == ";" and depth <= 0:
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if quote:
        raise BeamscoreError(f"{flag} {_clip(text)}: unterminated string")
    parts.append("".join(current))
    return parts


# --------------------------------------------------------------------------------------
# --inputs: .npy / .npz files


def parse_inputs(text: str, allow_pickle: bool = False, max_bytes: int = MAX_INPUT_BYTES) -> dict[str, np.ndarray]:
    """Load the arrays named by ``--inputs 'x=a.npy;y=b.npz[arr]'``."""
    arrays = {}
    for key, value in split_pairs(text, "--inputs"):
        match = _FILE_VALUE.match(value)
        assert match is not None  # the pattern matches any non-empty text
        loaded = load_array(match["path"], match["name"], key, allow_pickle, max_bytes)
        arrays[_new_key(arrays, key, "--inputs")] = loaded
    return arrays


def load_array(
    url: str, name: str | None, key: str, allow_pickle: bool = False, max_bytes: int = MAX_INPUT_BYTES
) -> np.ndarray:
    """One array from a ``.npy`` or ``.npz`` file; ``name`` picks an array of an ``.npz``.

    The file is checked before it is read: a regular file (not ``/dev/zero``, a directory or
    a pipe) of at most ``max_bytes``; an ``.npy`` header must claim no more than
    :data:`MAX_ELEMENTS` values and no more bytes than the file holds."""
    where = f"--inputs {key}={url}" + (f"[{name}]" if name else "")
    fs, path = bfs.filesystem(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise BeamscoreError(f"{where}: file {url} does not exist") from None
    if info.get("type") != "file":
        raise BeamscoreError(f"{where}: {url} is not a regular file (it is a {info.get('type', 'special file')})")
    size = info.get("size")
    if not isinstance(size, int) or size > max_bytes:
        raise BeamscoreError(
            f"{where}: {url} is {size:,} bytes, over the limit of {max_bytes:,}; raise it with --max-input-bytes"
            if isinstance(size, int)
            else f"{where}: the size of {url} is unknown; only files of a known size are read"
        )
    with fs.open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BeamscoreError(
            f"{where}: {url} holds more than {max_bytes:,} bytes; raise the limit with --max-input-bytes"
        )
    if raw.startswith(_NPY_MAGIC):
        _check_npy_header(raw, where, url)
    if not raw.startswith((_NPY_MAGIC, _ZIP_MAGIC)) and not allow_pickle:
        if raw.startswith(b"\x80"):  # pickle protocol 2 and later
            raise BeamscoreError(f"{where}: {url} holds pickled data; pass --allow-pickle to load it")
        raise BeamscoreError(f"{where}: {url} is not a .npy or .npz file")
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=allow_pickle)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BeamscoreError(f"{where}: {url} holds pickled data; pass --allow-pickle to load it") from None
        raise BeamscoreError(f"{where}: {url} is not a .npy or .npz file: {exc}") from None
    except (OSError, EOFError) as exc:
        raise BeamscoreError(f"{where}: {url} is not a .npy or .npz file: {exc}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if name is None:
                if len(names) != 1:
                    raise BeamscoreError(
                        f"{where}: {url} holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                        f"name one as {key}={url}[NAME]"
                    )
                name = names[0]
            if name not in names:
                raise BeamscoreError(f"{where}: no array {name!r} in {url}; arrays: {', '.join(names) or 'none'}")
            try:
                return loaded[name]
            except ValueError as exc:
                if "pickle" in str(exc).lower():
                    raise BeamscoreError(
                        f"{where}: array {name!r} holds pickled objects; pass --allow-pickle to load it"
                    ) from None
                raise BeamscoreError(f"{where}: cannot read array {name!r}: {exc}") from None
    if name is not None:
        raise BeamscoreError(f"{where}: {url} is a .npy file with one array; drop the [{name}]")
    return np.asarray(loaded)


def _check_npy_header(raw: bytes, where: str, url: str) -> None:
    """Refuse an ``.npy`` whose header claims more values than allowed or than the file holds
    (``np.load`` would allocate what the header claims before reading a byte)."""
    buffer = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buffer)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(buffer, max_header_size=10_000)
    except (ValueError, OSError, EOFError) as exc:
        raise BeamscoreError(f"{where}: {url} has a damaged .npy header: {first_line(str(exc))}") from None
    values = math.prod(shape)
    if values > MAX_ELEMENTS:
        raise BeamscoreError(f"{where}: {url} claims shape {shape} ({values:,} values); the limit is {MAX_ELEMENTS:,}")
    if dtype.hasobject:
        return  # pickled: refused or unpickled below, sized by pickle
    needed = values * dtype.itemsize
    if needed > len(raw) - buffer.tell():
        raise BeamscoreError(
            f"{where}: {url} claims shape {shape} of {dtype} ({needed:,} bytes) but holds "
            f"{len(raw) - buffer.tell():,} bytes of data"
        )


# --------------------------------------------------------------------------------------
# --input-exprs: literals and a few numpy constructors, evaluated from the syntax tree


def parse_expressions(text: str) -> dict[str, np.ndarray]:
    """Evaluate ``--input-exprs 'x=[[1.0,2.0]];y=np.ones((2,3))'`` without ``eval``."""
    arrays = {}
    for key, value in split_pairs(text, "--input-exprs"):
        where = f"--input-exprs {key}"
        result = evaluate_expression(value, where)
        try:
            arrays[_new_key(arrays, key, "--input-exprs")] = _array(result)
        except ValueError as exc:  # ragged nested lists
            raise BeamscoreError(f"{where}: {_clip(value)} is not one rectangular array: {exc}") from None
    return arrays


def _array(value: Any) -> np.ndarray:
    """``value`` as an array; strings ending in NUL as an object array (``S`` and ``U`` arrays
    drop trailing NULs: ``np.asarray([b"1\\x00"])[0] == b"1"``)."""
    array = np.asarray(value)
    if array.dtype.kind in "SU" and _ends_in_nul(value):
        filled = np.empty(array.shape, dtype=object)
        for index in np.ndindex(array.shape):  # item by item: numpy would store the inner lists
            item = value
            for i in index:
                item = item[i]
            filled[index] = item
        return filled
    return array


def _ends_in_nul(value: Any) -> bool:
    if isinstance(value, str | bytes):
        return value.endswith("\x00" if isinstance(value, str) else b"\x00")
    return isinstance(value, list | tuple) and any(_ends_in_nul(v) for v in value)


def evaluate_expression(text: str, where: str = "expression", allow_calls: bool = True) -> Any:
    """The value of ``text``: a Python literal or (if ``allow_calls``) an allowed ``np.*`` call with
    literal arguments."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise BeamscoreError(f"{where}: {_clip(text)} is not a Python expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise BeamscoreError(f"{where}: {_clip(text)} is nested too deeply") from None
    try:
        return _Evaluator(where, text).value(tree.body, allow_calls=allow_calls)
    except RecursionError:
        raise BeamscoreError(f"{where}: {_clip(text)} is nested too deeply") from None


def _clip(text: str, limit: int = 60) -> str:
    """``text`` quoted for an error line, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text):,} characters)"


def _shape_size(shape: Any) -> int:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    return math.prod(int(d) for d in dims)


def _size_zeros(*args: Any, **kwargs: Any) -> int:
    return _shape_size(kwargs["shape"] if "shape" in kwargs else args[0])


def _size_arange(*args: Any, **kwargs: Any) -> int:
    start, stop, step = 0, None, 1
    numbers = [a for a in args if not isinstance(a, np.dtype | str | type)]
    if len(numbers) == 1:
        stop = numbers[0]
    elif len(numbers) >= 2:
        start, stop, *rest = numbers
        step = rest[0] if rest else 1
    start, stop, step = kwargs.get("start", start), kwargs.get("stop", stop), kwargs.get("step", step)
    if stop is None or not step:
        return 0
    return max(0, math.ceil((stop - start) / step))


def _size_linspace(*args: Any, **kwargs: Any) -> int:
    return int(kwargs.get("num", args[2] if len(args) > 2 else 50))


def _size_eye(*args: Any, **kwargs: Any) -> int:
    n = kwargs.get("N", args[0] if args else 0)
    m = kwargs.get("M", args[1] if len(args) > 1 else None)
    return int(n) * int(n if m is None else m)


#: The calls an expression may make, each with the function that sizes its result first.
_CALLS: dict[str, tuple[Callable[..., Any], Callable[..., int]]] = {
    "zeros": (np.zeros, _size_zeros),
    "ones": (np.ones, _size_zeros),
    "full": (np.full, _size_zeros),
    "arange": (np.arange, _size_arange),
    "linspace": (np.linspace, _size_linspace),
    "eye": (np.eye, _size_eye),
}


class _Evaluator:
    """Walks an expression tree, evaluating only literal nodes and allowed ``np`` calls."""

    def __init__(self, where: str, text: str) -> None:
        self.where = where
        self.text = text

    def refuse(self, node: ast.AST, what: str) -> BeamscoreError:
        snippet = ast.get_source_segment(self.text.strip(), node) or ast.dump(node)
        allowed = ", ".join(f"np.{name}" for name in _CALLS)
        return BeamscoreError(
            f"{self.where}: {what} {snippet!r} is not allowed; expressions are Python literals "
            f"and calls of {allowed} with literal arguments"
        )

    def value(self, node: ast.AST, allow_calls: bool = False) -> Any:
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis:
                raise self.refuse(node, "the literal")
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise self.refuse(node, "the ** in")
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.value(node.operand)
            if isinstance(operand, bool) or not isinstance(operand, int | float | complex):
                raise self.refuse(node, "the operator in")
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.Attribute) and self._numpy_attr(node) in _DTYPE_NAMES:
            return np.dtype(getattr(np, self._numpy_attr(node)))
        if isinstance(node, ast.Call):
            if not allow_calls:
                raise self.refuse(node, "the call")
            return self.call(node)
        if isinstance(node, ast.Name):
            raise self.refuse(node, "the name")
        if isinstance(node, ast.Attribute):
            raise self.refuse(node, "the attribute")
        raise self.refuse(node, "the expression")

    def call(self, node: ast.Call) -> Any:
        name = self._numpy_attr(node.func) if isinstance(node.func, ast.Attribute) else None
        if name not in _CALLS:
            raise self.refuse(node.func, "the call of")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg, "the * in")
        args = [self.value(a) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.refuse(node, "the ** in")
            kwargs[kw.arg] = self.value(kw.value)
        fn, size = _CALLS[name]
        try:
            elements = size(*args, **kwargs)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError, IndexError) as exc:
            raise BeamscoreError(f"{self.where}: bad arguments for np.{name}: {exc}") from None
        if elements > MAX_ELEMENTS:
            raise BeamscoreError(
                f"{self.where}: np.{name}(...) would make {elements:,} values; the limit is {MAX_ELEMENTS:,}"
            )
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BeamscoreError(f"{self.where}: bad arguments for np.{name}: {exc}") from None

    @staticmethod
    def _numpy_attr(node: ast.Attribute) -> str | None:
        """``np.zeros`` -> ``"zeros"``; anything but ``np.NAME`` / ``numpy.NAME`` -> ``None``."""
        if isinstance(node.value, ast.Name) and node.value.id in _NUMPY_MODULES:
            return node.attr
        return None


# --------------------------------------------------------------------------------------
# --input-examples: tf.train.Example protos from lists of dicts


def parse_examples(text: str) -> dict[str, np.ndarray]:
    """Build serialized ``tf.train.Example`` s from ``--input-examples 'key=[{...}, ...]'``."""
    arrays = {}
    for key, value in split_pairs(text, "--input-examples"):
        where = f"--input-examples {key}"
        examples = _Evaluator(where, value).value(_parse_literal(value, where))
        arrays[_new_key(arrays, key, "--input-examples")] = examples_to_array(examples, where)
    return arrays


def _parse_literal(text: str, where: str) -> ast.AST:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise BeamscoreError(f"{where}: {_clip(text)} is not a list of dicts: {exc.msg}") from None


def examples_to_array(examples: Any, where: str = "examples") -> np.ndarray:
    """A 1-D object array of serialized Examples, one per dict of ``feature -> values``."""
    import tensorflow as tf

    if isinstance(examples, dict):
        examples = [examples]
    if not isinstance(examples, list | tuple) or not all(isinstance(e, dict) for e in examples):
        raise BeamscoreError(f"{where}: expected a list of dicts (feature name -> list of values)")
    serialized = []
    for i, example in enumerate(examples):
        features = {}
        for feature, values in example.items():
            if not isinstance(feature, str):
                raise BeamscoreError(f"{where}: example {i}: feature name {feature!r} is not a string")
            features[feature] = _feature(values, f"{where}: example {i}, feature {feature!r}")
        proto = tf.train.Example(features=tf.train.Features(feature=features))
        serialized.append(proto.SerializeToString())
    out = np.empty(len(serialized), dtype=object)
    out[:] = serialized
    return out


def _feature(values: Any, where: str) -> Any:
    import tensorflow as tf

    if not isinstance(values, list | tuple):
        values = [values]
    values = list(values)
    if not values:
        return tf.train.Feature()  # no kind: parse_example reads it as empty, whatever the dtype
    if all(isinstance(v, bool | int) for v in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    if all(isinstance(v, str | bytes) for v in values):
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v for v in values])
        )
    kinds = sorted({type(v).__name__ for v in values})
    raise BeamscoreError(
        f"{where}: values must be all ints, all numbers or all strings; got {', '.join(kinds)} in {values!r}"
    )


def _new_key(arrays: dict[str, np.ndarray], key: str, flag: str) -> str:
    if key in arrays:
        raise BeamscoreError(f"{flag}: input {key!r} is given twice")
    return key
