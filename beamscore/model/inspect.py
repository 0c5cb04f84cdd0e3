"""Read what a SavedModel promises without loading its weights.

``saved_model.pb`` holds every MetaGraph (one per tag set) and its SignatureDefs; parsing
that protobuf is enough to list signatures, check a job's inputs against them and print
``beamscore show`` (``saved_model.pbtxt`` is read when there is no ``.pb``, as TensorFlow
does). ``fingerprint.pb`` identifies the exact export; older exports have none, and get a
hash of ``saved_model.pb`` and ``variables.index`` instead, marked as computed. A *base
directory* with numeric subdirectories (``models/m/1``, ``models/m/00000002``) is resolved
to one version, the highest unless one is asked for, matched as a number, as TensorFlow
Serving does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass, field

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line

__all__ = [
    "CompositeInput",
    "FunctionInfo",
    "MetaGraphInfo",
    "ModelInfo",
    "SignatureInfo",
    "TensorSpec",
    "default_tag_set",
    "inspect_model",
    "parse_tags",
]

_LOG = logging.getLogger(__name__)
SAVED_MODEL_PB = "saved_model.pb"
#: The text form, read when there is no ``saved_model.pb`` (as TensorFlow's loader does).
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
VARIABLES_INDEX = "variables/variables.index"
#: Prefix of a fingerprint computed by beamscore (no ``fingerprint.pb``), never TensorFlow's.
COMPUTED_PREFIX = "computed:"
FINGERPRINT_PB = "fingerprint.pb"
DEFAULT_TAGS = "serve"
DEFAULT_SIGNATURE = "serving_default"
#: Internal signatures TensorFlow writes; ``loaded.signatures`` does not offer them either.
HIDDEN_SIGNATURES = frozenset({"__saved_model_init_op"})


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: its key, dtype name, shape and graph tensor name.

    ``shape`` is ``None`` when the rank is unknown; unknown dimensions are ``None``.
    ``dtype`` is the TensorFlow dtype name (``float32``, ``int64``, ``string``...).
    """

    key: str
    dtype: str
    shape: tuple[int | None, ...] | None
    name: str

    def shape_str(self) -> str:
        """The shape as ``saved_model_cli`` users read it: ``(-1, 64)``, ``unknown rank``."""
        if self.shape is None:
            return "unknown rank"
        return "(" + ", ".join("-1" if d is None else str(d) for d in self.shape) + ")"


@dataclass(frozen=True)
class CompositeInput:
    """A ``tf.RaggedTensorSpec`` or ``tf.SparseTensorSpec`` argument of a TF2 signature.

    TensorFlow flattens it into SignatureDef inputs named from the argument: ``x`` (values) and
    ``x_1`` (row splits) for a ragged ``x``; ``sp`` (indices), ``sp_1`` (values) and ``sp_2``
    (dense shape) for a sparse ``sp``. beamscore feeds it from one list column, building the
    components per batch. ``kind`` is ``"ragged"`` or ``"sparse"``; ``shape`` the dense shape
    (``(None, None)``, or ``(None, 4)`` for a sparse input of declared width); ``components``
    the SignatureDef keys in TensorFlow's order; ``feedable`` is False for what one list column
    cannot give (ragged_rank > 1, sparse of rank other than 2), with ``why``.
    """

    key: str
    kind: str
    dtype: str
    shape: tuple[int | None, ...] | None
    components: tuple[str, ...]
    feedable: bool = True
    why: str = ""
    #: the components' dtype names, in ``components`` order (row splits may be int32)
    component_dtypes: tuple[str, ...] = ()

    def shape_str(self) -> str:
        return TensorSpec(self.key, self.dtype, self.shape, "").shape_str()


