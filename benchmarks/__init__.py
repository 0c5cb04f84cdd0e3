"""Side-by-side throughput benchmarks (``make bench``): not tests, not part of ``make test``.

``python -m benchmarks.bench [--quick]`` builds its models and data locally (random weights,
no downloads), runs each path as a whole child process and prints one table. See
:mod:`benchmarks.bench` for the paths and :mod:`benchmarks.paths` for what each one does.
"""
