"""``--pad NAME=LENGTH[:VALUE]`` (:mod:`beamscore.io.pad`): fill values are checked up front."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.io.pad import Pad, pad_value


def save_uint8_model(path: str) -> str:
    """``u`` uint8 [None, 6] -> ``score`` int32 [None]: a pixel row padded to 6 values."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.uint8, name="u")])
        def serve(self, u):
            return {"score": tf.reduce_sum(tf.cast(u, tf.int32) * tf.range(1, 7), axis=1)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_a_fill_value_out_of_the_columns_range_is_refused_before_the_job(tmp_path, capsys):
    """``--pad u=6:-1`` on a uint8 array made every row a dead letter ("rows 0-2 unread:
    OverflowError: can't convert negative value to unsigned int"); it is refused up front."""
    model = save_uint8_model(str(tmp_path / "model"))
    u = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "u.npz")
    np.savez(path, u=u)
    args = ["score", "--model", model, "--input", path]
    for fill, message in [("-1", "-1 does not fit uint8 (0..255)"), ("300", "300 does not fit uint8 (0..255)")]:
        out = tmp_path / f"out{fill}"
        assert main([*args, "--output", str(out), "--pad", f"u=6:{fill}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"beamscore: error: --pad u=6:{fill}: {message}"]
        assert not out.exists() or not any(out.iterdir())
    out = tmp_path / "out"
    assert main([*args, "--output", str(out), "--pad", "u=6:255"]) == 0, capsys.readouterr().err
    padded = np.full((3, 6), 255, dtype=np.uint8)
    padded[:, :4] = u
    expected = direct_call(model, "serving_default", u=padded)
    assert_scores_close(read_output(str(out))["score"].to_numpy(), expected["score"])


def test_pad_value_checks_type_and_range():
    assert pad_value(Pad(3, "-128"), "int8", "t") == -128
    assert pad_value(Pad(3, ""), "uint64", "t") == 0
    with pytest.raises(BeamscoreError, match=r"--pad t=3:128: 128 does not fit int8 \(-128\.\.127\)"):
        pad_value(Pad(3, "128"), "int8", "t")
    with pytest.raises(BeamscoreError, match=r"'1\.5' is not a int32 value"):
        pad_value(Pad(3, "1.5"), "int32", "t")


def test_a_list_of_lists_column_is_named_not_an_arrow_error(tmp_path):
    """A Parquet ``list<list<float>>`` column with ``--pad`` failed inside Arrow ("Could not
    convert 0.0 with type float: was not a sequence"); it now names the column and type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beamscore.io.pad import pad_table

    path = str(tmp_path / "nested.parquet")
    nested = pa.array([[[1.0, 2.0]], [[3.0]], [[1.0], [2.0, 3.0]]], type=pa.list_(pa.list_(pa.float32())))
    pq.write_table(pa.table({"v": nested, "w": pa.array([[1.0], [], [2.0, 3.0, 4.0]])}), path)
    table = pq.read_table(path)
    padded = pad_table(table, {"w": Pad(2, "9")})
    assert padded["w"].to_pylist() == [[1.0, 9.0], [9.0, 9.0], [2.0, 3.0]]
    with pytest.raises(BeamscoreError, match=r"--pad v: column 'v' has type list<.*list<.*float>>, lists of lists"):
        pad_table(table, {"v": Pad(3)})
