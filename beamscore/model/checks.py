"""Model checks the launcher runs before any worker starts, each failing with one line.

A model that cannot work on the workers would otherwise fail there, once per worker, in
hundreds of lines of runner log. What can be known from ``saved_model.pb`` and the
variables index is checked here: ops this TensorFlow does not register (with the package
that registers them, where known, and ``--import`` to load it), a missing or unreadable
``variables/`` index, signatures with no inputs, outputs that are not one row per input row,
and inputs that declare different fixed batch sizes. :func:`import_modules` imports the
``--import`` modules (custom op libraries) on the launcher and in every worker.
"""

from __future__ import annotations

import importlib
import logging

from beamscore import fs as bfs
from beamscore import wording
from beamscore.errors import BeamscoreError, first_line
from beamscore.model.binding import output_dtype
from beamscore.model.inspect import VARIABLES_INDEX, MetaGraphInfo, ModelInfo, SignatureInfo
from beamscore.model.tfpath import tf_readable
from beamscore.wording import bare, option

__all__ = [
    "OP_PACKAGES",
    "check_jit_signature",
    "check_model_files",
    "check_outputs",
    "fixed_batch_size",
    "import_modules",
    "package_for_op",
]

_LOG = logging.getLogger(__name__)

#: Op name prefixes of well-known custom op libraries, and the module that registers them.
OP_PACKAGES: tuple[tuple[str, str], ...] = (
    ("TFText>", "tensorflow_text"),
    ("Sentencepiece", "tensorflow_text"),
    ("Wordpiece", "tensorflow_text"),
    ("FastWordpiece", "tensorflow_text"),
    ("FastBertNormalize", "tensorflow_text"),
    ("RegexSplitWithOffsets", "tensorflow_text"),
    ("CaseFoldUTF8", "tensorflow_text"),
    ("NormalizeUTF8", "tensorflow_text"),
    ("UnicodeScriptTokenize", "tensorflow_text"),
    ("WhitespaceTokenize", "tensorflow_text"),
    ("SplitMergeTokenize", "tensorflow_text"),
    ("RoundRobin", "tensorflow_text"),
    ("SimpleML", "tensorflow_decision_forests"),
    ("YggdrasilDecisionForests", "tensorflow_decision_forests"),
    ("Addons>", "tensorflow_addons"),
    ("IO>", "tensorflow_io"),
    ("TFRA>", "tensorflow_recommenders_addons"),
    ("Scann", "scann"),
)


def package_for_op(op: str) -> str | None:
    """The module known to register ``op``, or ``None``."""
    for prefix, package in OP_PACKAGES:
        if op.startswith(prefix):
            return package
    return None


