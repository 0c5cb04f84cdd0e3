"""``beamscore report`` on an output of several models: each figure of the comparison checked
against numpy on a hand-made output (a manifest with ``models`` and Parquet part files)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beamscore import report


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compared")
    rng = np.random.default_rng(5)
    n = 3000
    a_p = rng.normal(size=n).astype(np.float32)
    b_p = (a_p + rng.normal(scale=0.3, size=n)).astype(np.float32)
    b_p[1234] = a_p[1234] + 50.0  # the row where they differ most
    a_c = rng.random(size=(n, 5)).astype(np.float32)
    b_c = (a_c + rng.normal(scale=0.2, size=(n, 5))).astype(np.float32)
    ids = np.arange(n, dtype=np.int64) * 7
    files = []
    for i, part in enumerate(np.array_split(np.arange(n), 3)):
        table = pa.table(
            {
                "champion__p": a_p[part],
                "champion__c": pa.FixedSizeListArray.from_arrays(pa.array(a_c[part].reshape(-1)), 5),
                "challenger__p": b_p[part],
                "challenger__c": pa.FixedSizeListArray.from_arrays(pa.array(b_c[part].reshape(-1)), 5),
                "id": ids[part],
            }
        )
        name = f"part-00000-{i:05d}.parquet"
        pq.write_table(table, out / name, row_group_size=400)
        files.append(str(out / name))
    models = [
        {"name": n_, "path": f"/m/{n_}", "signature": "serving_default", "outputs": ["c", "p"],
         "columns": [f"{n_}__c", f"{n_}__p"]}
        for n_ in ("champion", "challenger")
    ]  # fmt: skip
    manifest = {
        "status": "succeeded",
        "model": {"path": "/m/champion", "signature": "serving_default"},
        "models": models,
        "outputs": files,
        "errors": [],
        "units": 3,
        "rows_in": n,
        "rows_out": n,
        "rows_failed": 0,
        "output_format": "parquet",
        "columns": {"outputs": [c for m in models for c in m["columns"]], "keep": ["id"]},
    }
    (out / "_manifest.json").write_text(json.dumps(manifest))
    return str(out), (a_p, b_p, a_c, b_c, ids)


def test_the_report_compares_each_shared_output(compared):
    out, (a_p, b_p, a_c, b_c, ids) = compared
    built = report.build(out, batch_rows=256)  # several batches per file
    found = {c["output"]: c for c in built.to_json()["comparisons"]}
    assert sorted(found) == ["c", "p"]
    p = found["p"]
    assert p["models"] == ["champion", "challenger"] and p["rows"] == len(a_p)
    d = b_p.astype(np.float64) - a_p
    assert p["difference"]["mean"] == pytest.approx(d.mean(), rel=1e-9)
    assert p["difference"]["mean_abs"] == pytest.approx(np.abs(d).mean(), rel=1e-9)
    assert p["difference"]["max"] == pytest.approx(d.max())
    assert p["correlation"] == pytest.approx(np.corrcoef(a_p, b_p)[0, 1], rel=1e-9)
    assert abs(p["difference"]["quantiles"]["p50"] - np.quantile(d, 0.5)) <= (d.max() - d.min()) / report.BINS
    assert p["argmax_agreement"] is None
    first = p["most_different"][0]
    assert first["keep"] == {"id": int(ids[1234])} and first["row"] == 1234
    gaps = [m["max_abs_difference"] for m in p["most_different"]]
    assert gaps == sorted(np.abs(d), reverse=True)[:10]
    assert sum(p["histogram"]["champion"]) == sum(p["histogram"]["challenger"]) == len(a_p)
    c = found["c"]
    assert c["values_per_row"] == 5
    assert c["argmax_agreement"] == pytest.approx((a_c.argmax(1) == b_c.argmax(1)).mean())
    top = lambda v: np.sort(np.argsort(-v, axis=1)[:, :3], axis=1)  # noqa: E731
    assert c["top_k"] == 3
    assert c["top_k_agreement"] == pytest.approx((top(a_c) == top(b_c)).all(axis=1).mean())
    assert 0 < c["top_k_agreement"] < c["argmax_agreement"] < 1
    assert c["correlation"] == pytest.approx(np.corrcoef(a_c.reshape(-1), b_c.reshape(-1))[0, 1], rel=1e-9)


def test_the_text_and_html_show_the_comparison(compared):
    out, _ = compared
    built = report.build(out)
    text = report.render_text(built)
    assert "models compared" in text and "p: challenger - champion over 3,000 rows" in text
    assert "differ most: id=8638" in text and "argmax agrees on" in text
    page = report.render_html(built)
    assert 'data-overlay="p"' in page and 'data-model="challenger"' in page
    assert 'data-stat="correlation"' in page


def test_a_one_model_report_has_no_comparison(compared, tmp_path):
    out, _ = compared
    with open(f"{out}/_manifest.json") as f:
        manifest = json.load(f)
    del manifest["models"]
    (tmp_path / "_manifest.json").write_text(json.dumps(manifest))
    built = report.build(str(tmp_path))
    assert built.comparisons == [] and "comparisons" not in built.to_json()
