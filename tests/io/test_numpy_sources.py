"""``.npz`` and ``.npy`` specifics: no pickle, one length per archive, row slices of big arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.cli import main
from beamscore.errors import BeamscoreError
from beamscore.io.npy import NpySource
from beamscore.io.npz import NpzSource
from beamscore.model.inspect import inspect_model


def stacked(table: pa.Table, column: str) -> np.ndarray:
    return np.stack(table[column].to_numpy(zero_copy_only=False))


def read_all(source, path: str, columns: list[str], batch_size: int = 64) -> pa.Table:
    tables = [t for unit in source.units(path, 0) for t in source.read(unit, columns, batch_size)]
    return pa.concat_tables(tables)


def test_an_object_array_is_refused_unless_allow_pickle(tmp_path, capsys, models):
    path = str(tmp_path / "in" / "objects.npz")
    (tmp_path / "in").mkdir()
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.savez(path, x=x, key=np.array([b"a", b"bb", None, b"d", b"e", b"f"], dtype=object))
    code = main(["score", "--model", models["two_sig"], "--input", path, "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{path}: array 'key': holds Python objects (dtype object)" in err and "--allow-pickle" in err
    table = read_all(NpzSource(allow_pickle=True), path, ["x", "key"])
    assert table["key"].to_pylist() == [b"a", b"bb", None, b"d", b"e", b"f"]
    np.testing.assert_array_equal(np.stack(table["x"].to_numpy(zero_copy_only=False)), x)


def test_arrays_that_disagree_on_rows_are_refused_naming_them(tmp_path):
    path = str(tmp_path / "bad.npz")
    np.savez(path, x=np.zeros((5, 4), np.float32), id=np.arange(4))
    with pytest.raises(
        BeamscoreError, match=r"bad\.npz: arrays disagree on their number of rows \(x has 5, id has 4\)"
    ):
        NpzSource().columns(path)


def test_compressed_npz_in_several_units_of_row_ranges(tmp_path):
    path = str(tmp_path / "c.npz")
    x = np.arange(1000 * 3, dtype=np.float64).reshape(1000, 3)
    img = np.arange(1000 * 2 * 2 * 3, dtype=np.uint8).reshape(1000, 2, 2, 3)
    np.savez_compressed(path, x=x, img=img, name=np.array([f"n{i}" for i in range(1000)]))
    source = NpzSource(rows_per_unit=300)
    units = source.units(path, 0)
    assert [(u.start, u.stop) for u in units] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    cols = source.columns(path)
    assert (cols["img"].dtype, cols["img"].row_shape) == ("uint8", (2, 2, 3))
    assert cols["name"].dtype == "string"
    table = read_all(source, path, ["x", "img", "name"], batch_size=128)
    np.testing.assert_array_equal(np.stack(table["x"].to_numpy(zero_copy_only=False)), x)
    assert isinstance(table.schema.field("img").type, pa.FixedShapeTensorType)
    np.testing.assert_array_equal(table["img"].combine_chunks().to_numpy_ndarray(), img)
    assert table["name"].to_pylist()[998:] == [b"n998", b"n999"]


def test_npy_is_read_in_row_slices_and_fed_to_the_only_input(tmp_path, models, capsys):
    x = np.random.default_rng(1).normal(size=(1000, 4)).astype(np.float32)
    path = str(tmp_path / "in" / "x.npy")
    (tmp_path / "in").mkdir()
    np.save(path, x)
    source = NpySource(rows_per_unit=256).bind(inspect_model(models["two_sig"]).signature(), {})
    assert set(source.columns(path)) == {"*", "x"}
    units = source.units(path, 3)
    assert [(u.shard, u.index, u.start, u.stop) for u in units][-1] == (3, 3, 768, 1000)
    np.testing.assert_array_equal(np.stack(read_all(source, path, ["x"])["x"].to_numpy(zero_copy_only=False)), x)
    out = tmp_path / "out"
    code = main(
        [
            *("score", "--model", models["two_sig"], "--input", path, "--output", str(out)),
            *("--rows-per-unit", "256", "--map", "x=*"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    table = read_output(str(out))
    expected = direct_call(models["two_sig"], "serving_default", x=x)
    assert_scores_close(np.stack(table["scores"].to_numpy(zero_copy_only=False)), expected["scores"])


def test_npy_big_endian_fortran_and_remote_reads(tmp_path):
    import fsspec

    x = np.arange(40, dtype=">f8").reshape(10, 4)
    local = str(tmp_path / "be.npy")
    np.save(local, x)
    np.testing.assert_array_equal(
        np.stack(read_all(NpySource(), local, ["*"], 3)["*"].to_numpy(zero_copy_only=False)), x
    )
    fortran = str(tmp_path / "f.npy")
    np.save(fortran, np.asfortranarray(x.astype(np.float32)))
    got = np.stack(read_all(NpySource(), fortran, ["*"], 4)["*"].to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(got, x.astype(np.float32))
    with fsspec.open("memory://beamscore-tests/m.npy", "wb") as f:
        np.save(f, x.astype(np.int32))
    got = np.stack(
        read_all(NpySource(), "memory://beamscore-tests/m.npy", ["*"], 4)["*"].to_numpy(zero_copy_only=False)
    )
    np.testing.assert_array_equal(got, x.astype(np.int32))
    with pytest.raises(BeamscoreError, match=r"a \.npy file has one array, the column '\*'"):
        read_all(NpySource(), local, ["y"])


def test_npy_object_array_and_scalar_are_refused(tmp_path):
    path = str(tmp_path / "o.npy")
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BeamscoreError, match="--allow-pickle"):
        NpySource().columns(path)
    scalar = str(tmp_path / "s.npy")
    np.save(scalar, np.float32(3))
    with pytest.raises(BeamscoreError, match=r"is a scalar \(shape \(\)\)"):
        NpySource().units(scalar, 0)


def test_npy_and_npz_with_a_version_3_header_are_scored(tmp_path, models, capsys):
    """``write_array(..., version=(3, 0))`` (a UTF-8 header) was an AttributeError: numpy 2
    moved the private header reader the source called."""
    import zipfile

    x = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float32)
    (tmp_path / "in").mkdir()
    npy = str(tmp_path / "in" / "v3.npy")
    with open(npy, "wb") as f:
        np.lib.format.write_array(f, x, version=(3, 0))
    npz = str(tmp_path / "in" / "v3.npz")
    with zipfile.ZipFile(npz, "w") as archive, archive.open("x.npy", "w") as member:
        np.lib.format.write_array(member, x, version=(3, 0))
    expected = direct_call(models["two_sig"], "serving_default", x=x)["scores"]
    for path in (npy, npz):
        out = tmp_path / f"out-{path[-3:]}"
        code = main(["score", "--model", models["two_sig"], "--input", path, "--output", str(out)])
        assert code == 0, capsys.readouterr().err
        assert_scores_close(stacked(read_output(str(out)), "scores"), expected)
    bad = str(tmp_path / "v4.npy")
    with open(npy, "rb") as f:
        data = bytearray(f.read())
    data[6] = 4  # a version this reader does not know
    with open(bad, "wb") as f:
        f.write(data)
    with pytest.raises(BeamscoreError, match=r"v4\.npy: not a \.npy array: .*version"):
        NpySource().columns(bad)
    data[6] = 3
    data[8:12] = (1 << 31).to_bytes(4, "little")  # a damaged header length
    with open(bad, "wb") as f:
        f.write(data)
    with pytest.raises(BeamscoreError, match=r"not a \.npy array: the header claims 2147483648 bytes"):
        NpySource().columns(bad)


def test_npz_arrays_beside_the_rows_are_left_out_not_refused(tmp_path, models, capsys):
    """``np.savez(x=..., id=..., class_names=..., version=3)``: an array of another length
    or a scalar the signature does not read refused the whole file; now the inputs' arrays
    set the rows and the others are not columns. (An object array is still refused without
    --allow-pickle: see test_an_object_array_is_refused_unless_allow_pickle.)"""
    x = np.random.default_rng(5).normal(size=(9, 4)).astype(np.float32)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "data.npz")
    np.savez(path, x=x, id=np.arange(9), class_names=np.array(["cat", "dog"]), version=np.int64(3))
    out = tmp_path / "out"
    args = ["score", "--model", models["two_sig"], "--input", path, "--output", str(out)]
    assert main([*args, "--keep", "id"]) == 0, capsys.readouterr().err
    table = read_output(str(out))
    assert table["id"].to_pylist() == list(range(9))
    expected = direct_call(models["two_sig"], "serving_default", x=x)["scores"]
    assert_scores_close(stacked(table, "scores"), expected)
    assert main([*args.copy(), "--keep", "class_names", "--overwrite"]) == 2
    assert "no column 'class_names' to --keep; columns: id, x" in capsys.readouterr().err
    # an input array that does not fit is still refused, naming it; unbound, the file is too
    bad = str(tmp_path / "in2" / "bad.npz")
    (tmp_path / "in2").mkdir()
    np.savez(bad, x=x, id=np.arange(8))
    assert main(["score", "--model", models["two_sig"], "--input", bad, "--output", str(tmp_path / "o2")]) == 0
    with pytest.raises(BeamscoreError, match=r"arrays disagree on their number of rows \(x has 9, id has 8\)"):
        NpzSource().columns(bad)
    np.savez(bad, x=np.float32(1), x2=x)
    bound = NpzSource().bind(inspect_model(models["two_sig"]).signature(), {})
    with pytest.raises(BeamscoreError, match=r"bad\.npz: array 'x': is a scalar"):
        bound.columns(bad)
    assert set(NpzSource().bind(inspect_model(models["two_sig"]).signature(), {"x": "x2"}).columns(bad)) == {"x2"}


def test_a_pickled_string_array_with_nan_for_missing_values(tmp_path, models, capsys):
    """``np.savez(..., name=df["name"].to_numpy())``: pandas leaves an object array of str
    with NaN (or None) where a value is missing. The NaN failed every row of the unit
    (``ArrowTypeError: Expected bytes, got a 'float' object``); it is now a null."""
    x = np.random.default_rng(9).normal(size=(6, 4)).astype(np.float32)
    names = np.array(["ann", np.nan, "bé", None, b"raw", "eve"], dtype=object)
    (tmp_path / "in").mkdir()
    path = str(tmp_path / "in" / "frame.npz")
    np.savez(path, x=x, name=names)
    out = tmp_path / "out"
    args = ["score", "--model", models["two_sig"], "--input", path, "--output", str(out), "--allow-pickle"]
    assert main([*args, "--keep", "name"]) == 0, capsys.readouterr().err
    table = read_output(str(out))
    assert table["name"].to_pylist() == [b"ann", None, "bé".encode(), None, b"raw", b"eve"]
    expected = direct_call(models["two_sig"], "serving_default", x=x)["scores"]
    assert_scores_close(stacked(table, "scores"), expected)
    np.savez(path, x=x, name=np.array(["a", "b", 7, "d", "e", "f"], dtype=object))
    with pytest.raises(
        BeamscoreError, match=r"frame\.npz: array 'name': row 2 holds 7 \(int\); an object array is read"
    ):
        read_all(NpzSource(allow_pickle=True), path, ["x", "name"])


def test_complex_and_long_double_arrays_are_refused_up_front(tmp_path, capsys):
    """Arrow has no complex or long double type: with --cast (a float64 input) the job
    was planned, then every row failed (``ArrowNotImplementedError: Unsupported numpy type
    13``). A model built here takes float64 ``d``."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float64, name="d")])
        def serve(self, d):
            return {"score": d * 2}

    model = str(tmp_path / "model")
    module = Module()
    tf.saved_model.save(module, model, signatures={"serving_default": module.serve})
    (tmp_path / "in").mkdir()
    for dtype, message in [
        (np.complex128, "complex arrays (dtype complex128) are not supported; save the real and imaginary parts"),
        (
            np.longdouble,
            f"long double arrays (dtype {np.dtype(np.longdouble)}) are not supported; save them as float64",
        ),
    ]:
        path = str(tmp_path / "in" / f"{np.dtype(dtype).name}.npy")
        np.save(path, np.array([1.5, 2.5], dtype=dtype))
        out = tmp_path / f"out-{np.dtype(dtype).name}"
        assert main(["score", "--model", model, "--input", path, "--output", str(out), "--cast"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"beamscore: error: {path}: {message}"), err
    path = str(tmp_path / "in" / "ok.npy")
    np.save(path, np.array([1.5, 2.5]))
    assert main(["score", "--model", model, "--input", path, "--output", str(tmp_path / "ok")]) == 0
    expected = direct_call(model, "serving_default", d=np.array([1.5, 2.5]))["score"]
    assert_scores_close(read_output(str(tmp_path / "ok"))["score"].to_numpy(), expected)


def test_an_array_of_zero_width_rows_is_refused_up_front_or_left_out(tmp_path, models, capsys):
    """An array of shape (n, 0) became a fixed-size list of 0 values, which Arrow refuses:
    ``--keep z`` planned, then every row was "unread: ArrowInvalid: list_size needs to be a
    strict positive integer". A .npy of it is refused up front; in an .npz no input reads
    it is left out of the columns."""
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    (tmp_path / "in").mkdir()
    npy = str(tmp_path / "in" / "empty-rows.npy")
    np.save(npy, np.zeros((3, 0), np.float32))
    assert main(["score", "--model", models["two_sig"], "--input", npy, "--output", str(tmp_path / "o1")]) == 2
    assert f"{npy}: has rows of 0 values (shape (3, 0))" in capsys.readouterr().err
    npz = str(tmp_path / "in" / "with-empty.npz")
    np.savez(npz, x=x, z=np.zeros((3, 0), np.float32))
    out = tmp_path / "out"
    assert main(["score", "--model", models["two_sig"], "--input", npz, "--output", str(out)]) == 0
    expected = direct_call(models["two_sig"], "serving_default", x=x)["scores"]
    assert_scores_close(stacked(read_output(str(out)), "scores"), expected)
    assert (
        main(["score", "--model", models["two_sig"], "--input", npz, "--output", str(tmp_path / "o3"), "--keep", "z"])
        == 2
    )
