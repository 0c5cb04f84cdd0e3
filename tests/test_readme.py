"""The README is the front page: two commands to start, short, and a link to every docs page."""

from __future__ import annotations

import os
import re
import tomllib

from docs_blocks import DOCS, ROOT, read


def _readme() -> str:
    return read("README.md")


def test_quick_start_is_make_demo_and_make_test():
    quick = _readme().split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_fits_a_front_page():
    lines = _readme().splitlines()
    assert 100 <= len(lines) < 250, len(lines)


def test_readme_links_every_docs_page():
    linked = set(re.findall(r"\]\((docs/[\w./-]+\.md)(?:#[\w-]+)?\)", _readme()))
    on_disk = {os.path.relpath(os.path.join(DOCS, f), ROOT) for f in os.listdir(DOCS) if f.endswith(".md")}
    assert linked == on_disk


def test_readme_states_the_python_versions_pyproject_allows():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        spec = tomllib.load(f)["project"]["requires-python"]
    assert f'`requires-python = "{spec}"`' in _readme()
    assert "pip refuses to install" in _readme()
