"""A job's scores match a direct call however the job splits its rows into signature calls.

TensorFlow's CPU kernels round differently by batch size (``tests/scores.py``), so the same
350 rows of one shard are scored in batches of 1, 3, 40 and 4096 (one call per unit) and each output is
compared with one direct call of all rows through :func:`assert_scores_close`. Run it with
``TF_ENABLE_ONEDNN_OPTS=0`` and ``=1`` to see the rule hold under both kernel families.
"""

from __future__ import annotations

import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main


@pytest.mark.parametrize("batch_size", [1, 3, 40, 4096])
def test_scores_match_a_direct_call_at_any_batch_size(models, shards, tmp_path, batch_size, capsys):
    paths, ids, x = shards
    paths, ids, x = paths[:1], ids[: len(ids) // 2], x[: len(x) // 2]  # np.array_split: shard 0
    for name, signature, key in (
        ("two_sig", "serving_default", "x"),
        ("two_sig", "embed", "x"),
        ("keras", "serve", "features"),
    ):
        out = tmp_path / f"{name}-{signature}"
        args = ["score", "--model", models[name], "--signature", signature, "--output", str(out), "--keep", "id"]
        args += ["--batch-size", str(batch_size)]
        if key != "x":
            args += ["--map", f"{key}=x"]
        for path in paths:
            args += ["--input", path]
        assert main(args) == 0, capsys.readouterr().err
        table = read_output(str(out))
        assert table["id"].to_pylist() == ids.tolist()
        for output, want in direct_call(models[name], signature, **{key: x}).items():
            assert_scores_close(table[output], want, err_msg=f"{name} {signature} {output} batch {batch_size}")
