"""beamscore's local runner in ``multi_threading`` mode (its default) reads no element out of
step (issue 33: ``--plan-on-workers`` ended ``Invalid PaneInfoEncoding: 6`` one run in five,
and a run was OOM-killed at 22 GB). Beam 2.77's embedded gRPC harness flushes its output
stream every second from another thread; an element whose encoding runs Python code (a
pickled object, as beamscore's work units, batches and receipts are) could be cut in two,
and the runner decodes each piece alone. Here the encoding of each element takes 2 ms of
Python, so that a timed flush lands inside one: Beam's own FnApiRunner failed this way each
time (``Invalid PaneInfoEncoding: 13``, or ``MemoryError`` under an address-space limit:
``benchmarks/flush_race.py``). The pipeline runs in a child process limited to 4 GB of
address space, since a stream read out of step may ask for any amount of memory."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import apache_beam as beam
from beamscore.pipelines.runners import make_runner, pipeline_options

class SlowToPickle:
    def __init__(self, i):
        self.i = i
    def __reduce__(self):
        time.sleep(0.002)
        return (SlowToPickle, (self.i,))

def emit(n):
    for i in range(n):
        yield i % 7, SlowToPickle(i)

n = int(sys.argv[1])
options = pipeline_options(["--direct_running_mode=multi_threading", "--direct_num_workers=2"], {})
with beam.Pipeline(runner=make_runner(options), options=options) as p:
    groups = p | beam.Create([n]) | beam.FlatMap(emit) | beam.GroupByKey()
    sums = groups | beam.Map(lambda kv: (kv[0], sum(e.i for e in kv[1])))
    _ = sums | beam.combiners.ToList() | beam.Map(lambda found: print(sorted(found), flush=True))
"""

ELEMENTS = 800


def test_elements_cross_a_shuffle_whole_under_multi_threading():
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ELEMENTS)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = [(k, sum(i for i in range(ELEMENTS) if i % 7 == k)) for k in range(7)]
    assert done.stdout.strip().splitlines()[-1] == str(expected)
