"""The README's example pipeline runs as written, and its quick start is two commands."""

from __future__ import annotations

import os
import re

import builders
import numpy as np
import pyarrow.parquet as pq
from conftest import direct_call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_quick_start_is_make_demo_and_make_test():
    quick = _readme().split("## Quick start", 1)[1].split("##", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_pipeline_example_runs(models, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    example = next(b for b in blocks if "beamscore.RunSignature" in b)
    monkeypatch.chdir(tmp_path)
    os.makedirs("models")
    os.symlink(models["two_sig"], "models/mlp")
    rows = 300
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    import pyarrow as pa

    os.makedirs("data")
    for i, part in enumerate(np.array_split(np.arange(rows), 2)):
        table = pa.table({"id": part, "x": pa.FixedSizeListArray.from_arrays(pa.array(x[part].reshape(-1)), 4)})
        pq.write_table(table, f"data/part-{i}.parquet")
    exec(compile(example, "README.md", "exec"), {})  # the README's own code, unchanged
    files = sorted(f for f in os.listdir("scored") if f.startswith("part-"))
    assert files == ["part-00000-00000.parquet", "part-00001-00000.parquet"]
    table = pq.read_table(["scored/" + f for f in files])
    got = table.sort_by("id")
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    np.testing.assert_allclose(np.stack(got["scores"].to_numpy(zero_copy_only=False)), expected["scores"], atol=1e-6)
    assert got["id"].to_pylist() == list(range(rows))
    assert builders  # the fixture models come from tests/builders.py
