"""``beamscore scan``, and the same check before ``run``, ``score`` and ``beamscore.score()``:
a model whose signature reaches files, Python or streams is refused with exit 2 and nothing
written, and runs when its ops are allowed (``--allow-ops``, ``allow_ops=``, config
``model.allow_ops``), the manifest recording what was allowed."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scan_models
from cli_runs import run_cli
from conftest import direct_call, read_output
from scores import assert_scores_close

import beamscore
from beamscore.config import load_yaml
from beamscore.errors import BeamscoreError

X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, str]:
    return scan_models.build_flagged(str(tmp_path_factory.mktemp("bad")))


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("rows") / "rows.parquet")
    pq.write_table(pa.table({"x": pa.array(X.tolist(), type=pa.list_(pa.float32()))}), path)
    return path


def leak_dir(bad: dict[str, str]) -> str:
    return os.path.join(os.path.dirname(bad["reads"]), "leak")


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name", sorted(scan_models.FLAGGED))
def test_score_and_run_refuse_each_model_and_write_nothing(bad, rows, tmp_path, name):
    ops = sorted(scan_models.FLAGGED[name])
    out = tmp_path / "out"
    done = run_cli("score", bad[name], "--input", rows, "--output", str(out))
    assert done.code == 2, done.stderr
    line = one_line(done.stderr)
    assert f"signature 'serving_default' of {bad[name]} uses ops that reach" in line
    assert f"--allow-ops {','.join(ops)}" in line and all(op in line for op in ops)
    assert not out.exists()
    done = run_cli("run", bad[name], "--input-exprs", "x=[[1.0, 2.0]]")
    assert done.code == 2, done.stderr
    assert f"--allow-ops {','.join(ops)}" in one_line(done.stderr)
    assert os.listdir(leak_dir(bad)) == []


@pytest.mark.parametrize("name", sorted(set(scan_models.FLAGGED) - {"py_function"}))
def test_run_calls_each_model_when_its_ops_are_allowed(bad, tmp_path, name):
    """Allowed, the model runs (the scan was what stopped it): ``writes`` and ``prints`` write
    their files. ``py_function``'s Python callback is not in the SavedModel, so it cannot run
    after loading whatever is allowed; its refusal is tested above."""
    ops = ",".join(sorted(scan_models.FLAGGED[name]))
    done = run_cli("run", bad[name], "--input-exprs", "x=[[1.0, 2.0]]", "--allow-ops", ops, "--outdir", str(tmp_path))
    assert done.code == 0, done.stderr
    want = direct_call(bad[name], "serving_default", x=np.array([[1.0, 2.0]], np.float32))["y"]
    assert_scores_close(np.load(tmp_path / "y.npy"), want)
    wrote = {"writes": "written.txt", "prints": "printed.txt"}.get(name)
    if wrote:
        assert os.path.exists(os.path.join(leak_dir(bad), wrote))
        os.remove(os.path.join(leak_dir(bad), wrote))


def test_score_runs_an_allowed_model_and_the_manifest_records_it(bad, rows, tmp_path):
    out = tmp_path / "out"
    done = run_cli("score", bad["writes"], "--input", rows, "--output", str(out), "--allow-ops", "WriteFile")
    assert done.code == 0, done.stderr
    assert (out / "_SUCCESS").exists()
    model = json.loads((out / "_manifest.json").read_text())["model"]
    assert (model["allow_ops"], model["allowed_ops_used"]) == (["WriteFile"], ["WriteFile"])
    assert_scores_close(np.stack(read_output(str(out))["y"].to_numpy(zero_copy_only=False)), X * 2.0)
    written = os.path.join(leak_dir(bad), "written.txt")
    assert os.path.exists(written)
    os.remove(written)


def test_score_api_takes_allow_ops_and_words_the_refusal_for_python(bad, rows, tmp_path):
    with pytest.raises(BeamscoreError, match=r"reach the filesystem \(ReadFile\).* allow_ops=\['ReadFile'\]"):
        beamscore.score(bad["reads"], rows, str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    manifest = beamscore.score(bad["reads"], rows, str(tmp_path / "out"), allow_ops=["ReadFile"])
    assert manifest["model"]["allowed_ops_used"] == ["ReadFile"]
    want = direct_call(bad["reads"], "serving_default", x=X)["y"]
    assert_scores_close(np.stack(read_output(str(tmp_path / "out"))["y"].to_numpy(zero_copy_only=False)), want)


def test_allow_ops_from_a_config_file_and_a_typo_refused(bad, rows, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(f"model: {{path: {bad['reads']}, allow_ops: ReadFile}}\n")
    assert load_yaml(str(config)).allow_ops == ["ReadFile"]
    done = run_cli("score", "--config", str(config), "--input", rows, "--output", str(tmp_path / "o"), "--dry-run")
    assert done.code == 0, done.stderr
    done = run_cli("score", bad["reads"], "--input", rows, "--output", str(tmp_path / "o2"), "--allow-ops", "ReadFlie")
    assert done.code == 2
    assert "--allow-ops: 'ReadFlie' is no op the scan flags (did you mean ReadFile?)" in one_line(done.stderr)


def test_show_warns_about_flagged_signatures(bad, models):
    done = run_cli("show", bad["writes"])
    assert done.code == 0
    assert one_line(done.stderr) == (
        f"beamscore: warning: signature 'serving_default' [serve] reaches the filesystem (WriteFile): run and "
        f"score refuse it without --allow-ops WriteFile (beamscore scan {bad['writes']})"
    )
    assert run_cli("show", models["two_sig"]).stderr == ""


def test_scan_command_exit_codes_text_and_json(bad, models):
    done = run_cli("scan", bad["cond"])
    assert done.code == 1, done.stderr
    assert "signature 'serving_default': FLAGGED" in done.stdout
    assert "reaches the filesystem:" in done.stdout and "cond_true" in done.stdout
    assert done.stdout.strip().endswith("--allow-ops ReadFile")
    assert run_cli("scan", bad["cond"], "--allow-ops", "ReadFile").code == 0
    done = run_cli("scan", models["two_sig"], "--json")
    assert done.code == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["flagged"] == {}
    (mg,) = body["meta_graphs"]
    assert set(mg["signatures"]) == {"serving_default", "embed"}
    assert {m["op"] for m in mg["machinery"]} >= {"SaveV2", "RestoreV2"}
    done = run_cli("scan", "--dir", bad["prints"], "--signature", "serving_default", "--json")
    assert done.code == 1 and json.loads(done.stdout)["flagged"] == {"PrintV2": "print"}
    done = run_cli("scan", bad["prints"], "--signature", "nope")
    assert done.code == 2 and "signature 'nope' not found" in one_line(done.stderr)


def test_the_security_pages_examples_are_what_scan_and_run_print(tmp_path):
    """docs/security.md's ``scan`` and refused ``run``, on a model that copies /etc/hostname."""
    import re
    import shlex

    import tensorflow as tf
    from docs_blocks import console_commands, docs_block

    copied = str(tmp_path / "copied.txt")

    class Suspect(tf.Module):
        @tf.function(input_signature=scan_models.SPEC)
        def serve(self, x):
            tf.io.write_file(copied, tf.io.read_file("/etc/hostname"))
            return {"y": x * 2.0}

    model = str(tmp_path / "models" / "suspect")
    module = Suspect()
    tf.saved_model.save(module, model, signatures={"serving_default": module.serve})

    def same(text: str) -> str:
        text = text.replace(model, "/home/me/models/suspect").replace(copied, "/tmp/copied.txt")
        return re.sub(r"_\d+/", "_N/", text)

    examples = {"scan": docs_block("security.md", "scan"), "refused": docs_block("security.md", "refused")}
    for name, code in (("scan", 1), ("refused", 2)):
        ((command, want),) = console_commands(examples[name])
        argv = [model if a == "models/suspect" else a for a in shlex.split(command)[1:]]
        done = run_cli(*argv)
        assert done.code == code, done.stderr
        got = (done.stdout if name == "scan" else done.stderr).strip().splitlines()
        assert [same(line) for line in got] == [same(line) for line in want]
    assert not os.path.exists(copied)


def test_a_lookup_model_with_assets_moved_elsewhere_runs_with_no_allow_ops(tmp_path):
    model = scan_models.save_moved_lookup_model(str(tmp_path / "lookup"))
    done = run_cli("scan", model)
    assert done.code == 0 and "reads assets/vocab.txt" in done.stdout, done.stdout
    done = run_cli("run", model, "--input-exprs", "words=['banana', 'kiwi']", "--outdir", str(tmp_path / "o"))
    assert done.code == 0, done.stderr
    assert np.load(tmp_path / "o" / "ids.npy").tolist() == [1, -1]
