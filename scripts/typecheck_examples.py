"""Type-check the Python examples of the README and the docs with mypy (``make lint``).

Each fenced ``python`` block of ``README.md`` and ``docs/**/*.md`` is written to a file of
its own in a temporary directory and mypy checks them all in one run, with the project's
``[tool.mypy]`` settings; an error is reported at the Markdown file and line it came from.
A block that starts with ``# mypy: skip`` is left out (a fragment that is not a program).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(path: str) -> list[tuple[int, str]]:
    """``(first line, code)`` of each Python block of a Markdown file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = []
    for match in _BLOCK.finditer(text):
        code = match.group(1)
        if not code.lstrip().startswith("# mypy: skip"):
            found.append((text.count("\n", 0, match.start(1)) + 1, code))
    return found


def main() -> int:
    pages = sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    # docs/_pending/ is not on the site yet (as tests/docs_blocks.py)
    sources = [os.path.join(ROOT, "README.md"), *(p for p in pages if "/_" not in os.path.relpath(p, ROOT))]
    where: dict[str, tuple[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="beamscore-examples-") as tmp:
        for source in sources:
            if not os.path.exists(source):
                continue
            for n, (line, code) in enumerate(blocks(source)):
                name = re.sub(r"\W", "_", os.path.relpath(source, ROOT)) + f"_{n}.py"
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                    f.write(code)
                where[name] = (os.path.relpath(source, ROOT), line)
        if not where:
            return 0
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                os.path.join(ROOT, "pyproject.toml"),
                "--no-error-summary",
                # third-party calls typed Optional that examples use directly (duckdb.sql(...).fetchall())
                "--disable-error-code=union-attr",
                *sorted(os.path.join(tmp, name) for name in where),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        errors = 0
        for text in run.stdout.splitlines():
            match = re.match(r"(?:.*/)?([^/:]+\.py):(\d+): (.*)", text)
            if match and match.group(1) in where:
                md, first = where[match.group(1)]
                print(f"{md}:{first + int(match.group(2)) - 1}: {match.group(3)}")
                errors += "error:" in match.group(3)
            elif text.strip():
                print(text)
        if run.returncode and not errors:
            print(run.stderr.strip(), file=sys.stderr)
        print(f"mypy: {len(where)} examples from {len({md for md, _ in where.values()})} files, {errors} error(s)")
        return 1 if run.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
