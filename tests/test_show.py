"""``beamscore show`` through ``beamscore.cli.main``, checked against TensorFlow and ``saved_model_cli``."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re

import pytest
import tensorflow as tf
import trial_models
from tensorflow.core.framework import types_pb2

from beamscore.cli import main
from beamscore.model.inspect import TensorSpec


@pytest.fixture(scope="session")
def trial(tmp_path_factory) -> dict[str, str]:
    return trial_models.build_all(str(tmp_path_factory.mktemp("trial")))


def show(capsys, *args: str) -> str:
    code = main(["show", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def show_json(capsys, *args: str) -> dict:
    return json.loads(show(capsys, *args, "--json"))


def test_default_view_lists_tag_sets_and_signature_keys(models, capsys):
    text = show(capsys, models["two_sig"])
    fingerprint = tf.saved_model.experimental.read_fingerprint(models["two_sig"]).singleprint()
    assert f"fingerprint:  {fingerprint}\n" in text
    assert re.search(r"^variables:    \d+ B$", text, re.M)
    assert "tag sets:     serve\n" in text
    assert "tag set 'serve': signatures embed, serving_default" in text
    assert "inputs:" not in text  # keys only, as saved_model_cli --tag_set does
    # and says how to see more (it listed names with no hint of --signature or --all)
    assert text.rstrip().endswith(
        "inputs and outputs: add --signature NAME (e.g. --signature embed); everything: --all"
    )
    assert "add --signature NAME" not in show(capsys, models["two_sig"], "--signature", "embed")


class Vocab(tf.Module):
    def __init__(self, vocab: str):
        super().__init__()
        init = tf.lookup.TextFileInitializer(
            vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticHashTable(init, -1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="word")])
    def serve(self, word):
        return {"id": self.table.lookup(word)}


def test_missing_assets_are_warned_about(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    model = str(tmp_path / "model")
    module = Vocab(str(vocab))
    tf.saved_model.save(module, model, signatures={"serving_default": module.serve})
    assert os.listdir(os.path.join(model, "assets")) == ["vocab.txt"]

    def warned() -> str:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert main(["show", model]) == 0
        return err.getvalue()

    assert warned() == ""
    os.remove(os.path.join(model, "assets", "vocab.txt"))
    assert warned() == (
        f"beamscore: warning: {model} lacks asset files, but tag set(s) serve read vocab.txt from it: "
        "the model will not load (was it copied without assets/?)\n"
    )
    os.rmdir(os.path.join(model, "assets"))
    assert "has no assets/ directory, but tag set(s) serve read vocab.txt" in warned()
    with pytest.raises(Exception, match=r"vocab\.txt"):  # what the warning foretells
        tf.saved_model.load(model)


def test_signature_view_matches_loaded_signature(models, capsys):
    text = show(capsys, models["two_sig"], "--signature", "embed")
    fn = tf.saved_model.load(models["two_sig"]).signatures["embed"]
    assert "signature 'embed'  (method: tensorflow/serving/predict)" in text
    assert "serving_default" not in text.split("signature 'embed'")[1]
    for key, spec in {**fn.structured_input_signature[1], **fn.structured_outputs}.items():
        shape = TensorSpec(key, spec.dtype.name, tuple(spec.shape.as_list()), "").shape_str()
        assert re.search(rf"^    {re.escape(key)} +{spec.dtype.name} +{re.escape(shape)} +\S+:\d$", text, re.M), key


def test_multi_tag_set_model_is_shown_per_tag_set(trial, capsys):
    text = show(capsys, trial["tf1"], "--all")
    assert "tag sets:     serve; gpu,serve" in text
    assert "(computed by beamscore: no usable fingerprint.pb)" in text
    serve, gpu = text.split("tag set 'serve': signatures serving_default")[1].split("\ntag set 'gpu,serve': signatures")
    assert (
        "signature 'serving_default'" in serve
        and "    y  float32   (-1, 2)" in serve
        and "signature 'predict'" not in serve
    )
    assert "signature 'predict'" in gpu and "    y2  float32   (-1, 2)" in gpu
    assert "ops used by tag set 'gpu,serve':" in gpu and "MatMul" in gpu

    only_gpu = show(capsys, trial["tf1"], "--tag-set", "serve,gpu", "--signature", "predict")
    assert "tag set 'serve':" not in only_gpu and "signature 'predict'" in only_gpu
    data = show_json(capsys, trial["tf1"], "--signature", "predict")
    assert [mg["tag_set"] for mg in data["meta_graphs"]] == ["gpu,serve"]
    assert data["meta_graphs"][0]["signatures"]["predict"]["outputs"] == {
        "y2": {"dtype": "float32", "shape": [None, 2], "name": "y2:0"}
    }


def test_json_for_scripts(models, trial, capsys):
    data = show_json(capsys, trial["edge"])
    assert data["fingerprint"] == tf.saved_model.experimental.read_fingerprint(trial["edge"]).singleprint()
    assert data["variables_bytes"] == sum(
        os.path.getsize(os.path.join(trial["edge"], "variables", f))
        for f in os.listdir(os.path.join(trial["edge"], "variables"))
    )
    (mg,) = data["meta_graphs"]
    assert mg["tags"] == ["serve"] and "StringUpper" in mg["ops"]
    assert mg["functions"] == {"serve": ["serve(n: int32 (-1), s: string (-1))"]}
    sig = mg["signatures"]["serving_default"]
    assert sorted(sig["outputs"]) == ["../../escaped", "a/b", "text"]
    assert sig["inputs"]["s"] == {"dtype": "string", "shape": [None], "name": "serving_default_s:0"}

    versioned = show_json(capsys, models["versioned"], "--version", "1")
    assert (versioned["versions"], versioned["version"]) == (["1", "2"], "1")
    assert versioned["path"].endswith(os.path.join("versioned", "1"))
    text = show(capsys, models["versioned"])
    assert "versions:     1, 2 (using 2)" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tag-set", "gpu"], "tag set 'gpu' not found in"),
        (["--signature", "nope"], "signature 'nope' not found in"),
        (["--version", "9"], "version 9 not found: "),
    ],
)
def test_errors_are_one_line(models, capsys, args, message):
    code = main(["show", models["two_sig"], *args])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    code = main(["show", models["two_sig"] + "-missing"])
    _, err = capsys.readouterr()
    assert code == 2 and "does not exist" in err


def _saved_model_cli_show_all(path: str) -> str:
    """What ``saved_model_cli show --dir PATH --all`` prints: the function its ``show``
    command calls for ``--all``, run here (TensorFlow is imported already; a child process
    per model cost ~4 CPU s of TensorFlow import each and tested nothing more)."""
    from tensorflow.python.tools import saved_model_cli

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        saved_model_cli._show_all(path)
    return text.getvalue()


def _saved_model_cli_facts(path: str) -> tuple[dict, dict, set]:
    """Signatures, ops and function names as ``saved_model_cli show --all`` prints them."""
    text = _saved_model_cli_show_all(path)
    sigs, ops = {}, {}
    for block in text.split("MetaGraphDef with tag-set: ")[1:]:
        tags = ",".join(sorted(t.strip() for t in block.split("'")[1].split(",")))
        for name, body in re.findall(r"signature_def\['(.+?)'\]:\n(.*?)Method name is", block, re.S):
            if name == "__saved_model_init_op":
                continue
            tensors = {}
            for kind, key, dtype, shape, tname in re.findall(
                r"(inputs|outputs)\['(.+?)'\] tensor_info:\n\s+dtype: DT_(\w+)\n\s+shape: (.+)\n\s+name: (.+)\n", body
            ):
                dtype = tf.dtypes.as_dtype(types_pb2.DataType.Value(f"DT_{dtype}")).name
                tensors[(kind, key)] = (dtype, shape.replace("unknown_rank", "unknown rank"), tname)
            sigs[(tags, name)] = tensors
        used = re.search(r"contains the following ops: (\{.*\})", block)
        ops[tags] = ast.literal_eval(used.group(1)) if used else set()
    functions = set(re.findall(r"Function Name: '(.+?)'", text))
    return sigs, ops, functions


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tf1", "two_sig", "counter"])
def test_same_facts_as_saved_model_cli(models, trial, capsys, name):
    path = {**models, **trial}[name]
    sigs, ops, functions = _saved_model_cli_facts(path)
    data = show_json(capsys, path, "--all")
    ours = {}
    for mg in data["meta_graphs"]:
        for key, sig in mg["signatures"].items():
            ours[(mg["tag_set"], key)] = {
                (kind, k): (
                    t["dtype"],
                    TensorSpec(k, t["dtype"], t["shape"] and tuple(t["shape"]), "").shape_str(),
                    t["name"],
                )
                for kind in ("inputs", "outputs")
                for k, t in sig[kind].items()
            }
    assert ours == sigs
    assert {mg["tag_set"]: set(mg["ops"]) for mg in data["meta_graphs"]} == ops
    assert {f for mg in data["meta_graphs"] for f in mg["functions"]} == functions


def test_several_models_are_listed_each_with_its_signature(models, tmp_path, capsys):
    """``show --model NAME=PATH``, repeated, and a config's ``models:`` list every model (as
    ``--dry-run`` does), each with the signature the job would score (a model's own, else the
    flag's), its inputs and outputs as ``tf.saved_model.load`` sees them."""
    path, versioned = models["two_sig"], models["versioned"]
    text = show(capsys, "--model", f"champion={path}", "--model", f"challenger={versioned}", "--signature", "embed")
    assert text.startswith("models:       2 (champion, challenger)\n")
    champion, challenger = text.split("\nmodel 'champion':\n")[1].split("\nmodel 'challenger':\n")
    assert f"  model:        {path}\n" in champion and "versions:" not in champion
    assert f"  model:        {versioned}/2\n" in challenger and "  versions:     1, 2 (using 2)" in challenger
    loaded = tf.saved_model.load(path).signatures["embed"]
    for text_of_one in (champion, challenger):
        assert "  signature 'embed'" in text_of_one and "serving_default'  (method" not in text_of_one
        for key, spec in loaded.structured_outputs.items():
            assert re.search(rf"^      {key}\s+{spec.dtype.name}\s", text_of_one, re.M)

    config = tmp_path / "job.yaml"
    config.write_text(
        f"models:\n  champion: {path}\n  challenger: {{path: {versioned}, signature: embed, model_version: 1}}\n"
        "input: {paths: data/*.parquet}\n"
    )
    data = show_json(capsys, "--config", str(config))
    assert list(data["models"]) == ["champion", "challenger"]
    champion, challenger = data["models"]["champion"], data["models"]["challenger"]
    assert champion["path"] == path and challenger["version"] == "1"
    assert list(champion["meta_graphs"][0]["signatures"]) == ["serving_default"]  # the job's default
    assert list(challenger["meta_graphs"][0]["signatures"]) == ["embed"]  # its own
    # one model from a config is today's view
    config.write_text(f"model: {{path: {path}}}\n")
    assert show(capsys, "--config", str(config)).startswith(f"model:        {path}\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (["MODEL", "--model", "b=MODEL"], "give the model once, or several as --model NAME=PATH"),
        (["--model", "MODEL", "--model", "b=MODEL"], "has no name; with several models give each as --model NAME"),
        (["--model", "a=MODEL", "--model", "a=MODEL"], "--model a=... is given twice"),
        (["--model", "a=MODEL-missing", "--model", "b=MODEL"], "does not exist"),
    ],
)
def test_several_models_refusals_are_one_line(models, capsys, args, message):
    code = main(["show", *(a.replace("MODEL", models["two_sig"]) for a in args)])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
