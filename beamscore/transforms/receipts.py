"""Unit receipts: the commit marker of one work unit, as the manifest is that of the job.

When every file of a unit (its output(s) and its dead letters) has been renamed into place,
the writer adds ``OUTPUT/_units/part-SSSSS-UUUUU.json`` with the unit's
:class:`~beamscore.transforms.batch.UnitResult`, written to a temporary name and renamed too.
A unit with a receipt whose files all exist is done: ``--resume`` skips it and the final
manifest takes its counts from the receipt. A unit without one is redone from scratch, and
since its files have deterministic names the redo overwrites whatever a killed run left.
"""

from __future__ import annotations

import json

from beamscore import fs as bfs
from beamscore.transforms.batch import UnitResult
from beamscore.transforms.temp import TEMP_DIR

__all__ = ["FILES_DIR", "UNITS_DIR", "completed_units", "planned_units", "write_file_receipt", "write_receipt"]

UNITS_DIR = "_units"
#: file receipts of ``--plan-on-workers``, under ``UNITS_DIR``
FILES_DIR = "_files"


def write_receipt(output: str, result: UnitResult) -> str:
    """Commit ``result`` as the receipt of its unit; return the receipt's path."""
    fs, root = bfs.filesystem(output)
    directory = bfs.join(root, UNITS_DIR)
    final = bfs.join(directory, f"{result.unit}.json")
    fs.makedirs(directory, exist_ok=True)
    data = json.dumps(result.to_json(), sort_keys=True).encode()
    bfs.write_atomic(fs, final, data, bfs.join(root, TEMP_DIR))
    return final


def completed_units(output: str) -> dict[str, UnitResult]:
    """The units of ``output`` that have a receipt and all of whose files exist."""
    fs, root = bfs.filesystem(output)
    fs.invalidate_cache(root)  # listings cached by this process may predate the files
    directory = bfs.join(root, UNITS_DIR)
    if not fs.exists(directory):
        return {}
    present = {bfs.unstrip(fs, p) for p in fs.find(root)}
    done: dict[str, UnitResult] = {}
    for path in sorted(fs.find(directory)):
        name = path.rsplit("/", 1)[-1]
        if not (name.startswith("part-") and name.endswith(".json")):
            continue
        with fs.open(path, "r") as f:
            try:
                result = UnitResult.from_json(json.load(f))
            except (ValueError, KeyError, TypeError):
                continue  # unreadable receipt: redo the unit
        if all(file in present for file in [*result.files, *result.errors]):
            done[result.unit] = result
    return done


def write_file_receipt(output: str, shard: int, facts: dict, units: list[list]) -> str:
    """Record how a worker split one input file (``--plan-on-workers``):
    ``OUTPUT/_units/_files/SSSSS.json`` with the file's facts and its ``[unit, rows]`` pairs,
    written atomically (:func:`beamscore.fs.write_atomic`). Together these receipts list every unit of
    the job, as the launcher's plan does when it plans."""
    fs, root = bfs.filesystem(output)
    directory = bfs.join(root, UNITS_DIR, FILES_DIR)
    final = bfs.join(directory, f"{shard:05d}.json")
    fs.makedirs(directory, exist_ok=True)
    data = json.dumps({"shard": shard, "input": facts, "units": units}, sort_keys=True).encode()
    bfs.write_atomic(fs, final, data, bfs.join(root, TEMP_DIR))
    return final


def planned_units(output: str) -> dict[str, int]:
    """Unit name -> planned rows, from every file receipt under ``output``."""
    fs, root = bfs.filesystem(output)
    directory = bfs.join(root, UNITS_DIR, FILES_DIR)
    fs.invalidate_cache(root)
    if not fs.exists(directory):
        return {}
    paths = sorted(p for p in fs.find(directory) if p.endswith(".json"))
    out: dict[str, int] = {}
    for data in fs.cat(paths, on_error="omit").values() if paths else []:
        for name, rows in json.loads(data)["units"]:
            out[str(name)] = int(rows)
    return out
