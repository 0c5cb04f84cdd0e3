"""Render :class:`~beamscore.model.inspect.ModelInfo` for ``beamscore show`` (text or JSON)."""

from __future__ import annotations

import json
import textwrap

from beamscore import fs as bfs
from beamscore.console import human_size
from beamscore.model.inspect import MetaGraphInfo, ModelInfo, SignatureInfo, TensorSpec

__all__ = ["render_json", "render_models_json", "render_models_text", "render_text", "warnings"]

#: one model of several to show: ``(name, info, tag set, signature)`` (``name`` ``""``: unnamed)
Shown = tuple[str, ModelInfo, "str | None", "str | None"]


def render_models_text(views: list[Shown], show_all: bool) -> str:
    """Several models (``--model NAME=PATH`` repeated, a config's ``models:``): a line that
    counts them, then each model's view as :func:`render_text` draws one, indented under its
    name, with its own tag set and signature (a model's signature shows its inputs and outputs)."""
    if len(views) == 1 and not views[0][0]:
        _, info, tag_set, signature = views[0]
        return render_text(info, tag_set, signature, show_all)
    lines = [f"models:       {len(views)} ({', '.join(name for name, *_ in views)})"]
    for name, info, tag_set, signature in views:
        lines += ["", f"model {name!r}:"]
        lines += [f"  {line}" if line else "" for line in render_text(info, tag_set, signature, show_all).splitlines()]
    return "\n".join(lines)


def render_models_json(views: list[Shown], show_all: bool) -> str:
    """Several models as JSON: ``{"models": {NAME: <render_json's object>}}``, in order."""
    if len(views) == 1 and not views[0][0]:
        _, info, tag_set, signature = views[0]
        return render_json(info, tag_set, signature, show_all)
    data = {
        "models": {name: _json_dict(info, tag_set, signature, show_all) for name, info, tag_set, signature in views}
    }
    return json.dumps(data, indent=2)


def render_json(info: ModelInfo, tag_set: str | None, signature: str | None, show_all: bool) -> str:
    """The facts as JSON, filtered like the text view (``--tag-set``, ``--signature``)."""
    return json.dumps(_json_dict(info, tag_set, signature, show_all), indent=2)


def _json_dict(info: ModelInfo, tag_set: str | None, signature: str | None, show_all: bool) -> dict:
    data = info.to_dict()
    graphs = _graphs(info, tag_set, signature, show_all)
    data["meta_graphs"] = [
        {
            "tags": list(mg.tags),
            "tag_set": mg.tag_str,
            "signatures": {k: _sig_dict(s) for k, s in mg.signatures.items() if signature is None or k == signature},
            "functions": {f.name: list(f.calls) for f in mg.functions},
            "ops": list(mg.ops),
        }
        for mg in graphs
    ]
    return data


def render_text(info: ModelInfo, tag_set: str | None, signature: str | None, show_all: bool) -> str:
    """``saved_model_cli show`` facts, plus fingerprint, versions and variables size.

    Without flags: tag sets and each tag set's signature keys; ``--signature`` adds that
    signature's inputs and outputs; ``--all`` every signature, saved function and op.
    """
    lines = [f"model:        {info.path}"]
    if info.versions:
        lines.append(f"versions:     {', '.join(info.versions)} (using {info.version})")
    computed = " (computed by beamscore: no usable fingerprint.pb)" if info.fingerprint_computed else ""
    lines.append(f"fingerprint:  {info.fingerprint or 'none (no fingerprint.pb)'}{computed}")
    if info.variables_bytes is not None:
        lines.append(f"variables:    {human_size(info.variables_bytes)}")
    else:
        lines.append("variables:    none (no variables/ directory)")
    lines.append(f"tag sets:     {'; '.join(mg.tag_str for mg in info.meta_graphs)}")
    for mg in _graphs(info, tag_set, signature, show_all):
        lines.append("")
        lines.append(f"tag set '{mg.tag_str}': signatures {', '.join(mg.signatures) or '(none)'}")
        if signature is None and not show_all:
            continue
        for key, sig in mg.signatures.items():
            if signature is None or key == signature:
                lines.extend(_sig_lines(sig))
        if show_all:
            lines.extend(_graph_lines(mg))
    if signature is None and not show_all and any(mg.signatures for mg in info.meta_graphs):
        first = next(k for mg in info.meta_graphs for k in mg.signatures)
        lines += ["", f"inputs and outputs: add --signature NAME (e.g. --signature {first}); everything: --all"]
    return "\n".join(lines)


def warnings(info: ModelInfo) -> list[str]:
    """What ``show`` warns about on stderr: a missing ``variables/`` directory, and asset files
    the graph reads that are not under ``assets/``."""
    return [*_variables_warnings(info), *_assets_warnings(info)]


