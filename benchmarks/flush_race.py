"""By hand, not in the suite: Beam 2.77's ``multi_threading`` harness cuts an element in two
when its timed flush (every second, from another thread) lands inside the element's encoding.

    PYTHONPATH=. python -m benchmarks.flush_race [--elements 2000]

Limits its own address space to 4 GB first: a stream read out of step may ask for any
amount of memory (unlimited, a run here was killed by the OOM killer). Runs one small
pipeline (elements whose pickling takes 2 ms of Python, a ``GroupByKey``)
on Beam's own FnApiRunner and on beamscore's local runner (``make_runner``), both in
``multi_threading`` mode with 2 workers, and prints how each ended. On Beam's runner it
ended ``NotImplementedError: Invalid PaneInfoEncoding: 13`` or ``MemoryError`` each time here; beamscore's
runner turns the timed flush off (``beamscore.pipelines.runners.UNTIMED_FLUSH_MS``).
"""

from __future__ import annotations

import argparse
import sys
import time

import apache_beam as beam


class SlowToPickle:
    def __init__(self, i: int) -> None:
        self.i = i

    def __reduce__(self):
        time.sleep(0.002)  # Python inside the encoding: the GIL can pass to the flushing thread here
        return (SlowToPickle, (self.i,))


def _emit(n: int):
    for i in range(n):
        yield i % 7, SlowToPickle(i)


def _run(runner, options, n: int) -> str:
    began = time.perf_counter()
    try:
        with beam.Pipeline(runner=runner, options=options) as p:
            _ = p | beam.Create([n]) | beam.FlatMap(_emit) | beam.GroupByKey() | beam.Map(lambda kv: len(list(kv[1])))
    except Exception as exc:  # noqa: BLE001 - what it ended with is the point
        line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return f"failed after {time.perf_counter() - began:.1f} s: {line[:200]}"
    return f"ok in {time.perf_counter() - began:.1f} s"


def main() -> int:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from beamscore.pipelines.runners import make_runner, pipeline_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=2000)
    args = parser.parse_args()
    options = pipeline_options(["--direct_running_mode=multi_threading", "--direct_num_workers=2"], {})
    print(f"Beam's FnApiRunner:       {_run(FnApiRunner(), options, args.elements)}")
    print(f"beamscore's local runner: {_run(make_runner(options), options, args.elements)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
