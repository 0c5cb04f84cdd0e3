"""Rows/s of one ``beamscore score`` job on 1 and 2 worker processes (``make bench-scaling``).

The job: Keras 3 ``MobileNetV2(weights=None)`` at 224x224x3, exported with ``model.export``
(random weights, nothing downloaded), over Parquet shards of uint8 images that beamscore
casts to float32 losslessly. Each configuration runs the same plan on Beam's local engine:

- ``in_memory``: the in-process runner, the model loaded in this process;
- ``multi_processing N``: ``--direct_running_mode=multi_processing --direct_num_workers=N``,
  N SDK worker processes, each loading the model once (what Dataflow does per vCPU).

The time is the pipeline's wall time (worker start and model loads included, planning not),
so small ``--rows`` under-state the steady rate. Not a test and not part of ``make test``.

    python -m benchmarks.scaling                 # 512 images, 1 and 2 workers
    python -m benchmarks.scaling --rows 2048 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time

import numpy as np

IMAGE_SHAPE = (224, 224, 3)


def build_model(path: str) -> str:
    """Export MobileNetV2 with random weights to ``path`` (once)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    import keras

    keras.utils.set_random_seed(0)
    keras.applications.MobileNetV2(weights=None, input_shape=IMAGE_SHAPE).export(path, verbose=False)
    return path


def write_images(directory: str, rows: int, shards: int, row_group: int) -> list[str]:
    """``shards`` Parquet files of ``rows`` random uint8 images in all (column ``image``), once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    stamp = os.path.join(directory, f"_rows{rows}_shards{shards}_rg{row_group}")
    paths = [os.path.join(directory, f"images-{i:02d}.parquet") for i in range(shards)]
    if os.path.exists(stamp):
        return paths
    rng = np.random.default_rng(0)
    size = int(np.prod(IMAGE_SHAPE))
    ids = np.arange(rows)
    for path, part in zip(paths, np.array_split(ids, shards), strict=True):
        pixels = rng.integers(0, 256, size=(len(part), size), dtype=np.uint8)
        table = pa.table({"id": part, "image": pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), size)})
        pq.write_table(table, path, row_group_size=row_group)
    open(stamp, "w").close()
    return paths


def run(model: str, files: list[str], output: str, flags: list[str], batch_size: int, rows_per_unit: int) -> dict:
    """Plan and run one job; return rows, seconds and the model-load count."""
    from beamscore.config import ScoreConfig
    from beamscore.pipelines.plan import plan_job
    from beamscore.pipelines.runners import pipeline_options
    from beamscore.pipelines.score import run_plan

    config = ScoreConfig(
        model=model,
        inputs=files,
        output=output,
        map={"keras_tensor": "image"},
        keep=["id"],
        batch_size=batch_size,
        rows_per_unit=rows_per_unit,
        overwrite=True,
    )
    result = run_plan(plan_job(config), pipeline_options(flags, {}))
    rows = result.manifest["rows_out"]
    return {"rows": rows, "seconds": round(result.seconds, 2), "rows_per_s": round(rows / result.seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=512, help="images in all (default 512)")
    parser.add_argument("--shards", type=int, default=4, help="input files (default 4)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per signature call (default 32)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker process counts (default 1 2)")
    parser.add_argument("--no-in-memory", action="store_true", help="skip the in-process run")
    parser.add_argument("--work", default="build/scaling", help="where the model, data and outputs go")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    from beamscore._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    model = build_model(os.path.join(args.work, "mobilenet_v2"))
    units_per_shard = max(1, 2 * max(args.workers) // args.shards)  # enough units for every worker
    rows_per_unit = max(1, args.rows // (args.shards * units_per_shard))
    row_group = max(1, min(rows_per_unit, args.batch_size))
    files = write_images(os.path.join(args.work, "images"), args.rows, args.shards, row_group)
    configs = [] if args.no_in_memory else [("in_memory", 1, [])]
    configs += [
        ("multi_processing", n, ["--direct_running_mode=multi_processing", f"--direct_num_workers={n}"])
        for n in args.workers
    ]
    print(
        f"MobileNetV2 (weights=None) 224x224x3, {args.rows} images in {args.shards} files, batch {args.batch_size}, "
        f"units of ~{rows_per_unit} rows; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}"
    )
    print(f"{'mode':<18}{'workers':>8}{'rows':>8}{'seconds':>10}{'rows/s':>10}{'vs 1 proc':>11}")
    results = []
    base = None
    for mode, workers, flags in configs:
        start = time.perf_counter()
        result = run(
            model, files, os.path.join(args.work, f"out-{mode}-{workers}"), flags, args.batch_size, rows_per_unit
        )
        result.update(mode=mode, workers=workers, wall_s=round(time.perf_counter() - start, 2))
        if mode == "multi_processing" and workers == 1:
            base = result["rows_per_s"]
        ratio = f"{result['rows_per_s'] / base:.2f}x" if base and mode == "multi_processing" else ""
        print(
            f"{mode:<18}{workers:>8}{result['rows']:>8}{result['seconds']:>10.1f}{result['rows_per_s']:>10.1f}{ratio:>11}"
        )
        results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpus": os.cpu_count(), "rows": args.rows, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
