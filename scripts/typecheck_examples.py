"""Type-check the Python examples of the README and the docs with mypy and pyright (``make lint``).

Each fenced ``python`` block of ``README.md`` and ``docs/**/*.md`` is written to a file of
its own in a temporary directory and mypy checks them all in one run, with the project's
``[tool.mypy]`` settings; with ``--pyright PATH`` pyright checks them too (basic mode, the
interpreter running this script, this project's root first on the path), as a user's editor
would. An error is reported at the Markdown file and line it came from. A block that starts
with ``# mypy: skip`` is left out (a fragment that is not a program).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: a file pyright must flag: proof that it resolved beamscore (an unresolved import is a
#: warning here, and would leave every use of beamscore unchecked)
PROBE = "probe_beamscore_resolves.py"
PROBE_CODE = 'import beamscore\nbeamscore.SignatureModelHandler("m", kep=["id"])\n'
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


def _report(output: str, pattern: str, where: dict[str, tuple[str, int]], tool: str) -> int:
    """Print the checker's lines about example files at their Markdown place; count errors."""
    errors = 0
    for text in output.splitlines():
        match = re.match(pattern, text)
        if match and match.group(1) in where:
            md, first = where[match.group(1)]
            print(f"{md}:{first + int(match.group(2)) - 1}: {tool}: {match.group(3)}")
            errors += "error" in match.group(3)
        elif text.strip() and tool == "mypy":
            print(text)
    return errors


def _pyright(pyright: str, tmp: str, where: dict[str, tuple[str, int]]) -> int:
    """Run pyright over the example files; returns its error count (-1: it did not run)."""
    config = {
        "pythonVersion": "3.11",
        "typeCheckingMode": "basic",
        "extraPaths": [ROOT],
        "reportPrivateImportUsage": False,  # Beam re-exports without __all__ (pyproject's [tool.pyright])
        "reportOptionalMemberAccess": False,  # as mypy's union-attr below
        # as mypy's ignore_missing_imports (an Airflow DAG example; Airflow is not installed):
        # that beamscore itself resolves is checked by the probe below
        "reportMissingImports": "warning",
    }
    with open(os.path.join(tmp, PROBE), "w", encoding="utf-8") as f:
        f.write(PROBE_CODE)
    with open(os.path.join(tmp, "pyrightconfig.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    run = subprocess.run(
        [pyright, "--pythonpath", sys.executable, "-p", os.path.join(tmp, "pyrightconfig.json"), PROBE, *sorted(where)],
        capture_output=True,
        text=True,
        cwd=tmp,
        check=False,
    )
    if not re.search(rf"{PROBE}:2:\d+ - error: No parameter named \"kep\"", run.stdout):
        print(f"pyright did not see beamscore's types (its probe passed unflagged):\n{run.stdout}", file=sys.stderr)
        return -1
    # (pyright exits 1 for the probe's error: the count of the examples' own errors decides)
    return _report(run.stdout, r"\s*(?:.*/)?([^/:]+\.py):(\d+):\d+ - (.*)", where, "pyright")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyright", help="the pyright executable (make lint installs it under .venv/node)")
    args = parser.parse_args()
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
        errors = _report(run.stdout, r"(?:.*/)?([^/:]+\.py):(\d+): (.*)", where, "mypy")
        if run.returncode and not errors:
            print(run.stderr.strip(), file=sys.stderr)
        count = f"{len(where)} examples from {len({md for md, _ in where.values()})} files"
        print(f"mypy: {count}, {errors} error(s)")
        failed = bool(run.returncode)
        if args.pyright:
            found = _pyright(os.path.abspath(args.pyright), tmp, where)  # it runs in tmp
            print(f"pyright: {count}, " + ("it did not run" if found < 0 else f"{found} error(s)"))
            failed = failed or found != 0
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
