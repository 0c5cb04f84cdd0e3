"""Arrow <-> numpy at the edges of a job: model outputs Arrow has no type for."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import direct_call, read_output

from beamscore.cli import main


class MixedPrecision(tf.Module):
    """A mixed-precision head: ``half`` returns bfloat16 scores; ``wave`` also a complex one."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def half(self, x):
        return {"p": tf.cast(tf.nn.softmax(x), tf.bfloat16)}

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def wave(self, x):
        return {"p": tf.reduce_sum(x, axis=1), "z": tf.complex(x, x)}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("mixed") / "m")
    module = MixedPrecision()
    tf.saved_model.save(module, path, signatures={"half": module.half, "wave": module.wave})
    return path


def test_bfloat16_outputs_are_written_as_float32_and_complex_ones_refused(model, tmp_path, capsys):
    """A bfloat16 output failed every batch (``ArrowNotImplementedError: Unsupported numpy
    type 256``); it is written as float32, which holds its every value. A complex output
    fails the job in one line that says what to do."""
    x = np.random.default_rng(9).normal(size=(20, 3)).astype(np.float32)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "x.parquet")
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 3)}), path)
    out = tmp_path / "out"
    code = main(["score", "--model", model, "--signature", "half", "--input", path, "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    got = read_output(str(out))
    assert got.schema.field("p").type == pa.list_(pa.float32(), 3)
    expected = direct_call(model, "half", x=x)["p"].astype(np.float32)
    np.testing.assert_array_equal(np.stack(got["p"].to_numpy(zero_copy_only=False)), expected)

    code = main(["score", "--model", model, "--signature", "wave", "--input", path, "--output", str(tmp_path / "o2")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "an output has dtype complex64, which Arrow and Parquet cannot hold; leave it out with --outputs" in err
    args = ["--signature", "wave", "--input", path, "--output", str(tmp_path / "o3"), "--outputs", "p"]
    code = main(["score", "--model", model, *args])
    assert code == 0
    np.testing.assert_allclose(read_output(str(tmp_path / "o3"))["p"].to_numpy(), x.sum(axis=1), rtol=1e-6)
