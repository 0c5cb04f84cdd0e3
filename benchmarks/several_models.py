"""Several models over one read, against one job per model; routed models and their memory.

``make bench-models`` (``ARGS="--rows 200000"``, ``--quick``): each case is a whole
``python -m beamscore score`` process (spawn to exit; the in-process DirectRunner), its peak
RSS read from ``getrusage`` in that process:

- ``one job, two models``: ``--model champion=A --model challenger=B`` over one read;
- ``two jobs``: model A, then model B, one job after the other (the times added, the larger RSS);
- ``one model``: model A alone (one process plus one model's weights);
- ``routed, N models``: ``--route-by seg`` over five and over ten models, rows in runs of
  one segment (each segment coming back 8 times), with ``--max-models-per-worker 3`` and
  without a bound. These models are larger (``--routed-hidden 3072``: 37 MiB of weights
  each), so that holding three differs from holding ten, over ``--routed-rows`` rows
  (default 20,000: about 50 loads with the bound). With the bound, peak RSS should not grow
  with the number of models; the loads are each job's manifest's.

The models are MLPs 64 -> H -> H -> 10 (``benchmarks.build``'s, each with its own random
weights); the data is Parquet, one shard per 250,000 rows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

WIDTH = 64
SEGMENTS = 10


def build_mlp(path: str, seed: int, hidden: int = 256) -> str:
    """An MLP like ``benchmarks.build.build_mlp``'s with the weights of ``seed``."""
    import tensorflow as tf

    class MLP(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(seed)
            sizes = [WIDTH, hidden, hidden, 10]
            self.ws = [
                tf.Variable(rng.normal(scale=1 / np.sqrt(a), size=(a, b)).astype(np.float32))
                for a, b in itertools.pairwise(sizes)
            ]
            self.bs = [tf.Variable(np.zeros(b, np.float32)) for b in sizes[1:]]

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32, name="x")])
        def serve(self, x):
            h1 = tf.nn.relu(x @ self.ws[0] + self.bs[0])
            h2 = tf.nn.relu(h1 @ self.ws[1] + self.bs[1])
            return {"scores": tf.nn.softmax(h2 @ self.ws[2] + self.bs[2])}

    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        mlp = MLP()
        tf.saved_model.save(mlp, path, signatures={"serving_default": mlp.serve})
    return path


