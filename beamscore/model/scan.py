"""What a SavedModel's signatures can reach, read from ``saved_model.pb`` before anything runs.

A TensorFlow model is code: its graph may read and write files, call back into Python, talk
to other hosts or print tensors to a file. ``saved_model_cli scan`` lists the ops of a short
denylist (``ReadFile``, ``WriteFile``, ``PrintV2``) anywhere in a MetaGraph; this scan goes
further and is exact about *where*: for each signature, the ops its function can reach (the
graph nodes its tensors depend on, then every function they call through the function
library, nested functions, control flow, ``tf.data`` functions and ``StatefulPartitionedCall``,
transitively), grouped by what they reach (:data:`CATEGORIES`).

Two kinds of file access are the SavedModel's own and are listed, not flagged:

- *machinery*: the saver's save and restore functions (``SaveV2``, ``RestoreV2``,
  ``MergeV2Checkpoints``), reachable from no signature;
- *assets*: file-reading ops (lookup-table initialisers, mostly) whose path is one of the
  model's own asset tensors, which TensorFlow points at the model's ``assets/`` when it loads.

What runs when the model loads (TF2's ``__saved_model_init_op`` and resource initialisers,
TF1's main op, legacy init op and table initialisers) is scanned as one more scope,
``"(load)"``: an initialiser reading a file outside ``assets/`` is flagged there.

Ops of custom-op libraries (``tensorflow_text``...) are listed with their package: their code
is the library's, which the caller chose to import (``--import``), and the scan cannot see
what it does. They are not flagged.

Nothing here loads weights, traces a function or imports Beam; only TensorFlow's protobuf
classes (and its op registry, to tell custom ops) are used.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from beamscore import fs as bfs
from beamscore.errors import BeamscoreError, first_line
from beamscore.model.inspect import HIDDEN_SIGNATURES, SAVED_MODEL_PBTXT, ModelInfo, parse_tags, saved_model_file

__all__ = [
    "CATEGORIES",
    "FLAGGED_OPS",
    "LOAD_SCOPE",
    "MetaGraphScan",
    "ModelScan",
    "OpUse",
    "ScopeScan",
    "check_allow_ops",
    "check_model_ops",
    "refusal",
    "scan_model",
    "scan_saved_model",
]

#: the pseudo-signature name of what runs when the model loads (init op, resource initialisers)
LOAD_SCOPE = "(load)"

FILESYSTEM, PYTHON, PROCESS, PRINT, CUSTOM = "filesystem", "python", "process", "print", "custom"

#: category -> what its ops reach, as messages say it
CATEGORIES: dict[str, str] = {
    FILESYSTEM: "the filesystem",
    PYTHON: "Python",
    PROCESS: "the process, the host or the network",
    PRINT: "streams or files (printing or dumping tensors)",
    CUSTOM: "custom-op libraries",
}

_FILE_READ = (
    "ReadFile",
    "MatchingFiles",
    "ImmutableConst",
    "WholeFileReader",
    "WholeFileReaderV2",
    "TFRecordReader",
    "TFRecordReaderV2",
    "TextLineReader",
    "TextLineReaderV2",
    "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2",
    "LMDBReader",
    "ReaderRead",
    "ReaderReadV2",
    "ReaderReadUpTo",
    "ReaderReadUpToV2",
    "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2",
    "Restore",
    "RestoreV2",
    "RestoreSlice",
    "LoadAndRemapMatrix",
    "GenerateVocabRemapping",
    "TFRecordDataset",
    "TFRecordDatasetV2",
    "TextLineDataset",
    "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2",
    "CSVDataset",
    "CSVDatasetV2",
    "ExperimentalCSVDataset",
    "LMDBDataset",
    "ExperimentalLMDBDataset",
    "SqlDataset",
    "ExperimentalSqlDataset",
    "LoadDataset",
    "SnapshotDatasetReader",
    "SnapshotNestedDatasetReader",
    "ListSnapshotChunksDataset",
    "SnapshotChunkDataset",
    "MatchingFilesDataset",
    "ExperimentalMatchingFilesDataset",
    "RecordInput",
    "FileSystemSetConfiguration",
)
_FILE_WRITE = (
    "WriteFile",
    "Save",
    "SaveV2",
    "SaveSlices",
    "MergeV2Checkpoints",
    "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord",
    "SaveDataset",
    "SaveDatasetV2",
    "SnapshotDataset",
    "SnapshotDatasetV2",
    "CacheDataset",
    "CacheDatasetV2",
)
_PYTHON = ("PyFunc", "PyFuncStateless", "EagerPyFunc")
_PROCESS = (
    "Abort",
    "Rpc",
    "TryRpc",
    "DataServiceDataset",
    "DataServiceDatasetV2",
    "DataServiceDatasetV3",
    "DataServiceDatasetV4",
    "RegisterDataset",
    "RegisterDatasetV2",
    "DistributedSave",
    "CollectiveReduce",
    "CollectiveReduceV2",
    "CollectiveReduceV3",
    "CollectiveGather",
    "CollectiveGatherV2",
    "CollectiveBcastSend",
    "CollectiveBcastRecv",
    "CollectiveBcastSendV2",
    "CollectiveBcastRecvV2",
    "CollectiveAllToAllV2",
    "CollectiveAllToAllV3",
    "CollectiveInitializeCommunicator",
    "CollectiveAssignGroupV2",
    "CollectiveReduceScatterV2",
    "RemoteCall",
    "Send",
    "Recv",
    "ConfigureDistributedTPU",
    "ShutdownDistributedTPU",
    "_Send",
    "_Recv",
    "_HostSend",
    "_HostRecv",
)
_PRINT = (
    "Print",
    "PrintV2",
    "DebugIdentity",
    "DebugIdentityV2",
    "DebugIdentityV3",
    "DebugNanCount",
    "DebugNumericSummary",
    "DebugNumericSummaryV2",
    "CreateSummaryFileWriter",
    "CreateSummaryDbWriter",
    "WriteSummary",
    "WriteScalarSummary",
    "WriteHistogramSummary",
    "WriteImageSummary",
    "WriteAudioSummary",
    "WriteGraphSummary",
    "WriteRawProtoSummary",
    "ImportEvent",
    "FlushSummaryWriter",
    "CloseSummaryWriter",
    "StatsAggregatorSetSummaryWriter",
)

#: every op the scan flags -> its category (saved_model_cli's denylist is ReadFile, WriteFile, PrintV2)
FLAGGED_OPS: dict[str, str] = {
    **dict.fromkeys(_FILE_READ + _FILE_WRITE, FILESYSTEM),
    **dict.fromkeys(_PYTHON, PYTHON),
    **dict.fromkeys(_PROCESS, PROCESS),
    **dict.fromkeys(_PRINT, PRINT),
}

#: file ops -> the index of the input that holds the path: a path that is one of the model's
#: asset tensors is the model reading its own ``assets/`` (listed, not flagged)
_PATH_INPUT = {
    "ReadFile": 0,
    "InitializeTableFromTextFile": 1,
    "InitializeTableFromTextFileV2": 1,
    "TFRecordDataset": 0,
    "TFRecordDatasetV2": 0,
    "TextLineDataset": 0,
    "FixedLengthRecordDataset": 0,
    "FixedLengthRecordDatasetV2": 0,
    "CSVDataset": 0,
    "CSVDatasetV2": 0,
    "WriteFile": 0,
    "MatchingFiles": 0,
    "CacheDataset": 1,
    "CacheDatasetV2": 1,
}
#: file ops that only read: reading an asset is the model's own business
_READ_ONLY = frozenset(_FILE_READ)
#: caching a dataset in memory (an empty file name) touches no file
_MEMORY_WHEN_EMPTY = frozenset({"CacheDataset", "CacheDatasetV2"})

#: TF1 collections whose ops the loader runs (``saved_model_main_op``, ``legacy_init_op``...)
_LOAD_COLLECTIONS = ("saved_model_main_op", "legacy_init_op", "main_op", "table_initializer")
#: object-graph functions TF2's loader calls on resources when it restores them
_LOAD_FUNCTIONS = ("_create_resource", "_initialize")
_PASS_THROUGH = frozenset({"Identity", "IdentityN", "Snapshot", "StopGradient", "PlaceholderWithDefault"})
_CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


@dataclass(frozen=True)
class OpUse:
    """One flagged or listed op: its type, category, the function (or ``graph``) and node it is
    in, and a detail where one is known (a constant path, a print's output stream)."""

    op: str
    category: str
    function: str
    node: str
    detail: str = ""

    def describe(self) -> str:
        where = f"{self.function}/{self.node}"
        return f"{self.op} ({self.detail}; {where})" if self.detail else f"{self.op} ({where})"


@dataclass(frozen=True)
class ScopeScan:
    """What one signature (or the load step, :data:`LOAD_SCOPE`) can reach.

    ``flagged``: ops it reaches that touch what :data:`CATEGORIES` names; ``assets``: file
    reads of the model's own assets; ``custom``: ops of custom-op libraries (with their
    package where known); ``ops``: every op type reachable, sorted."""

    name: str
    ops: tuple[str, ...]
    flagged: tuple[OpUse, ...] = ()
    assets: tuple[OpUse, ...] = ()
    custom: tuple[OpUse, ...] = ()

    def flagged_ops(self, allow: Iterable[str] = ()) -> dict[str, str]:
        """op -> category of what is flagged and not in ``allow``, sorted by op."""
        allowed = set(allow)
        return dict(sorted((u.op, u.category) for u in self.flagged if u.op not in allowed))

    def to_dict(self) -> dict[str, Any]:
        def uses(items: tuple[OpUse, ...]) -> list[dict[str, str]]:
            return [
                {"op": u.op, "category": u.category, "function": u.function, "node": u.node, "detail": u.detail}
                for u in items
            ]

        return {
            "flagged": uses(self.flagged),
            "assets": uses(self.assets),
            "custom_ops": uses(self.custom),
            "ops": list(self.ops),
        }


@dataclass(frozen=True)
class MetaGraphScan:
    """One MetaGraph's scan: each signature's scope, the load step's, and the machinery."""

    tags: tuple[str, ...]
    signatures: dict[str, ScopeScan]
    load: ScopeScan
    machinery: tuple[OpUse, ...] = ()

    @property
    def tag_str(self) -> str:
        return ",".join(self.tags)

    def scopes(self) -> list[ScopeScan]:
        return [*self.signatures.values(), self.load]


@dataclass(frozen=True)
class ModelScan:
    """The scan of every MetaGraph of a SavedModel."""

    path: str
    meta_graphs: tuple[MetaGraphScan, ...] = field(default_factory=tuple)

    def meta_graph(self, tags: str | tuple[str, ...]) -> MetaGraphScan:
        wanted = set(parse_tags(tags))
        for mg in self.meta_graphs:
            if set(mg.tags) == wanted:
                return mg
        available = "; ".join(mg.tag_str for mg in self.meta_graphs) or "none"
        raise BeamscoreError(f"tag set {','.join(sorted(wanted))!r} not found in {self.path}; available: {available}")

    def flagged(self, allow: Iterable[str] = ()) -> bool:
        allowed = set(allow)
        return any(scope.flagged_ops(allowed) for mg in self.meta_graphs for scope in mg.scopes())

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "meta_graphs": [
                {
                    "tags": list(mg.tags),
                    "signatures": {k: s.to_dict() for k, s in mg.signatures.items()},
                    "load": mg.load.to_dict(),
                    "machinery": [
                        {"op": u.op, "category": u.category, "function": u.function, "node": u.node}
                        for u in mg.machinery
                    ],
                }
                for mg in self.meta_graphs
            ],
        }


