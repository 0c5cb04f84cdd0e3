"""Rows/s of one ``beamscore score`` job on 1 and 2 workers, per engine (``make bench-scaling``).

Two models: Keras 3 ``MobileNetV2(weights=None)`` at 224x224x3 (random weights, nothing
downloaded) over Parquet shards of uint8 images that beamscore casts to float32 losslessly,
and the benchmarks' 64->256->256->10 MLP over float32 rows (``benchmarks/build.py``). Each
configuration runs the same plan:

- ``in_memory``: Beam's in-process runner, the model loaded in this process;
- ``multi_processing N``: ``--direct_running_mode=multi_processing --direct_num_workers=N``,
  N SDK worker processes, each loading the model once (what Dataflow does per vCPU);
- ``dask N``: ``--runner=DaskRunner`` against a ``dask scheduler`` and N ``dask worker``
  processes of one thread on loopback (``tests/dask_cluster.py``), started before the clock.

The time is the pipeline's wall time (worker start or first-task imports and model loads
included, planning and the Dask cluster's start not), so small ``--rows`` under-state the
steady rate. Not a test and not part of ``make test``.

    python -m benchmarks.scaling                 # both models; 1 and 2 workers on each engine
    python -m benchmarks.scaling --models mlp --mlp-rows 1000000 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

MODELS = ("mobilenet", "mlp")


def prepare(name: str, work: str, rows: int, shards: int, batch_size: int, max_workers: int) -> dict:
    """Build (once) the model and Parquet shards of ``name``; return its job settings."""
    from benchmarks.build import build_dataset, build_mlp, build_mobilenet

    path = os.path.join(work, name)
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        (build_mobilenet if name == "mobilenet" else build_mlp)(path)
    kind = "image" if name == "mobilenet" else "mlp"
    data = build_dataset(os.path.join(work, f"data-{name}"), kind, rows, shards, parquet_only=True)
    units_per_shard = max(1, 2 * max_workers // shards)  # enough units for every worker
    return {
        "model": path,
        "files": data.parquet,
        "map": {"keras_tensor": "x"} if name == "mobilenet" else {},
        "batch_size": batch_size,
        "rows_per_unit": max(1, rows // (shards * units_per_shard)),
    }


def run(job: dict, output: str, flags: list[str]) -> dict:
    """Plan and run one job (settings from :func:`prepare`); return rows, seconds and rows/s."""
    from beamscore.config import ScoreConfig
    from beamscore.pipelines.plan import plan_job
    from beamscore.pipelines.runners import pipeline_options
    from beamscore.pipelines.score import run_plan

    config = ScoreConfig(
        model=job["model"],
        inputs=job["files"],
        output=output,
        map=job["map"],
        keep=["id"],
        batch_size=job["batch_size"],
        rows_per_unit=job["rows_per_unit"],
        overwrite=True,
    )
    result = run_plan(plan_job(config), pipeline_options(flags, {}))
    rows = result.manifest["rows_out"]
    return {"rows": rows, "seconds": round(result.seconds, 2), "rows_per_s": round(rows / result.seconds, 1)}


def configs(args: argparse.Namespace) -> list[tuple[str, int]]:
    """The (mode, workers) pairs to run, in order."""
    runs = [] if args.no_in_memory else [("in_memory", 1)]
    runs += [("multi_processing", n) for n in args.workers]
    runs += [("dask", n) for n in args.dask_workers]
    return runs


def run_config(job: dict, mode: str, workers: int, output: str) -> dict:
    """One configuration; for ``dask`` a fresh loopback cluster of ``workers`` workers."""
    if mode == "in_memory":
        return run(job, output, [])
    if mode == "multi_processing":
        return run(job, output, ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"])
    from pathlib import Path

    from tests.dask_cluster import dask_cluster

    with dask_cluster(Path(output + "-cluster"), workers=workers) as cluster:
        return run(job, output, ["--runner=DaskRunner", f"--dask_client_address={cluster.address}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="default: both")
    parser.add_argument("--rows", type=int, default=512, help="MobileNetV2 images in all (default 512)")
    parser.add_argument("--mlp-rows", type=int, default=200_000, help="MLP rows in all (default 200000)")
    parser.add_argument("--shards", type=int, default=4, help="input files (default 4)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per signature call (default 32)")
    parser.add_argument("--mlp-batch-size", type=int, default=4096, help="MLP rows per call (default 4096)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="worker processes (default 1 2)")
    parser.add_argument("--dask-workers", type=int, nargs="*", default=[1, 2], help="Dask workers (default 1 2)")
    parser.add_argument("--no-in-memory", action="store_true", help="skip the in-process run")
    parser.add_argument("--work", default="build/scaling", help="where the models, data and outputs go")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    for name in ("apache_beam", "distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from beamscore._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    max_workers = max([1, *args.workers, *args.dask_workers])
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}; "
        f"{args.rows} images (batch {args.batch_size}) / {args.mlp_rows} MLP rows (batch {args.mlp_batch_size}) "
        f"in {args.shards} Parquet files"
    )
    print(f"{'model':<11}{'mode':<18}{'workers':>8}{'rows':>9}{'seconds':>10}{'rows/s':>11}{'vs 1 worker':>13}")
    results = []
    for name in args.models:
        rows, batch = (args.rows, args.batch_size) if name == "mobilenet" else (args.mlp_rows, args.mlp_batch_size)
        job = prepare(name, args.work, rows, args.shards, batch, max_workers)
        base: dict[str, float] = {}
        for mode, workers in configs(args):
            start = time.perf_counter()
            result = run_config(job, mode, workers, os.path.join(args.work, f"out-{name}-{mode}-{workers}"))
            result.update(model=name, mode=mode, workers=workers, wall_s=round(time.perf_counter() - start, 2))
            if workers == 1:
                base.setdefault(mode, result["rows_per_s"])
            ratio = f"{result['rows_per_s'] / base[mode]:.2f}x" if mode in base and mode != "in_memory" else ""
            print(
                f"{name:<11}{mode:<18}{workers:>8}{result['rows']:>9}{result['seconds']:>10.1f}"
                f"{result['rows_per_s']:>11.1f}{ratio:>13}",
                flush=True,
            )
            results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpus": os.cpu_count(), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