@dataclass(frozen=True)
class SignatureInfo:
    """A SignatureDef: its key, method name and input and output specs (sorted by key)."""

    key: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    #: The composite arguments (``RaggedTensorSpec``, ``SparseTensorSpec``) of the function a TF2
    #: signature wraps: its inputs are then their component tensors (values, row splits...),
    #: which no column can feed row by row. Empty for plain tensors and TF1 graphs.
    composite_inputs: tuple[str, ...] = ()
    #: Scalar inputs of a TF1 graph that are ``placeholder_with_default`` (``keep_prob``,
    #: ``is_training``): a Session uses the default when they are not fed, so they are not in
    #: ``inputs`` (which are fed from columns); ``run`` may still feed them.
    defaulted: dict[str, TensorSpec] = field(default_factory=dict)
    #: ``key (tensor)`` of the inputs and outputs of a TF1 SignatureDef whose tensor's op is not
    #: in the graph (a graph stripped or rewritten after the signature was written).
    missing_tensors: tuple[str, ...] = ()
    #: Whether the SignatureDef is a TF1 graph's (no object graph: run in a v1 Session).
    tf1: bool = False
    #: The ragged and sparse arguments, by argument name, whose components are among ``inputs``
    #: (:class:`CompositeInput`); a column feeds each whole.
    composites: dict[str, CompositeInput] = field(default_factory=dict)

    def component_keys(self) -> set[str]:
        """The SignatureDef inputs that are parts of a composite input."""
        return {k for c in self.composites.values() for k in c.components}


@dataclass(frozen=True)
class FunctionInfo:
    """A ``tf.function`` saved on the model's root object, and the inputs each of its traces takes.

    ``saved_model_cli show --all`` lists these as "Defined Functions" (it loads the model
    to find them; they are read here from the object graph in ``saved_model.pb``). Each
    entry of ``calls`` reads like ``serve(x: float32 (-1, 4))``.
    """

    name: str
    calls: tuple[str, ...]


@dataclass(frozen=True)
class MetaGraphInfo:
    """One MetaGraph of a SavedModel, identified by its tag set.

    ``ops`` are the op types its graph and function library use (what ``saved_model_cli
    show --all`` prints per MetaGraph); ``functions`` the root object's saved functions
    (empty for TF1 exports, which have no object graph).
    """

    tags: tuple[str, ...]
    signatures: dict[str, SignatureInfo]
    ops: tuple[str, ...] = ()
    functions: tuple[FunctionInfo, ...] = ()
    #: Whether the MetaGraph has a TF2 object graph; without one (TF1 and Estimator exports)
    #: the model is run in a ``tf.compat.v1`` Session (:mod:`beamscore.model.session`).
    has_object_graph: bool = True
    #: Whether the graph holds variables (so ``variables/`` must be there and readable).
    has_variables: bool = False
    #: The files under ``assets/`` the graph reads (vocabularies of lookup tables...), from
    #: its ``asset_file_def``: a model copied without them fails when it loads.
    assets: tuple[str, ...] = ()

    @property
    def tag_str(self) -> str:
        return ",".join(self.tags)


@dataclass(frozen=True)
class ModelInfo:
    """Everything ``beamscore`` knows about a model before loading it."""

    path: str
    given: str
    version: str | None
    versions: tuple[str, ...]
    fingerprint: str | None
    fingerprint_fields: dict[str, str]
    meta_graphs: tuple[MetaGraphInfo, ...]
    variables_bytes: int | None = field(default=None)
    #: ``True`` when ``fingerprint`` is beamscore's hash of the files (no ``fingerprint.pb``).
    fingerprint_computed: bool = False

    def meta_graph(self, tags: str | tuple[str, ...] = DEFAULT_TAGS) -> MetaGraphInfo:
        """The MetaGraph whose tag set is exactly ``tags``; an error lists the tag sets."""
        wanted = parse_tags(tags)
        for mg in self.meta_graphs:
            if set(mg.tags) == set(wanted):
                return mg
        available = "; ".join(mg.tag_str for mg in self.meta_graphs) or "none"
        raise BeamscoreError(f"tag set {','.join(wanted)!r} not found in {self.path}; available: {available}")

    def signature(self, name: str = DEFAULT_SIGNATURE, tags: str | tuple[str, ...] = DEFAULT_TAGS) -> SignatureInfo:
        """The named signature of the MetaGraph with ``tags``; an error lists the others."""
        mg = self.meta_graph(tags)
        if not mg.signatures:
            functions = "; ".join(call for fn in mg.functions for call in (fn.calls or (f"{fn.name}(...)",)))
            listed = f"; its saved functions: {functions}" if functions else ""
            raise BeamscoreError(
                f"{self.path} [{mg.tag_str}] has no signatures{listed} "
                "(re-export it with tf.saved_model.save(..., signatures=...))"
            )
        if name not in mg.signatures:
            available = ", ".join(sorted(mg.signatures)) or "none"
            raise BeamscoreError(f"signature {name!r} not found in {self.path}; available: {available}")
        return mg.signatures[name]

    def to_dict(self) -> dict:
        """A JSON-ready view, used by ``show --json`` and the manifest."""
        return dataclasses.asdict(self)