def build_data(directory: str, rows: int, segments: int = SEGMENTS) -> str:
    """``rows`` rows of ``id``, ``seg`` (runs of one of ``segments`` values) and ``x`` in Parquet shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = os.path.join(directory, f"_rows-{rows}-{segments}")
    if os.path.exists(marker):
        return directory
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    shards = max(1, rows // 250_000)
    run = max(1, rows // (segments * 8))  # each segment comes back 8 times
    for s, part in enumerate(np.array_split(np.arange(rows, dtype=np.int64), shards)):
        x = rng.normal(size=(len(part), WIDTH)).astype(np.float32)
        seg = pa.array([f"s{(i // run) % segments}" for i in part.tolist()], pa.string())
        table = pa.table(
            {"id": part, "seg": seg, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), WIDTH)}
        )
        pq.write_table(table, os.path.join(directory, f"shard-{s:05d}.parquet"), row_group_size=65536)
    open(marker, "w").close()
    return directory


def child(argv: list[str]) -> None:
    """Run one ``beamscore`` command in this process; print its exit code and peak RSS."""
    from beamscore.cli import main

    code = main(argv)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"code": code, "maxrss_mib": peak / 1024}))


def run_job(args: list[str]) -> dict:
    """One whole process: its wall time (spawn to exit), peak RSS and model loads (the manifest's)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.several_models", "--child", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if found["code"]:
        raise SystemExit(f"exit {found['code']}: {' '.join(args)}\n{done.stderr[-3000:]}")
    output = args[args.index("--output") + 1]
    with open(os.path.join(output, "_manifest.json")) as f:
        manifest = json.load(f)
    loads = sum(m.get("loads", 0) for m in manifest.get("models", [])) or manifest.get("model_loads", 0)
    return {"seconds": seconds, "maxrss_mib": found["maxrss_mib"], "loads": loads}


def main() -> None:
    if "--child" in sys.argv:
        child(sys.argv[sys.argv.index("--child") + 1 :])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "beamscore-bench-models"))
    parser.add_argument("--skip-routed", action="store_true")
    parser.add_argument("--only-routed", action="store_true", help="only the routed models' memory")
    parser.add_argument("--hidden", type=int, default=256, help="hidden width (2048: 17 MiB of weights a model)")
    parser.add_argument("--routed-hidden", type=int, default=3072, help="routed models' hidden width (37 MiB)")
    parser.add_argument("--routed-rows", type=int, default=20_000, help="rows of the routed cases")
    args = parser.parse_args()
    if args.only_routed:
        routed_memory(args, run_job)
        return
    rows = 100_000 if args.quick else args.rows
    work = args.workdir
    models = {
        f"m{i}": build_mlp(os.path.join(work, f"models-{args.hidden}", f"m{i}"), seed=i, hidden=args.hidden)
        for i in range(SEGMENTS)
    }
    data = build_data(os.path.join(work, f"data-{rows}"), rows)
    out = os.path.join(work, "out")
    common = [
        "--input",
        os.path.join(data, "*.parquet"),
        "--keep",
        "id",
        "--overwrite",
        "--no-progress",
        "--batch-size",
        "4096",
    ]

    def score(*extra: str) -> dict:
        best = None
        for _ in range(args.repeat):
            found = run_job(["score", *extra, "--output", out, *common])
            best = found if best is None or found["seconds"] < best["seconds"] else best
        assert best is not None
        return best

    results: list[tuple[str, dict]] = []
    both = score("--model", f"champion={models['m0']}", "--model", f"challenger={models['m1']}")
    results.append(("one job, two models", both))
    first, second = score(models["m0"]), score(models["m1"])
    apart = {
        "seconds": first["seconds"] + second["seconds"],
        "maxrss_mib": max(first["maxrss_mib"], second["maxrss_mib"]),
    }
    results.append(("two jobs, one after the other", apart))
    results.append(("one model", first))
    weights = (WIDTH * args.hidden + args.hidden * args.hidden + args.hidden * 10) * 4 / 2**20
    print(
        f"{rows:,} rows of an MLP 64-{args.hidden}-{args.hidden}-10 ({weights:.1f} MiB of weights), Parquet; "
        "whole process (spawn to exit), in-process DirectRunner"
    )
    print("| case | seconds | rows/s | peak RSS MiB |\n|---|---:|---:|---:|")
    for name, r in results:
        print(f"| {name} | {r['seconds']:.1f} | {rows / r['seconds']:,.0f} | {r['maxrss_mib']:,.0f} |")
    print(f"\ntwo jobs / one job of two models: {apart['seconds'] / both['seconds']:.2f}x (target 1.4x)")
    print(f"peak RSS of two models - one model: {both['maxrss_mib'] - first['maxrss_mib']:,.0f} MiB")
    if not args.skip_routed:
        print()
        routed_memory(args, run_job)


def mlp_mib(hidden: int) -> float:
    """MiB of weights of an MLP 64-H-H-10."""
    return (WIDTH * hidden + hidden * hidden + hidden * 10 + 2 * hidden + 10) * 4 / 2**20


def routed_memory(args: argparse.Namespace, run: Any) -> None:
    """Routed models' peak RSS: five and ten models, at most 3 held and no bound."""
    work, rows = args.workdir, args.routed_rows
    models = [
        build_mlp(os.path.join(work, f"models-{args.routed_hidden}", f"m{i}"), seed=i, hidden=args.routed_hidden)
        for i in range(SEGMENTS)
    ]
    out = os.path.join(work, "out-routed")
    results = []
    for n in (5, SEGMENTS):
        data = build_data(os.path.join(work, f"data-{rows}-{n}seg"), rows, segments=n)
        routed = [a for i in range(n) for a in ("--model", f"s{i}={models[i]}")]
        common = ["--input", os.path.join(data, "*.parquet"), "--keep", "id", "--overwrite", "--no-progress"]
        common += ["--batch-size", "4096", "--route-by", "seg", "--output", out]
        for bound in (["--max-models-per-worker", "3"], []):
            found = run(["score", *routed, *common, *bound])
            results.append((f"routed, {n} models, {'at most 3' if bound else 'no bound'}", found))
    print(
        f"{rows:,} rows routed by a column in runs of one segment (each back 8 times), MLP 64-{args.routed_hidden}-"
        f"{args.routed_hidden}-10 ({mlp_mib(args.routed_hidden):.1f} MiB of weights a model), Parquet; whole process"
    )
    print("| case | seconds | loads | peak RSS MiB |\n|---|---:|---:|---:|")
    for name, r in results:
        print(f"| {name} | {r['seconds']:.1f} | {r['loads']} | {r['maxrss_mib']:,.0f} |")


if __name__ == "__main__":
    main()