def scan_model(info: ModelInfo) -> ModelScan:
    """Scan the model ``info`` describes (its ``saved_model.pb`` or ``.pbtxt``; no weights)."""
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    fs, root = bfs.filesystem(info.path)
    name = saved_model_file(fs, root)
    with fs.open(bfs.join(root, name), "rb") as f:
        raw = f.read()
    sm = saved_model_pb2.SavedModel()
    try:
        if name == SAVED_MODEL_PBTXT:
            text_format.Parse(raw.decode("utf-8", errors="replace"), sm)
        else:
            sm.ParseFromString(raw)
    except (DecodeError, text_format.ParseError) as exc:
        raise BeamscoreError(f"{info.path}/{name} is not a SavedModel protobuf: {first_line(str(exc))}") from None
    return scan_saved_model(sm, info.path)


def scan_saved_model(sm: Any, path: str = "") -> ModelScan:
    """Scan a parsed ``SavedModel`` protobuf."""
    return ModelScan(path=path, meta_graphs=tuple(_scan_meta_graph(mg) for mg in sm.meta_graphs))


def check_allow_ops(allow_ops: Iterable[str], where: str = "--allow-ops") -> list[str]:
    """The op names of ``allow_ops``; a name the scan never flags is refused (a typo would
    otherwise allow nothing and say nothing), with the closest flagged op's name."""
    names = list(allow_ops)
    for name in names:
        if not isinstance(name, str) or name not in FLAGGED_OPS:
            close = difflib.get_close_matches(str(name), list(FLAGGED_OPS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BeamscoreError(
                f"{where}: {name!r} is no op the scan flags{hint}; beamscore scan MODEL lists a model's flagged ops"
            )
    return names


def check_model_ops(
    info: ModelInfo, tags: str | tuple[str, ...], signature: str, allow_ops: Iterable[str]
) -> list[str]:
    """The launcher's check: refuse ``signature`` (and the model's load step) when it reaches
    an op the scan flags that ``allow_ops`` does not allow, in one line naming the signature,
    the ops, what they reach and the option that allows them (worded for the caller:
    ``--allow-ops`` or ``allow_ops=[...]``). Returns the allowed ops it does use (for the
    manifest)."""
    from beamscore import wording

    allowed = set(check_allow_ops(allow_ops, wording.flag("allow_ops")))
    meta_graph = scan_model(info).meta_graph(tags)
    scopes = [meta_graph.signatures[signature], meta_graph.load] if signature in meta_graph.signatures else []
    for scope in scopes:
        message = refusal(info.path, scope, allowed, lambda ops: wording.option("allow_ops", wording.names(ops)))
        if message:
            raise BeamscoreError(message)
    return sorted({u.op for scope in scopes for u in scope.flagged if u.op in allowed})


def refusal(path: str, scope: ScopeScan, allow: Iterable[str], option: Callable[[list[str]], str]) -> str | None:
    """The one line that refuses ``scope`` (a signature, or the load step), or ``None`` when
    everything it reaches is allowed. ``option(ops)`` words the option that allows ``ops``."""
    flagged = scope.flagged_ops(allow)
    if not flagged:
        return None
    by_category: dict[str, list[str]] = {}
    for op, category in flagged.items():
        by_category.setdefault(category, []).append(op)
    reaches = " and ".join(f"{CATEGORIES[c]} ({', '.join(ops)})" for c, ops in by_category.items())
    who = "the model's load step (init op)" if scope.name == LOAD_SCOPE else f"signature {scope.name!r}"
    allowed = option(list(flagged))
    return (
        f"{who} of {path} uses ops that reach {reaches}; a model is code: run it only if you trust it, "
        f"with {allowed} (beamscore scan lists where they are)"
    )


# --- the walk -------------------------------------------------------------------------------


class _Graph:
    """A MetaGraph's top-level graph and function library, indexed for the walk."""

    def __init__(self, mg: Any) -> None:
        self.top = {n.name: n for n in mg.graph_def.node}
        self.functions = {f.signature.name: f for f in mg.graph_def.library.function}
        self.bodies: dict[str, dict[str, Any]] = {"": self.top}
        self.args: dict[str, list[str]] = {}
        for name, fn in self.functions.items():
            self.bodies[name] = {n.name: n for n in fn.node_def}
            self.args[name] = [a.name for a in fn.signature.input_arg]
        # what each node calls (read once: protobuf attrs are slow to walk), and who calls each function
        self.calls: dict[tuple[str, str], list[str]] = {}
        self.callers: dict[str, list[tuple[str, Any]]] = {}
        for body, nodes in self.bodies.items():
            for node in nodes.values():
                callees = _callees(node, self.functions)
                if callees:
                    self.calls[(body, node.name)] = callees
                for callee in callees:
                    self.callers.setdefault(callee, []).append((body, node))
        self.assets = _asset_nodes(mg)

    def reach(self, start: Iterable[str]) -> tuple[list[tuple[str, Any]], set[str]]:
        """Top-level nodes the tensors ``start`` depend on, then every function they call,
        transitively: ``([(body, node), ...], functions)``."""
        seen: set[str] = set()
        todo = [_node_name(t) for t in start]
        found: list[tuple[str, Any]] = []
        while todo:
            name = todo.pop()
            if name in seen or name not in self.top:
                continue
            seen.add(name)
            node = self.top[name]
            found.append(("graph", node))
            todo.extend(_node_name(i) for i in node.input)
        pending = [c for _, node in found for c in self.calls.get(("", node.name), ())]
        functions = self.close(pending, found)
        return found, functions

    def close(self, pending: list[str], found: list[tuple[str, Any]]) -> set[str]:
        """Every function of ``pending`` and those they call, transitively; their nodes are
        added to ``found`` as ``(function, node)``."""
        functions: set[str] = set()
        while pending:
            fn = pending.pop()
            if fn in functions:
                continue
            functions.add(fn)
            for node in self.bodies[fn].values():
                found.append((fn, node))
                pending.extend(self.calls.get((fn, node.name), ()))
        return functions

    def path_sources(self, body: str, tensor: str, depth: int = 0) -> list[tuple[str, str]]:
        """Where the string tensor ``tensor`` of ``body`` comes from: ``("asset", name)`` for a
        model asset tensor, ``("const", value)`` for a constant, ``("other", op)`` otherwise."""
        if depth > 64:
            return [("other", "too deep")]
        name = _node_name(tensor)
        nodes = self.bodies.get("" if body == "graph" else body, {})
        if body not in ("graph", "") and name in self.args.get(body, ()) and name not in nodes:
            index = self.args[body].index(name)
            sites = [(b, n) for b, n in self.callers.get(body, []) if n.op in _CALLS or n.op == body]
            if not sites:
                return [("other", "function argument")]
            out: list[tuple[str, str]] = []
            for caller_body, node in sites:
                inputs = [i for i in node.input if not i.startswith("^")]
                if index >= len(inputs):
                    out.append(("other", node.op))
                    continue
                out.extend(self.path_sources(caller_body or "graph", inputs[index], depth + 1))
            return out
        node = nodes.get(name)
        if node is None:
            return [("other", "unknown")]
        if body in ("graph", "") and name in self.assets:
            return [("asset", self.assets[name] or name)]
        if node.op == "Const":
            return [("const", _const_string(node))]
        if node.op in _PASS_THROUGH and node.input:
            return self.path_sources(body, node.input[0], depth + 1)
        if node.op == "ReadVariableOp" and node.input:
            var = _node_name(node.input[0])
            writes = [
                n for n in nodes.values() if n.op == "AssignVariableOp" and n.input and _node_name(n.input[0]) == var
            ]
            if writes:
                return [s for w in writes for s in self.path_sources(body, w.input[1], depth + 1)]
        return [("other", node.op)]


def _scan_meta_graph(mg: Any) -> MetaGraphScan:
    graph = _Graph(mg)
    custom_of = _custom_ops({n.op for nodes in graph.bodies.values() for n in nodes.values()}, graph.functions)
    signatures = {}
    for key in sorted(mg.signature_def):
        if key in HIDDEN_SIGNATURES:
            continue
        sd = mg.signature_def[key]
        tensors = [t.name for t in sd.outputs.values()] + [t.name for t in sd.inputs.values()]
        tensors += [c for t in list(sd.outputs.values()) + list(sd.inputs.values()) for c in _component_names(t)]
        signatures[key] = _scope(graph, key, graph.reach(tensors)[0], custom_of)
    hidden = [mg.signature_def[k] for k in HIDDEN_SIGNATURES if k in mg.signature_def]
    load_start = [t.name for sd in hidden for t in sd.outputs.values()]
    for name in _LOAD_COLLECTIONS:
        if name in mg.collection_def:
            load_start.extend(mg.collection_def[name].node_list.value)
    found, _ = graph.reach(load_start)
    found += _object_graph_load(mg, graph)
    load = _scope(graph, LOAD_SCOPE, found, custom_of)
    saver = mg.saver_def
    machinery_found, _ = graph.reach([n for n in (saver.save_tensor_name, saver.restore_op_name) if n])
    machinery = tuple(
        sorted(
            {
                OpUse(node.op, FLAGGED_OPS[node.op], body, node.name)
                for body, node in machinery_found
                if node.op in FLAGGED_OPS
            },
            key=lambda u: (u.function, u.node),
        )
    )
    return MetaGraphScan(
        tags=parse_tags(list(mg.meta_info_def.tags)), signatures=signatures, load=load, machinery=machinery
    )


def _scope(graph: _Graph, name: str, found: list[tuple[str, Any]], custom_of: dict[str, str]) -> ScopeScan:
    flagged: list[OpUse] = []
    assets: list[OpUse] = []
    custom: list[OpUse] = []
    ops: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for body, node in found:
        if (body, node.name) in seen:
            continue
        seen.add((body, node.name))
        if node.op in graph.functions:
            continue  # a call by the function's name: its body is walked
        ops.add(node.op)
        if node.op in custom_of:
            custom.append(OpUse(node.op, CUSTOM, body, node.name, custom_of[node.op]))
        category = FLAGGED_OPS.get(node.op)
        if category is None:
            continue
        kind, detail = _judge(graph, body, node)
        use = OpUse(node.op, category, body, node.name, detail)
        if kind == "asset":
            assets.append(use)
        elif kind == "flag":
            flagged.append(use)

    def order(u: OpUse) -> tuple[str, str, str]:
        return (u.op, u.function, u.node)

    return ScopeScan(
        name=name,
        ops=tuple(sorted(ops)),
        flagged=tuple(sorted(flagged, key=order)),
        assets=tuple(sorted(assets, key=order)),
        custom=tuple(sorted(custom, key=order)),
    )


def _judge(graph: _Graph, body: str, node: Any) -> tuple[str, str]:
    """``("flag" | "asset" | "none", detail)`` for a flagged op type at ``node``."""
    if node.op in ("Print", "PrintV2"):
        stream = node.attr["output_stream"].s.decode("utf-8", "replace") if "output_stream" in node.attr else ""
        return "flag", f"to {stream}" if stream else ""
    index = _PATH_INPUT.get(node.op)
    inputs = [i for i in node.input if not i.startswith("^")]
    if index is None or index >= len(inputs):
        return "flag", ""
    sources = graph.path_sources(body, inputs[index])
    if sources and all(kind == "asset" for kind, _ in sources) and node.op in _READ_ONLY:
        return "asset", "reads " + ", ".join(sorted({f"assets/{v}" for _, v in sources}))
    consts = sorted({v for kind, v in sources if kind == "const"})
    if node.op in _MEMORY_WHEN_EMPTY and sources and all(k == "const" and not v for k, v in sources):
        return "none", ""
    return "flag", ("path " + ", ".join(repr(c) for c in consts)) if consts else ""


def _object_graph_load(mg: Any, graph: _Graph) -> list[tuple[str, Any]]:
    """The functions TF2's loader calls on resources (``_create_resource``, ``_initialize``)
    and saveable objects' restore functions: they run when the model loads."""
    og = mg.object_graph_def
    names: list[str] = []
    for node in og.nodes:
        targets = [c.node_id for c in node.children if c.local_name in _LOAD_FUNCTIONS]
        targets += [s.restore_function for s in node.saveable_objects.values() if s.restore_function]
        for t in targets:
            if t >= len(og.nodes):
                continue
            target = og.nodes[t]
            kind = target.WhichOneof("kind")
            if kind == "function":
                names.extend(target.function.concrete_functions)
            elif kind == "bare_concrete_function":
                names.append(target.bare_concrete_function.concrete_function_name)
    found: list[tuple[str, Any]] = []
    graph.close([n for n in names if n in graph.functions], found)
    return found


def _asset_nodes(mg: Any) -> dict[str, str]:
    """Top-level nodes that hold the model's asset paths -> the asset's file name: what the
    loader feeds with a path in ``assets/`` (``asset_file_def``; TF1's ``saved_model_assets``
    collection). TF1's ``asset_filepaths`` collection is not enough: it lists every
    ``TextFileInitializer``'s path when the graph is built, including those the export did
    not copy into ``assets/``."""
    names = {_node_name(a.tensor_info.name): a.filename for a in mg.asset_file_def}
    if "saved_model_assets" in mg.collection_def:
        from tensorflow.core.protobuf import meta_graph_pb2

        for any_value in mg.collection_def["saved_model_assets"].any_list.value:
            asset = meta_graph_pb2.AssetFileDef()
            if any_value.Unpack(asset):
                names.setdefault(_node_name(asset.tensor_info.name), asset.filename)
    return names


def _callees(node: Any, functions: dict[str, Any]) -> list[str]:
    """The library functions a node calls: every function-valued attr (``f``, branches, loop
    bodies, ``tf.data`` functions, lists of functions), and its op when that names one."""
    out = [node.op] if node.op in functions else []
    for value in node.attr.values():
        kind = value.WhichOneof("value")
        if kind == "func":
            out.append(value.func.name)
        elif kind == "list" and len(value.list.func):
            out.extend(f.name for f in value.list.func)
    return [name for name in out if name in functions]


def _component_names(info: Any) -> list[str]:
    """The tensor names of a composite (sparse, ragged) TensorInfo's components."""
    kind = info.WhichOneof("encoding")
    if kind == "coo_sparse":
        c = info.coo_sparse
        return [c.indices_tensor_name, c.values_tensor_name, c.dense_shape_tensor_name]
    if kind == "composite_tensor":
        return [t.name for t in info.composite_tensor.components]
    return []


def _node_name(tensor: str) -> str:
    """``^a``, ``a:0``, ``a:output:0`` -> ``a``."""
    return tensor.lstrip("^").split(":", 1)[0]


def _const_string(node: Any) -> str:
    """A string constant's first value (a path), or ``""``."""
    tensor = node.attr["value"].tensor if "value" in node.attr else None
    if tensor is None or not tensor.string_val:
        return ""
    return tensor.string_val[0].decode("utf-8", "replace")


def _custom_ops(ops: set[str], functions: dict[str, Any]) -> dict[str, str]:
    """op -> the package of its custom-op library (``"unregistered"`` when none is known and
    this TensorFlow does not register it), for the op types that are not TensorFlow's own."""
    from beamscore.model.checks import package_for_op

    out: dict[str, str] = {}
    registry = None
    try:
        from tensorflow.python.framework import op_def_registry

        registry = op_def_registry
    except ImportError:  # pragma: no cover - TensorFlow is a dependency
        pass
    for op in ops:
        if op in functions:
            continue
        package = package_for_op(op)
        if package:
            out[op] = package
        elif registry is not None and registry.get(op) is None:
            out[op] = "unregistered"
    return out
