"""``WorkUnit`` as Beam carries it: a packed unit pickles its members as columns (once, then
kept), and comes back equal, footers and sizes included."""

from __future__ import annotations

import pickle

import numpy as np
from apache_beam.coders import coders

from beamscore.io.base import WorkUnit, pack_units


def packed_unit(files: int = 300) -> WorkUnit:
    units = [
        WorkUnit(i, 0, f"/data/f{i:05d}.parquet", 0, 1, 3, None if i % 2 else 0, footer=bytes([i % 7]), size=i)
        for i in range(files)
    ]
    (unit,) = pack_units(units, rows_per_unit=10_000)
    return unit


def test_a_packed_unit_pickles_to_an_equal_unit_with_its_members_footers_and_sizes():
    unit = packed_unit()
    for coder in (coders.PickleCoder(), coders.FastPrimitivesCoder()):
        back = coder.decode(coder.encode(unit))
        assert back == unit and hash(back) == hash(unit) and back.name == unit.name
        assert [(m.footer, m.size, m.first_row) for m in back.members] == [
            (m.footer, m.size, m.first_row) for m in unit.members
        ]
        assert all(m.members == () for m in back.members)
        assert back.files == unit.files
        paths, rows = back.locate(np.array([0, 4, 899]))
        assert paths == ["/data/f00000.parquet", "/data/f00001.parquet", "/data/f00299.parquet"]
        assert rows.tolist() == [0, 1, 2]


def test_a_packed_units_columns_are_built_once_and_kept():
    """Beam encodes an element each time it samples a PCollection's sizes: the columns are
    not built again (a member changed behind the unit's back would not be seen, and the
    frozen dataclass does not change)."""
    unit = packed_unit()
    first = pickle.dumps(unit)
    assert "_pickled" in vars(unit)
    kept = vars(unit)["_pickled"]
    assert pickle.dumps(unit) == first and vars(unit)["_pickled"] is kept
    assert pickle.loads(first) == unit


def test_a_units_kept_columns_are_not_part_of_its_identity_or_copies():
    unit = packed_unit()
    pickle.dumps(unit)
    assert unit == packed_unit() and repr(unit) == repr(packed_unit())
    assert "_pickled" not in vars(unit.without_footer())


def test_a_plain_unit_pickles_as_a_dataclass_does():
    unit = WorkUnit(3, 1, "gs://b/f.parquet", 2, 5, 40, 17, footer=b"x", size=9)
    back = pickle.loads(pickle.dumps(unit))
    assert back == unit and (back.footer, back.size, back.first_row) == (b"x", 9, 17)