def import_modules(names: tuple[str, ...] | list[str]) -> None:
    """Import each ``--import`` module (a custom op library registers its ops on import)."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure of a user's module is one line
            why = f"{type(exc).__name__}: {first_line(str(exc))}"
            raise BeamscoreError(f"{option('import', wording.names([name]))}: cannot import it: {why}") from exc


def check_model_files(info: ModelInfo, mg: MetaGraphInfo, imports: tuple[str, ...] | list[str] = ()) -> None:
    """Every op of ``mg`` registered; ``variables/`` present and its index readable when needed."""
    from tensorflow.python.framework import op_def_registry

    missing = [op for op in mg.ops if op_def_registry.get(op) is None]
    if missing:
        op = missing[0]
        package = package_for_op(op)
        imported = f" (imported: {', '.join(imports)})" if imports else ""
        more = f" and {len(missing) - 1} more ({', '.join(missing[1:4])})" if len(missing) > 1 else ""
        hint = (
            f"it is registered by {package}: install it and pass {option('import', wording.names([package]))}"
            if package
            else f"pass {option('import', wording.names(['MODULE']))} with the package that registers it"
        )
        raise BeamscoreError(
            f"{info.path} [{mg.tag_str}] uses op {op!r}{more}, which is not registered in this TensorFlow"
            f"{imported}; {hint}"
        )
    if mg.has_variables:
        _check_variables(info)


def _check_variables(info: ModelInfo) -> None:
    fs, root = bfs.filesystem(info.path)
    index = bfs.join(root, VARIABLES_INDEX)
    if not fs.exists(index):
        raise BeamscoreError(f"{info.path}: the graph has variables but {VARIABLES_INDEX} is missing")
    if not bfs.is_local(fs):
        return  # read on the workers' local copy; remote TF checkpoint reading needs TF's own filesystems
    import tensorflow as tf

    prefix = bfs.join(tf_readable(root), VARIABLES_INDEX)[: -len(".index")]  # TF globs the prefix
    try:
        tf.train.load_checkpoint(prefix)
    except Exception as exc:  # noqa: BLE001 - TF raises several kinds for one bad file
        raise BeamscoreError(
            f"{info.path}: cannot read {VARIABLES_INDEX}: {first_line(str(exc), type(exc).__name__)}"
        ) from None


def check_jit_signature(signature: SignatureInfo) -> None:
    """Refuse ``--jit-compile`` for a signature with a string input or output: XLA has no string
    type, and TensorFlow aborts the whole process (``Check failed: DataTypeCanUseMemcpy``, a core
    dump, the job's claim left behind) at the first call instead of raising."""
    if signature.composites:  # padding rows of components (values, splits) is not padding rows
        key, composite = next(iter(signature.composites.items()))
        raise BeamscoreError(
            f"--jit-compile cannot compile signature {signature.key!r}: its {composite.kind} input {key!r} takes "
            "a different number of values per batch; score it without --jit-compile"
        )
    for kind, specs in (("input", signature.inputs), ("output", signature.outputs)):
        for key, spec in specs.items():
            if spec.dtype.removesuffix("_ref") == "string":
                raise BeamscoreError(
                    f"--jit-compile cannot compile signature {signature.key!r}: its {kind} {key!r} is a string "
                    "tensor, which XLA has no type for; score it without --jit-compile"
                )


def fixed_batch_size(signature: SignatureInfo) -> int | None:
    """The fixed first dimension the signature's inputs declare (e.g. 8 for ``(8, 3)``), or ``None``.

    Such a graph takes exactly that many rows per call; inputs that declare different fixed
    first dimensions cannot be fed together and are refused.
    """
    parts = signature.component_keys()  # a sparse input's dense shape (2,) is no batch size
    dims = {
        key: spec.shape[0]
        for key, spec in signature.inputs.items()
        if spec.shape is not None and len(spec.shape) > 0 and spec.shape[0] is not None and key not in parts
    }
    sizes = sorted(set(dims.values()))
    if len(sizes) > 1:
        listed = ", ".join(f"{k} ({d})" for k, d in sorted(dims.items()))
        raise BeamscoreError(
            f"signature {signature.key!r} declares different fixed batch sizes for its inputs: {listed}; "
            "beamscore feeds all inputs the same rows"
        )
    return sizes[0] if sizes else None


def check_outputs(path: str, signature: SignatureInfo, outputs: list[str]) -> None:
    """Refuse a signature with no inputs or no outputs or naming tensors its graph lacks, outputs
    it does not produce, and chosen outputs that are not one row per input row or whose dtype
    no output file can hold (complex)."""
    unknown = [o for o in outputs if o not in signature.outputs]
    if unknown:
        raise BeamscoreError(
            f"{bare('outputs')} {', '.join(unknown)} not produced by signature {signature.key!r}; "
            f"its outputs: {', '.join(sorted(signature.outputs))}"
        )
    if not signature.inputs:
        raise BeamscoreError(
            f"signature {signature.key!r} of {path} has no inputs; beamscore feeds it rows, so it needs at least one"
        )
    if signature.missing_tensors:  # every row would fail in the Session, one bisected batch at a time
        listed = ", ".join(signature.missing_tensors[:3]) + (" ..." if len(signature.missing_tensors) > 3 else "")
        raise BeamscoreError(
            f"signature {signature.key!r} of {path} names tensors its graph does not have: {listed}; "
            "the SignatureDef does not match the graph (was the graph stripped or rewritten after export?)"
        )
    if not signature.outputs:  # a job would write only the --keep columns and call it scored
        raise BeamscoreError(
            f"signature {signature.key!r} of {path} has no outputs; there is nothing to score (choose another "
            "signature with --signature)"
        )
    batch = fixed_batch_size(signature)
    for key in outputs:
        spec = signature.outputs[key]
        _check_output_dtype(signature, key, outputs)
        if _per_row(signature, key, batch):
            continue
        # only outputs that would pass: a hint naming another scalar output is refused in turn
        others = [o for o in sorted(signature.outputs) if o != key and _writable(signature, o, batch)]
        why = "a scalar" if not spec.shape else f"a fixed first dimension of {spec.shape[0]}"
        hint = f"leave it out with {option('outputs', wording.names(others))}" if others else "re-export the signature"
        raise BeamscoreError(
            f"output {key!r} of signature {signature.key!r} has shape {spec.shape_str()}, {why}, "
            f"not one row per input row; {hint}"
        )


def _per_row(signature: SignatureInfo, key: str, batch: int | None) -> bool:
    """Whether output ``key`` has one row per input row (or a shape we cannot know)."""
    shape = signature.outputs[key].shape
    return shape is None or (len(shape) > 0 and shape[0] in (None, batch))


def _writable(signature: SignatureInfo, key: str, batch: int | None) -> bool:
    """Whether output ``key`` passes :func:`check_outputs`: one row per input row, a dtype we write."""
    try:
        output_dtype(signature.outputs[key].dtype)
    except BeamscoreError:
        return False
    return _per_row(signature, key, batch)


def _check_output_dtype(signature: SignatureInfo, key: str, outputs: list[str]) -> None:
    """An output whose dtype has no Arrow or plain numpy type (complex64, resource, variant) is
    refused here: on the workers it failed every batch with Arrow's "Unsupported numpy type"."""
    spec = signature.outputs[key]
    try:
        output_dtype(spec.dtype)
    except BeamscoreError:
        others = [o for o in outputs if o != key] or [o for o in signature.outputs if o != key]
        hint = f"leave it out with {option('outputs', wording.names(others))}" if others else "re-export the signature"
        raise BeamscoreError(
            f"output {key!r} of signature {signature.key!r} has dtype {spec.dtype}, which beamscore cannot "
            f"write (supported: bool, (u)int8-64, bfloat16/float16-64, string); {hint}"
        ) from None
