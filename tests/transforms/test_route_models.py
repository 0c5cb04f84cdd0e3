"""``RoutedModelsFn`` with ``--max-models-per-worker``: a released model's memory is given
back before the next model loads.

A loaded SavedModel is a web of reference cycles; dropped, it waited for a full collection,
which allocation counts seldom start, so a bound of 3 models peaked above holding all ten
(docs/performance.md). Here the automatic collector is off, so the test does not depend on
when it would run: only the DoFn's own collection frees a released model.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from scores import assert_scores_close

from beamscore.config import ScoreConfig
from beamscore.pipelines.plan import plan_job
from beamscore.transforms.route_models import RoutedModelsFn
from beamscore.transforms.run_models import named_models


class Segment(tf.Module):
    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = tf.Variable(a)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.reduce_sum(x, axis=1) * self.a}


@pytest.fixture(scope="module")
def routed(tmp_path_factory) -> tuple[RoutedModelsFn, dict[str, str], pa.Table]:
    root = tmp_path_factory.mktemp("route_models")
    paths = {}
    for i, name in enumerate(("a", "b", "c")):
        module = Segment(float(i + 1))
        paths[name] = str(root / name)
        tf.saved_model.save(module, paths[name], signatures={"serving_default": module.serve})
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 4), "seg": list("abcabc")})
    pq.write_table(table, root / "in.parquet")
    config = ScoreConfig(
        models={name: {"path": path} for name, path in paths.items()},
        route_by="seg",
        max_models_per_worker=2,
        inputs=[str(root / "in.parquet")],
        output=str(root / "out"),
        trial=False,
    )
    plan = plan_job(config)
    return RoutedModelsFn(named_models(plan), "seg", max_models=2), paths, table


def test_a_released_model_is_freed_before_the_next_loads(routed):
    fn, paths, table = routed
    frozen = gc.get_freeze_count()
    fn.setup()
    assert gc.get_freeze_count() > 0  # what was alive before: left out of each release's collection
    x = np.stack(table["x"].to_numpy(zero_copy_only=False))
    held: dict[str, weakref.ref] = {}
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        turns = ["a", "b", "c", "a", "b", "c"]
        for turn, name in enumerate(turns):
            scorer = fn._scorer(name)
            scored = scorer.score_table(table, "in.parquet")
            want = tf.saved_model.load(paths[name]).signatures["serving_default"](x=tf.constant(x))["y"].numpy()
            assert_scores_close(scored.outputs["y"], want, err_msg=name)
            del scorer, scored
            # the variable's resource handle: the function graphs that capture it are cyclic, so
            # the weights outlive the model object until they are collected
            held[f"{name}{turn}"] = weakref.ref(fn._open[name][0].obj.a.handle)
            alive = [key for key, ref in held.items() if ref() is not None]
            holding = [f"{n}{t}" for t, n in enumerate(turns[: turn + 1])][-2:]
            assert alive == holding, alive  # only the two models held: each released one is gone
    finally:
        if was_enabled:
            gc.enable()
    fn.teardown()
    assert gc.get_freeze_count() == frozen  # thawed again


@pytest.mark.parametrize(
    "column",
    [
        pa.chunked_array([["de", None, "fr"], ["de", "xx", "fr"]]),
        pa.chunked_array([pa.array(["de", None, "fr", "de", "xx", "fr"]).dictionary_encode()]),
        pa.chunked_array([[b"de", None, b"fr", b"de", b"xx", b"fr"]], pa.binary()),
    ],
    ids=["strings", "dictionary", "binary"],
)
def test_route_codes_give_each_row_its_key_with_one_call_per_distinct_value(column):
    from beamscore.transforms.route_models import route_codes, route_key

    codes, keys = route_codes(column)
    assert [keys[c] for c in codes] == [route_key(v) for v in column.to_pylist()]
    assert len(keys) == 4  # de, fr, xx and the nulls' None


def test_route_codes_of_integers_and_of_an_empty_batch():
    from beamscore.transforms.route_models import route_codes

    codes, keys = route_codes(pa.chunked_array([[7, None, 3, 7]], pa.int64()))
    assert [keys[c] for c in codes] == ["7", None, "3", "7"]
    codes, keys = route_codes(pa.chunked_array([], pa.string()))
    assert len(codes) == 0 and keys == [None]
