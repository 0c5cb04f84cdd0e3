"""docs/outputs.md lists what a real job writes: every `_manifest.json` field and `model` key,
and exactly the columns of a dead-letter file (so a field added or renamed in code fails here
until the page says so)."""

from __future__ import annotations

import json
import os
import re

import pyarrow.parquet as pq
import pytest
from docs_blocks import read
from output_jobs import score_with_dead_letters


@pytest.fixture(scope="module")
def out(models, tmp_path_factory) -> str:
    return score_with_dead_letters(models["two_sig"], str(tmp_path_factory.mktemp("outputs_page")))


def _section(title: str) -> str:
    return read("docs/outputs.md").split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_manifest_table_names_every_field(out):
    with open(os.path.join(out, "_manifest.json")) as f:
        manifest = json.load(f)
    rows = [line.split("|") for line in _section("`_manifest.json`").splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row[1])}
    assert set(manifest) <= documented, set(manifest) - documented  # some fields appear only with an option
    (model_row,) = [row for row in rows if row[1].strip() == "`model`"]
    model_keys = set(re.findall(r"`([a-z_]+)`(?! *:)", model_row[2])) - {"true"}
    assert set(manifest["model"]) <= model_keys, set(manifest["model"]) - model_keys
    assert all(
        isinstance(manifest[k], list) and all(isinstance(x, str) for x in manifest[k]) for k in ("outputs", "errors")
    )


def test_the_dead_letter_columns_are_the_files_columns(out):
    rows = [line.split("|") for line in _section("Dead letters").splitlines() if line.startswith("| `")]
    named = [re.fullmatch(r" `([a-z_]+)` ", row[1]).group(1) for row in rows]
    errors = os.path.join(out, "_errors")
    schema = pq.read_schema(os.path.join(errors, sorted(os.listdir(errors))[0]))
    assert named == schema.names
