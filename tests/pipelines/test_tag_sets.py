"""A model whose only tag set is not ``serve`` (a TF1 export tagged ``serve,gpu``): ``score``
picks it as ``run`` does, and the manifest spells it one way everywhere."""

from __future__ import annotations

import json

import builders
import numpy as np
import pytest
import tensorflow as tf
from conftest import read_output
from scores import assert_scores_close

from beamscore.cli import main


@pytest.fixture(scope="module")
def gpu_only(tmp_path_factory) -> str:
    """TF1 ``y = x @ w + 1`` (x float32 [None, 4]) saved under the tag set ``serve,gpu`` only."""
    path = str(tmp_path_factory.mktemp("gpu_only") / "model")
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as sess:
        w = v1.get_variable("w", initializer=np.array([1.0, -2.0, 0.5, 3.0], np.float32))
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        y = tf.add(tf.reduce_sum(x * w, axis=1), 1.0, name="y")
        sess.run(v1.global_variables_initializer())
        info = v1.saved_model.utils.build_tensor_info
        sig = v1.saved_model.signature_def_utils.build_signature_def(
            {"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"
        )
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(sess, ["serve", "gpu"], signature_def_map={"serving_default": sig})
        builder.save()
    return path


def test_score_uses_the_only_tag_set_and_spells_it_once(gpu_only, tmp_path, capsys):
    paths, _ids, x = builders.write_parquet_shards(str(tmp_path / "data"), rows=30, shards=1)
    out = tmp_path / "out"
    assert main(["score", gpu_only, "--input", paths[0], "--output", str(out), "--keep", "id"]) == 0, (
        capsys.readouterr().err
    )
    want = tf.saved_model.load(gpu_only, tags=["serve", "gpu"]).signatures["serving_default"](x=tf.constant(x))["y"]
    assert_scores_close(read_output(str(out))["y"], want)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["model"]["tag_set"] == manifest["settings"]["tag_set"] == "gpu,serve"

    # given as the user spells it, the manifest still spells it one way
    again = tmp_path / "again"
    argv = ["score", gpu_only, "--input", paths[0], "--output", str(again), "--tag-set", "serve,gpu"]
    assert main(argv) == 0
    manifest = json.loads((again / "_manifest.json").read_text())
    assert manifest["model"]["tag_set"] == manifest["settings"]["tag_set"] == "gpu,serve"
    # serve asked for by name is still refused, naming what there is
    assert main([*argv[:-1], "serve", "--overwrite"]) == 2
    assert "tag set 'serve' not found" in capsys.readouterr().err
