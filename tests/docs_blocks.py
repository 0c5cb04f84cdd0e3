"""The code blocks of README.md and docs/*.md, so tests can run them as written.

A fenced block may be preceded by one marker line:

- ``<!-- example: NAME -->``: a test runs it, fetching it with :func:`docs_block`;
- ``<!-- not run: REASON -->``: it cannot run here (a cloud, a cluster, the CI itself).

``tests/test_docs.py`` checks that every shell, console and Python block has one of the two,
and that every example name is fetched by some test, so the docs cannot drift unnoticed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
#: Languages of blocks that are commands or code (a test runs them, or they say why not).
RUNNABLE = frozenset({"bash", "sh", "shell", "console", "python", "cron"})
_BLOCK = re.compile(r"^(?:<!-- (example|not run): ?(.*?) -->\n)?```([\w-]*)\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    """One fenced block: the page (relative to the repository root), its language, its marker."""

    page: str
    line: int
    language: str
    marker: str | None  # "example", "not run" or None
    label: str  # the example's name, or the reason it is not run
    text: str


def pages() -> list[str]:
    """README.md and every docs page, relative to the repository root."""
    found = ["README.md"]
    for directory, subdirs, files in os.walk(DOCS):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("_"))  # docs/_pending/: not on the site yet
        found += sorted(os.path.relpath(os.path.join(directory, f), ROOT) for f in files if f.endswith(".md"))
    return found


def read(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def blocks(page: str) -> list[Block]:
    """Every fenced block of ``page`` (e.g. ``"docs/api.md"``) in order."""
    text = read(page)
    return [
        Block(page, text.count("\n", 0, m.start(3)) + 1, m.group(3), m.group(1), m.group(2) or "", m.group(4))
        for m in _BLOCK.finditer(text)
    ]


def docs_block(page: str, name: str) -> str:
    """The text of the block marked ``<!-- example: NAME -->`` on ``page`` (``docs/`` may be left out)."""
    if page != "README.md" and not page.startswith("docs/"):
        page = "docs/" + page
    found = [b.text for b in blocks(page) if b.marker == "example" and b.label == name]
    assert len(found) == 1, f"{page}: {len(found)} blocks marked 'example: {name}'"
    return found[0]


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """A console block as (command after ``$ ``, the output lines that follow it)."""
    runs: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            runs.append((line[2:], []))
        elif runs:
            runs[-1][1].append(line)
    return runs