def default_tag_set(info: ModelInfo) -> str:
    """The tag set a job uses when none is given: the model's only one (an export with just
    ``serve,gpu``), else ``serve``; spelt as :func:`parse_tags` sorts it."""
    if len(info.meta_graphs) == 1:
        return ",".join(info.meta_graphs[0].tags)
    return DEFAULT_TAGS


def parse_tags(tags: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"serve,gpu"`` -> ``("gpu", "serve")``: a tag set is a set, sorted for display."""
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",")]
    return tuple(sorted(t for t in tags if t))


def inspect_model(url: str | os.PathLike[str], version: int | str | None = None) -> ModelInfo:
    """Resolve ``url`` (a SavedModel dir or a versioned base dir) and read its signatures."""
    url = os.fspath(url)
    fs, path = bfs.filesystem(url)
    if not fs.exists(path):
        raise BeamscoreError(f"model {url!r} does not exist")
    model_path, chosen, versions = _resolve_version(fs, path, url, version)
    name = saved_model_file(fs, model_path)
    with fs.open(bfs.join(model_path, name), "rb") as f:
        raw = f.read()
    meta_graphs = _parse_saved_model(raw, bfs.unstrip(fs, model_path), text=name == SAVED_MODEL_PBTXT)
    fingerprint, fields = _read_fingerprint(fs, model_path)
    computed = fingerprint is None
    if computed:
        fingerprint = _content_fingerprint(fs, model_path, raw)
    return ModelInfo(
        path=bfs.unstrip(fs, model_path),
        given=url,
        version=chosen,
        versions=versions,
        fingerprint=fingerprint,
        fingerprint_fields=fields,
        meta_graphs=meta_graphs,
        variables_bytes=_variables_bytes(fs, model_path),
        fingerprint_computed=computed,
    )


def saved_model_file(fs, model_path: str) -> str:
    """``saved_model.pb``, else ``saved_model.pbtxt``: the file that holds the MetaGraphs."""
    if fs.exists(bfs.join(model_path, SAVED_MODEL_PB)):
        return SAVED_MODEL_PB
    if fs.exists(bfs.join(model_path, SAVED_MODEL_PBTXT)):
        return SAVED_MODEL_PBTXT
    return SAVED_MODEL_PB


def _is_saved_model(fs, path: str) -> bool:
    return fs.exists(bfs.join(path, SAVED_MODEL_PB)) or fs.exists(bfs.join(path, SAVED_MODEL_PBTXT))


def _content_fingerprint(fs, model_path: str, raw: bytes) -> str:
    """A hash of the graph file and ``variables.index`` for exports without ``fingerprint.pb``.

    The index holds every variable's checksum, so two exports differ here when their graphs
    or their weights differ; the prefix says the value is ours, not TensorFlow's.
    """
    digest = hashlib.sha256(raw)
    index = bfs.join(model_path, VARIABLES_INDEX)
    if fs.exists(index):
        with fs.open(index, "rb") as f:
            digest.update(f.read())
    return COMPUTED_PREFIX + "sha256:" + digest.hexdigest()[:32]


def _resolve_version(fs, path: str, url: str, version: int | str | None) -> tuple[str, str | None, tuple[str, ...]]:
    """Return ``(model_dir, version, all_versions)`` for a model or a base dir."""
    has_pb = _is_saved_model(fs, path)
    versions: tuple[str, ...] = ()
    if fs.isdir(path):
        # A version may be a symbolic link to an export dir (fsspec lists links as type "other").
        subdirs = [e["name"] for e in fs.ls(path, detail=True) if e["type"] == "directory" or _dir_link(fs, e)]
        numeric = [s.rstrip("/").rsplit("/", 1)[-1] for s in subdirs]
        numeric = [n for n in numeric if n.isdigit() and _is_saved_model(fs, bfs.join(path, n))]
        versions = tuple(sorted(numeric, key=int))
    if version is not None:
        wanted = str(version).strip()
        # TF Serving's rule: versions are numbers, so 123, 00000123 and the dir 00000123 are one.
        matches = [v for v in versions if wanted.isdigit() and int(v) == int(wanted)]
        if not matches:
            if not versions and has_pb:  # the export itself, not a base dir of versions
                raise BeamscoreError(
                    f"version {wanted} not found: {url} is a SavedModel itself, not a base dir of numbered "
                    "versions (models/m/1, models/m/2); drop the version or give the base dir"
                )
            found = ", ".join(versions) or "none"
            raise BeamscoreError(f"version {wanted} not found in {url}; versions found: {found}")
        if len(matches) > 1:
            raise BeamscoreError(
                f"version {wanted} is ambiguous in {url}: directories {', '.join(matches)} are the same number"
            )
        return bfs.join(path, matches[0]), matches[0], versions
    if has_pb:
        name = path.rstrip("/").rsplit("/", 1)[-1]
        return path, (name if name.isdigit() else None), versions
    if versions:
        return bfs.join(path, versions[-1]), versions[-1], versions
    if not fs.isdir(path):
        raise BeamscoreError(f"{url} is a file, not a SavedModel directory{_file_hint(url)}")
    raise BeamscoreError(
        f"{url} is not a SavedModel: no {SAVED_MODEL_PB} (or {SAVED_MODEL_PBTXT}) in it "
        "and no numeric version subdirectories"
    )


def _dir_link(fs, entry: dict) -> bool:
    """Whether a listed entry is a symbolic link to a directory (a TF Serving version often is)."""
    return bool(entry.get("islink")) and fs.isdir(entry["name"])


#: what a model file that is not a SavedModel directory is, and how to make one of it
_MODEL_FILES = {
    ".keras": "a Keras model file",
    ".h5": "a Keras HDF5 model file",
    ".hdf5": "a Keras HDF5 model file",
    ".pb": "a bare graph file",
    ".tflite": "a TensorFlow Lite model",
}


def _file_hint(url: str) -> str:
    """``: a Keras model file; export a SavedModel with ...`` for the model files users try."""
    suffix = "." + url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
    what = _MODEL_FILES.get(suffix)
    if what is None:
        return "; --model takes the directory that holds saved_model.pb, or a versioned base dir"
    if suffix == ".pb":
        return f" ({what}); --model takes the directory that holds saved_model.pb and variables/"
    if suffix == ".tflite":
        return f" ({what}); beamscore runs SavedModels: score the SavedModel it was converted from"
    return (
        f" ({what}); export a SavedModel with keras.models.load_model({url.rsplit('/', 1)[-1]!r}).export(DIR) "
        "(Keras 3) or tf.saved_model.save(model, DIR), and pass --model DIR"
    )


def _parse_saved_model(raw: bytes, url: str, text: bool = False) -> tuple[MetaGraphInfo, ...]:
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    name = SAVED_MODEL_PBTXT if text else SAVED_MODEL_PB
    sm = saved_model_pb2.SavedModel()
    try:
        if text:
            text_format.Parse(raw.decode("utf-8", errors="replace"), sm)
        else:
            sm.ParseFromString(raw)
    except (DecodeError, text_format.ParseError) as exc:
        raise BeamscoreError(f"{url}/{name} is not a SavedModel protobuf: {first_line(str(exc))}") from None
    if not sm.meta_graphs:
        what = "is empty" if not raw.strip() else "holds no MetaGraph"
        raise BeamscoreError(f"{url}/{name} {what}: not a usable SavedModel (re-export the model)")
    graphs = []
    for mg in sm.meta_graphs:
        sigs = {}
        # A Session (TF1 graphs) may leave a placeholder_with_default unfed; a TF2 function may not.
        with_default = set() if mg.object_graph_def.nodes else _defaulted_placeholders(mg)
        ops = None if mg.object_graph_def.nodes else {n.name for n in mg.graph_def.node}
        composite, specs = _composite_inputs(mg)
        for key in sorted(mg.signature_def):
            if key in HIDDEN_SIGNATURES:
                continue
            sd = mg.signature_def[key]
            inputs = {k: _tensor_spec(k, sd.inputs[k]) for k in sorted(sd.inputs)}
            defaulted = {
                k: spec for k, spec in inputs.items() if spec.shape == () and spec.name.split(":")[0] in with_default
            }
            sigs[key] = SignatureInfo(
                key=key,
                method_name=sd.method_name,
                inputs={k: spec for k, spec in inputs.items() if k not in defaulted},
                outputs={k: _tensor_spec(k, sd.outputs[k]) for k in sorted(sd.outputs)},
                composite_inputs=composite.get(key, ()),
                composites=_match_composites(specs.get(key, []), inputs),
                defaulted=defaulted,
                missing_tensors=_missing_tensors(sd, ops),
                tf1=not mg.object_graph_def.nodes,
            )
        graphs.append(
            MetaGraphInfo(
                tags=parse_tags(list(mg.meta_info_def.tags)),
                signatures=sigs,
                ops=_ops_used(mg),
                functions=_functions_or_none(mg, url),
                has_object_graph=bool(mg.object_graph_def.nodes),
                has_variables=_has_variables(mg),
                assets=tuple(sorted({a.filename for a in mg.asset_file_def if a.filename})),
            )
        )
    return tuple(graphs)


#: Op types that hold a variable: a graph with any of them needs ``variables/``.
_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable"})


def _has_variables(mg) -> bool:
    """Whether restoring this MetaGraph reads a checkpoint (variables in the graph or object graph)."""
    if any(n.WhichOneof("kind") == "variable" for n in mg.object_graph_def.nodes):
        return True
    if any(n.op in _VARIABLE_OPS for n in mg.graph_def.node):
        return True
    return any(n.op in _VARIABLE_OPS for f in mg.graph_def.library.function for n in f.node_def)


def _ops_used(mg) -> tuple[str, ...]:
    """Op types used by the graph and the functions it calls, as ``saved_model_cli`` lists them."""
    from tensorflow.python.framework import meta_graph

    return tuple(sorted(meta_graph.ops_used_by_graph_def(mg.graph_def)))


def _missing_tensors(sd, ops: set[str] | None) -> tuple[str, ...]:
    """``key (tensor)`` of each input and output of ``sd`` whose op is not among ``ops`` (a TF1
    graph's nodes; ``None`` for TF2, whose signature tensors live in functions)."""
    if ops is None:
        return ()
    missing = []
    for kind, infos in (("input", sd.inputs), ("output", sd.outputs)):
        for key in sorted(infos):
            info = infos[key]
            if info.WhichOneof("encoding") == "name" and info.name.split(":")[0].lstrip("^") not in ops:
                missing.append(f"{kind} {key!r} ({info.name})")
    return tuple(missing)


def _defaulted_placeholders(mg) -> set[str]:
    """The names of the graph's ``PlaceholderWithDefault`` nodes (inputs a Session may leave unfed)."""
    return {n.name for n in mg.graph_def.node if n.op == "PlaceholderWithDefault"}


def _composite_inputs(mg) -> tuple[dict[str, tuple[str, ...]], dict[str, list]]:
    """Signature key -> the composite type specs among the arguments of the function it wraps.

    TensorFlow flattens a ``RaggedTensorSpec`` signature argument ``x`` into SignatureDef
    inputs ``x`` (values) and ``x_1`` (row splits), plain tensors nothing marks. The object
    graph's signature node names the wrapper function; the wrapper calls the traced function,
    whose saved input signature still holds the composite spec. One pass over the function
    library for all of a MetaGraph's signatures."""
    graph = mg.object_graph_def
    if not graph.nodes:
        return {}, {}
    sig_nodes = [c.node_id for c in graph.nodes[0].children if c.local_name == "signatures"]
    wrapper_of = {
        c.local_name: graph.nodes[c.node_id].bare_concrete_function.concrete_function_name
        for n in sig_nodes
        for c in graph.nodes[n].children
    }
    wrappers = set(wrapper_of.values())
    calls = {
        fn.signature.name: {node.attr["f"].func.name for node in fn.node_def if "f" in node.attr}
        for fn in mg.graph_def.library.function
        if fn.signature.name in wrappers
    }
    out: dict[str, tuple[str, ...]] = {}
    decoded: dict[str, list] = {}
    for key, wrapper in wrapper_of.items():
        found: list[str] = []
        for name in sorted(calls.get(wrapper, ())):
            if name in graph.concrete_functions:
                signature = graph.concrete_functions[name].canonicalized_input_signature
                before = len(found)
                _type_specs(signature, found)
                if len(found) > before:
                    decoded.setdefault(key, []).extend(_decoded_composites(signature))
        out[key] = tuple(found)
    return out, decoded


def _decoded_composites(signature) -> list:
    """``(name or None, leaves)`` for each argument of a saved input signature that holds a ragged
    or sparse spec: ``leaves`` are ``(label, spec)`` in TensorFlow's flattening order (a dict
    argument's keys sorted; ``label`` is the innermost key, ``None`` for a bare spec). A keyword
    argument's name is known, a positional one's is found from the SignatureDef keys."""
    try:
        import tensorflow as tf
        from tensorflow.python.saved_model import nested_structure_coder
        from tensorflow.python.util import nest

        args, kwargs = nested_structure_coder.decode_proto(signature)
    except Exception as exc:  # noqa: BLE001 - informative: the inputs stay unfeedable as before
        _LOG.info("beamscore: cannot decode a saved input signature: %s", exc)
        return []
    composite = (tf.RaggedTensorSpec, tf.SparseTensorSpec)
    found = []
    for name, arg in [(None, a) for a in args] + sorted(kwargs.items()):
        leaves = [
            (str(path[-1]) if path else None, spec)
            for path, spec in nest.flatten_with_tuple_paths(arg, expand_composites=False)
        ]
        if any(isinstance(spec, composite) for _, spec in leaves):
            found.append((name, leaves))
    return found


def _match_composites(decoded: list, inputs: dict[str, TensorSpec]) -> dict[str, CompositeInput]:
    """Pair each decoded argument's ragged and sparse specs with the SignatureDef inputs that are
    their components. TensorFlow names an argument ``B``'s flattened tensors ``B``, ``B_1``,
    ``B_2``... in order (a ragged spec gives values and row splits; a sparse one indices, values
    and dense shape; a dict argument all its entries' in sorted key order), so the keys are
    found by that run of names with the component dtypes in order. A composite is named after
    its dict key (a TFT feature's name), else after ``B``. An argument no keys match is left out
    (its inputs stay plain, and are refused as before)."""
    if not decoded:
        return {}
    import tensorflow as tf

    used: set[str] = set()
    out: dict[str, CompositeInput] = {}
    for name, leaves in decoded:
        # TensorFlow's flattening: ragged values, splits; sparse indices, values, shape
        parts = [list(getattr(spec, "_component_specs", [spec])) for _, spec in leaves]
        dtypes = [p.dtype.name for group in parts for p in group]

        def keys_of(base: str, count: int = len(dtypes)) -> list[str]:
            return [base] + [f"{base}_{i}" for i in range(1, count)]

        def fits(base: str, dtypes=dtypes) -> bool:
            keys = keys_of(base, len(dtypes))
            return all(
                k in inputs and k not in used and inputs[k].dtype == d for k, d in zip(keys, dtypes, strict=True)
            )

        bases = [name] if name is not None and fits(name) else [k for k in inputs if fits(k)]
        if not bases:
            continue
        keys = keys_of(bases[0])
        used.update(keys)
        at = 0
        for (label, spec), group in zip(leaves, parts, strict=True):
            own = tuple(keys[at : at + len(group)])
            at += len(group)
            if not isinstance(spec, tf.RaggedTensorSpec | tf.SparseTensorSpec):
                continue
            key = label if label is not None and label not in inputs and label not in out else own[0]
            shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
            if isinstance(spec, tf.RaggedTensorSpec):
                ok = spec.ragged_rank == 1 and shape is not None and len(shape) == 2
                why = "" if ok else "a ragged input other than [batch, None] (ragged_rank 1, rank 2)"
                kind = "ragged"
            else:
                ok = shape is not None and len(shape) == 2
                why = "" if ok else "a sparse input of rank other than 2"
                kind = "sparse"
            dts = tuple(p.dtype.name for p in group)
            out[key] = CompositeInput(key, kind, spec.dtype.name, shape, own, ok, why, dts)
    return out


def _type_specs(value, found: list[str]) -> None:
    """Collect the class names of the composite type specs in a ``StructuredValue`` proto."""
    kind = value.WhichOneof("kind")
    if kind == "type_spec_value":
        found.append(value.type_spec_value.type_spec_class_name or "CompositeTensorSpec")
    elif kind in ("list_value", "tuple_value"):
        for item in getattr(value, kind).values:
            _type_specs(item, found)
    elif kind == "dict_value":
        for item in value.dict_value.fields.values():
            _type_specs(item, found)
    elif kind == "named_tuple_value":
        for pair in value.named_tuple_value.values:
            _type_specs(pair.value, found)


def _functions_or_none(mg, url: str) -> tuple[FunctionInfo, ...]:
    """:func:`_functions`, or none if the object graph holds something this TensorFlow cannot decode.

    The list is shown by ``beamscore show --all`` and nothing else depends on it, so a model
    that scores fine must never fail to inspect because of it.
    """
    try:
        return _functions(mg)
    except Exception as exc:  # noqa: BLE001 - informative only; see the docstring
        _LOG.info("beamscore: cannot list the saved functions of %s: %s", url, exc)
        return ()


def _functions(mg) -> tuple[FunctionInfo, ...]:
    """The root object's saved functions and their traced input signatures (no weights loaded)."""
    graph = mg.object_graph_def
    if not graph.nodes:
        return ()
    from tensorflow.python.saved_model import nested_structure_coder

    found = []
    for child in sorted(graph.nodes[0].children, key=lambda c: c.local_name):
        node = graph.nodes[child.node_id]
        if node.WhichOneof("kind") != "function":
            continue
        calls = []
        for name in node.function.concrete_functions:
            if name not in graph.concrete_functions:
                continue
            try:
                args, kwargs = nested_structure_coder.decode_proto(
                    graph.concrete_functions[name].canonicalized_input_signature
                )
            except (ValueError, TypeError, KeyError):
                continue  # a structure this TensorFlow cannot decode: list the function without it
            parts = [_arg_str(a) for a in args] + [f"{k}={_arg_str(v)}" for k, v in sorted(kwargs.items())]
            calls.append(f"{child.local_name}({', '.join(parts)})")
        found.append(FunctionInfo(name=child.local_name, calls=tuple(sorted(calls))))
    return tuple(found)


def _arg_str(value) -> str:
    import tensorflow as tf

    if isinstance(value, tf.TensorSpec):
        shape = None if value.shape.rank is None else tuple(value.shape.as_list())
        spec = TensorSpec(key=value.name or "", dtype=value.dtype.name, shape=shape, name=value.name or "")
        return f"{spec.key or '?'}: {spec.dtype} {spec.shape_str()}"
    return repr(value)


def _tensor_spec(key: str, info) -> TensorSpec:
    from tensorflow.python.framework import dtypes

    # A ref-typed tensor keeps its name (``float32_ref``, as saved_model_cli shows DT_FLOAT_REF);
    # it is fetched as its value (see binding.numpy_dtype).
    dtype = dtypes.as_dtype(info.dtype).name if info.dtype else "invalid"
    shape = None
    if not info.tensor_shape.unknown_rank:
        shape = tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim)
    name = info.name if info.WhichOneof("encoding") == "name" else info.WhichOneof("encoding") or ""
    return TensorSpec(key=key, dtype=dtype, shape=shape, name=name)


def _read_fingerprint(fs, model_path: str) -> tuple[str | None, dict[str, str]]:
    """TensorFlow's "singleprint" (four hashes joined by ``/``) and the raw fields; ``None`` when
    there is no ``fingerprint.pb``, or one that is unreadable or all zeros (an empty file)."""
    fp_path = bfs.join(model_path, FINGERPRINT_PB)
    if not fs.exists(fp_path):
        return None, {}
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import fingerprint_pb2

    fp = fingerprint_pb2.FingerprintDef()
    with fs.open(fp_path, "rb") as f:
        raw = f.read()
    try:
        fp.ParseFromString(raw)
    except DecodeError as exc:
        # TensorFlow loads such a model (it only logs the error): hash the files instead.
        _LOG.warning("beamscore: %s is unreadable (%s); using a hash of the model files", fp_path, first_line(str(exc)))
        return None, {}
    if not any((fp.graph_def_program_hash, fp.signature_def_hash, fp.saved_object_graph_hash, fp.checkpoint_hash)):
        # An empty file parses as all zeros: as a cache key it would be every such model's.
        _LOG.warning("beamscore: %s holds no hashes; using a hash of the model files", fp_path)
        return None, {}
    fields = {
        "saved_model_checksum": str(fp.saved_model_checksum),
        "graph_def_program_hash": str(fp.graph_def_program_hash),
        "signature_def_hash": str(fp.signature_def_hash),
        "saved_object_graph_hash": str(fp.saved_object_graph_hash),
        "checkpoint_hash": str(fp.checkpoint_hash),
    }
    single = "/".join(
        fields[k]
        for k in ("graph_def_program_hash", "signature_def_hash", "saved_object_graph_hash", "checkpoint_hash")
    )
    return single, fields


def _variables_bytes(fs, model_path: str) -> int | None:
    var_dir = bfs.join(model_path, "variables")
    if not fs.exists(var_dir):
        return None
    return int(sum(size for size in fs.du(var_dir, total=False).values()))
