"""``beamscore scan``'s output: per tag set, each signature's flagged ops, the load step, the
model's asset reads, custom ops and machinery, as text for people or JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

from beamscore.model.scan import CATEGORIES, LOAD_SCOPE, ModelScan, OpUse, ScopeScan

__all__ = ["flag_warnings", "render_json", "render_text", "select"]


def select(scan: ModelScan, tag_set: str | None, signature: str | None) -> ModelScan:
    """Only the tag set and signature asked for (the load step is always kept); an unknown
    one is an error that lists what exists."""
    from beamscore.errors import BeamscoreError

    graphs = [scan.meta_graph(tag_set)] if tag_set is not None else list(scan.meta_graphs)
    if signature is None:
        return dataclasses.replace(scan, meta_graphs=tuple(graphs))
    kept = []
    for mg in graphs:
        if signature in mg.signatures:
            kept.append(dataclasses.replace(mg, signatures={signature: mg.signatures[signature]}))
    if not kept:
        known = sorted({k for mg in graphs for k in mg.signatures}) or ["none"]
        raise BeamscoreError(f"signature {signature!r} not found in {scan.path}; available: {', '.join(known)}")
    return dataclasses.replace(scan, meta_graphs=tuple(kept))


def render_text(scan: ModelScan, allow: Iterable[str] = ()) -> str:
    """What ``beamscore scan`` prints; the last line says whether anything is flagged."""
    allowed = set(allow)
    lines = [scan.path]
    flagged: set[str] = set()
    for mg in scan.meta_graphs:
        lines.append(f"tag set '{mg.tag_str}':")
        for scope in mg.scopes():
            lines.extend(_scope_lines(scope, allowed))
            flagged.update(scope.flagged_ops(allowed))
        custom = {u.op: u.detail for scope in mg.scopes() for u in scope.custom}
        if custom:
            listed = ", ".join(f"{op} ({pkg})" for op, pkg in sorted(custom.items()))
            lines.append(f"  custom ops (code of their library, not scanned; not flagged): {listed}")
        if mg.machinery:
            ops = ", ".join(sorted({u.op for u in mg.machinery}))
            lines.append(f"  model machinery, called by no signature (the saver's save and restore): {ops}")
    if flagged:
        names = ",".join(sorted(flagged))
        lines.append(f"flagged: {', '.join(sorted(flagged))}; to run the model anyway: --allow-ops {names}")
    else:
        lines.append("nothing flagged" + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""))
    return "\n".join(lines)


def render_json(scan: ModelScan, allow: Iterable[str] = ()) -> str:
    """``beamscore scan --json``: :meth:`ModelScan.to_dict` plus ``flagged`` (op -> category,
    what ``allow`` does not allow) and ``allowed``."""
    allowed = set(allow)
    flagged = {op: c for mg in scan.meta_graphs for s in mg.scopes() for op, c in s.flagged_ops(allowed).items()}
    body = {**scan.to_dict(), "flagged": dict(sorted(flagged.items())), "allowed": sorted(allowed)}
    return json.dumps(body, indent=2)


def flag_warnings(scan: ModelScan) -> list[str]:
    """One line per flagged signature or load step, for ``beamscore show`` to warn with."""
    out = []
    for mg in scan.meta_graphs:
        for scope in mg.scopes():
            flagged = scope.flagged_ops()
            if not flagged:
                continue
            by_category: dict[str, list[str]] = {}
            for op, category in flagged.items():
                by_category.setdefault(category, []).append(op)
            reaches = " and ".join(f"{CATEGORIES[c]} ({', '.join(ops)})" for c, ops in by_category.items())
            who = "the load step" if scope.name == LOAD_SCOPE else f"signature '{scope.name}'"
            out.append(
                f"{who} [{mg.tag_str}] reaches {reaches}: run and score refuse it without "
                f"--allow-ops {','.join(flagged)} (beamscore scan {scan.path})"
            )
    return out


def _scope_lines(scope: ScopeScan, allowed: set[str]) -> list[str]:
    title = "when the model loads (init op)" if scope.name == LOAD_SCOPE else f"signature '{scope.name}'"
    refused = scope.flagged_ops(allowed)
    count = f"{len(scope.ops)} op type{'' if len(scope.ops) == 1 else 's'} reachable"
    lines = [f"  {title}: {'FLAGGED' if refused else 'nothing flagged'} ({count})"]
    for category, label in CATEGORIES.items():
        uses = [u for u in scope.flagged if u.category == category]
        if uses:
            lines.append(f"    reaches {label}:")
            lines.extend(f"      {_use(u)}{'  [allowed]' if u.op in allowed else ''}" for u in uses)
    if scope.assets:
        lines.append("    reads the model's own assets (not flagged):")
        lines.extend(f"      {_use(u)}" for u in scope.assets)
    return lines


def _use(u: OpUse) -> str:
    detail = f"  {u.detail}" if u.detail else ""
    return f"{u.op}{detail}  in {u.function}/{u.node}"
