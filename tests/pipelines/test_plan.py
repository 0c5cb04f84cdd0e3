"""The launcher's checks are a list of named steps (:data:`beamscore.pipelines.plan.STEPS`)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from beamscore.config import ScoreConfig
from beamscore.errors import BeamscoreError
from beamscore.pipelines.plan import STEPS, Planning, plan_job

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "beamscore"


def test_steps_have_unique_names_and_run_in_order(models, shards, tmp_path):
    names = [name for name, _ in STEPS]
    assert len(names) == len(set(names))
    assert names[0] == "model" and "units" in names
    config = ScoreConfig(model=models["two_sig"], inputs=shards[0], output=str(tmp_path / "out"))
    plan = plan_job(config)
    assert list(plan.planning_s) == names  # each step timed, in order
    assert sum(u.rows for u in plan.units) == 700


def test_a_step_added_to_the_list_refuses_the_job(models, shards, tmp_path):
    seen: list[str] = []

    def no_second_shard(s: Planning) -> None:
        seen.append(s.files[-1])
        if len(s.files) > 1:
            raise BeamscoreError(f"{s.files[1]}: refused by the extra step")

    at = [name for name, _ in STEPS].index("inputs") + 1
    steps = [*STEPS[:at], ("one shard only", no_second_shard), *STEPS[at:]]
    config = ScoreConfig(model=models["two_sig"], inputs=shards[0], output=str(tmp_path / "out"))
    with pytest.raises(BeamscoreError, match="refused by the extra step"):
        plan_job(config, steps)
    assert seen == [shards[0][-1]]


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("layer", ["pipelines", "transforms", "io", "model"])
def test_layers_below_the_cli_do_not_import_it(layer):
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        if any(name == "beamscore.cli" or name.startswith("beamscore.cli.") for name in _imports(path))
    ]
    assert offenders == []