def _assets_warnings(info: ModelInfo) -> list[str]:
    wanted = sorted({name for mg in info.meta_graphs for name in mg.assets})
    if not wanted:
        return []
    fs, path = bfs.filesystem(info.path)
    missing = [name for name in wanted if not fs.exists(bfs.join(path, "assets", name))]
    if not missing:
        return []
    users = "; ".join(mg.tag_str for mg in info.meta_graphs if set(mg.assets) & set(missing))
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    where = "has no assets/ directory" if not fs.exists(bfs.join(path, "assets")) else "lacks asset files"
    return [
        f"{info.path} {where}, but tag set(s) {users} read {shown} from it: the model will not load "
        "(was it copied without assets/?)"
    ]


def _variables_warnings(info: ModelInfo) -> list[str]:
    if info.variables_bytes is not None:
        return []
    needing = [mg.tag_str for mg in info.meta_graphs if mg.has_variables]
    if needing:
        return [
            f"{info.path} has no variables/ directory, but tag set(s) {'; '.join(needing)} have variables: "
            "the model will not load (was it copied without variables/?)"
        ]
    return [f"{info.path} has no variables/ directory (fine for a model without variables)"]


def _graph_lines(mg: MetaGraphInfo) -> list[str]:
    """What ``saved_model_cli show --all`` adds per MetaGraph: defined functions and ops used."""
    lines = [""]
    if mg.functions:
        lines.append(f"functions of tag set '{mg.tag_str}':")
        for fn in mg.functions:
            lines.extend(f"  {call}" for call in fn.calls or (f"{fn.name}(...)",))
    lines.append(f"ops used by tag set '{mg.tag_str}':")
    lines.extend(textwrap.wrap(", ".join(mg.ops) or "none", width=96, initial_indent="  ", subsequent_indent="  "))
    return lines


def _graphs(info: ModelInfo, tag_set: str | None, signature: str | None, show_all: bool) -> list[MetaGraphInfo]:
    if tag_set is not None:
        mg = info.meta_graph(tag_set)
        if signature is not None:
            info.signature(signature, tag_set)
        return [mg]
    if signature is not None:
        graphs = [mg for mg in info.meta_graphs if signature in mg.signatures]
        if not graphs:
            info.signature(signature, info.meta_graphs[0].tags)  # raises, listing what exists
        return graphs
    return list(info.meta_graphs)


def _sig_lines(sig: SignatureInfo) -> list[str]:
    lines = ["", f"signature '{sig.key}'  (method: {sig.method_name or 'none'})"]
    if sig.composites:
        lines.append("  ragged and sparse inputs (score feeds each from one list column; run takes the components):")
        width = max(len(k) for k in sig.composites)
        for c in sig.composites.values():
            lines.append(f"    {c.key:<{width}}  {c.kind} {c.dtype} {c.shape_str()}  <- {_feeder(c)}")
    if len(sig.composites) < len(sig.composite_inputs):
        lines.append(
            f"  (takes a {', '.join(sig.composite_inputs)}: the inputs below are its components; "
            "run can feed them, score cannot)"
        )
    for title, specs in (("inputs", sig.inputs), ("outputs", sig.outputs)):
        lines.append(f"  {title}:")
        width = max((len(k) for k in specs), default=0)
        for spec in specs.values():
            lines.append(f"    {spec.key:<{width}}  {spec.dtype:<8}  {spec.shape_str():<16}  {spec.name}")
    if sig.defaulted:
        lines.append("  inputs with a default (not fed by score; run may give them):")
        width = max(len(k) for k in sig.defaulted)
        for spec in sig.defaulted.values():
            lines.append(f"    {spec.key:<{width}}  {spec.dtype:<8}  {spec.shape_str():<16}  {spec.name}")
    return lines


def _feeder(c) -> str:
    """Which column kind feeds a composite input, and its components."""
    names = {"ragged": ("values", "row splits"), "sparse": ("indices", "values", "dense shape")}[c.kind]
    parts = ", ".join(f"{k} {n}" for k, n in zip(c.components, names, strict=False))
    if not c.feedable:
        return f"no column: {c.why} (run: {parts})"
    width = c.shape[1] if c.kind == "sparse" and c.shape and c.shape[1] is not None else None
    column = f"a list column of up to {width} values per row" if width else "a list column of any length"
    return f"{column} (Parquet list, TFRecord feature of varying length); components {parts}"


def _sig_dict(sig: SignatureInfo) -> dict:
    def tensor(t: TensorSpec) -> dict:
        return {"dtype": t.dtype, "shape": None if t.shape is None else list(t.shape), "name": t.name}

    return {
        "method_name": sig.method_name,
        "composite_inputs": list(sig.composite_inputs),
        "composites": {
            k: {
                "kind": c.kind,
                "dtype": c.dtype,
                "shape": None if c.shape is None else list(c.shape),
                "components": list(c.components),
                "feedable": c.feedable,
            }
            for k, c in sig.composites.items()
        },
        "defaulted_inputs": {k: tensor(t) for k, t in sig.defaulted.items()},
        "inputs": {k: tensor(t) for k, t in sig.inputs.items()},
        "outputs": {k: tensor(t) for k, t in sig.outputs.items()},
    }
