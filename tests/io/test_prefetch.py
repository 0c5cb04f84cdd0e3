"""``prefetch``: order, errors in place, bounded read-ahead, early stop closes the source."""

from __future__ import annotations

import threading
import time

import pytest

from beamscore.errors import BeamscoreError
from beamscore.io.prefetch import prefetch


def test_items_arrive_in_order_from_another_thread():
    threads = set()

    def source():
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert list(prefetch(source(), depth=3)) == list(range(50))
    assert threads == {"beamscore-prefetch"}


def test_an_error_arrives_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise BeamscoreError("f.parquet: broken at row 2")

    got = []
    with pytest.raises(BeamscoreError, match="broken at row 2"):
        for item in prefetch(source()):
            got.append(item)
    assert got == [1, 2]


def test_reads_at_most_depth_ahead():
    produced = []

    def source():
        for i in range(100):
            produced.append(i)
            yield i

    items = prefetch(source(), depth=2)
    assert next(items) == 0
    time.sleep(0.2)
    assert len(produced) <= 4  # the one handed out, `depth` queued, one waiting to be queued
    items.close()


def test_stopping_early_closes_the_source_on_its_thread():
    closed = threading.Event()

    def source():
        try:
            yield from range(1000)
        finally:
            closed.set()

    for item in prefetch(source(), depth=2):
        if item == 3:
            break
    assert closed.wait(2)


def test_depth_zero_reads_inline():
    assert list(prefetch(iter(range(5)), depth=0)) == [0, 1, 2, 3, 4]
