"""``make bench`` / ``python -m benchmarks.bench [--quick]``: every path, whole processes, one table.

Builds the models and data under ``--work`` (reused between runs), then runs each path
(:mod:`benchmarks.paths`) ``--repeat`` times as a child process and prints the medians:

- rows/s of the whole process (rows / wall time from spawn to exit),
- steady rows/s (rows after the first batch / time from the first batch to the end),
- the steady rate as a multiple of R0's (the in-memory ceiling),
- start-up: process start to the first batch's outputs, and peak RSS (``wait4``'s ``ru_maxrss``).

B1 and B2 run in the same interpreter with ``.venv-baselines`` (tf-keras, tfx-bsl; see
``benchmarks/baselines.txt``) on ``PYTHONPATH``; B1 with ``TF_USE_LEGACY_KERAS=1``. They are
~100x slower, so they run on a smaller data set of the same rows (``--baseline-rows``) and are
compared by steady rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINES = os.path.join(ROOT, ".venv-baselines")

__all__ = ["Result", "main"]


# Not ``-m benchmarks.paths``: functions of ``__main__`` are pickled by value into Beam
# pipelines, and their copies would record the first batch in a list nobody reads.
_CHILD = "import sys; from benchmarks.paths import main; sys.exit(main(sys.argv[1:]))"


@dataclass
class Result:
    """The medians of one path's runs (or why it did not run)."""

    model: str
    path: str
    input: str
    rows: int = 0
    whole: float = 0.0
    steady: float = 0.0
    startup: float = 0.0
    rss_mib: float = 0.0
    runs: int = 0
    note: str = ""
    subset: bool = False
    error: str = ""
    raw: list[dict[str, float]] = field(default_factory=list)


def _run_child(job: dict[str, Any], work: str, env_extra: dict[str, str], log: str) -> dict[str, float]:
    """Spawn one path, wait for it; wall time, peak RSS and the child's own report."""
    report = os.path.join(work, "report.json")
    if os.path.exists(report):
        os.remove(report)
    out = job.get("output")
    if out:
        shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env_extra.get("PYTHONPATH"), ROOT) if p)
    with open(log, "w") as f:
        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(job), report], stdout=f, stderr=f, env=env, cwd=ROOT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        t1 = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not os.path.exists(report):
        with open(log) as f:
            lines = [line.strip() for line in f if line.strip()]
        raise RuntimeError(f"exit {proc.returncode}: {lines[-1] if lines else 'no output'} (log: {log})")
    with open(report) as f:
        rep = json.load(f)
    rows = rep["rows"]
    first, end = rep["first"], rep["end"]
    steady_rows = rows - min(job["batch_size"], rows)
    return {
        "rows": rows,
        "wall": t1 - t0,
        "whole": rows / (t1 - t0),
        "steady": steady_rows / (end - first) if end > first and steady_rows else 0.0,
        "startup": first - t0,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def _measure(res: Result, job: dict[str, Any], args, env: dict[str, str]) -> Result:
    log = os.path.join(args.work, "logs", f"{res.model}-{res.path}-{res.input}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    print(f"  {res.model:9s} {res.path:3s} {res.input:8s} ...", end="", flush=True)
    try:
        for _ in range(args.repeat):
            res.raw.append(_run_child(job, args.work, env, log))
    except RuntimeError as exc:
        res.error = str(exc)
        print(f" failed: {res.error}")
        return res
    res.runs = len(res.raw)
    for key in ("rows", "whole", "steady", "startup", "rss_mib"):
        setattr(res, key, statistics.median(r[key] for r in res.raw))
    res.rows = int(res.rows)
    print(f" {res.whole:,.0f} rows/s whole, {res.steady:,.0f} steady, start-up {res.startup:.1f}s")
    return res


def _threads_env(threads: int | None) -> dict[str, str]:
    if not threads:
        return {}
    n = str(threads)
    return {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n, "OMP_NUM_THREADS": n}


def _prepare(args) -> dict:
    """Build models and data in a child process (see :func:`benchmarks.build.prepare`)."""
    os.makedirs(args.work, exist_ok=True)
    request = os.path.join(args.work, "prepare-request.json")
    answer = os.path.join(args.work, "prepare.json")
    keys = ("work", "rows", "shards", "baseline_rows", "rss_rows", "images", "models")
    with open(request, "w") as f:
        json.dump({k: getattr(args, k) for k in keys}, f)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-m", "benchmarks.build", request, answer], check=True, env=env, cwd=ROOT)
    with open(answer) as f:
        return json.load(f)


def run_all(args) -> list[Result]:
    """Build what is missing, then measure every selected path."""
    from benchmarks.build import Dataset

    work = args.work
    print(f"data: {args.rows:,} MLP rows, {args.baseline_rows:,} for B1/B2, {args.images:,} images (in {work})")
    ready = _prepare(args)
    data = {k: Dataset(**{**v, "row_shape": tuple(v["row_shape"])}) for k, v in ready["data"].items()}
    mlp = ready["models"]["mlp"]
    mlp_data, small = data["mlp"], data["small"]
    threads = _threads_env(args.threads)
    base_env = {"PYTHONPATH": BASELINES}
    have_baselines = os.path.isdir(os.path.join(BASELINES, "tfx_bsl"))
    results: list[Result] = []
    selected = set(args.paths)

    def job(path: str, ds, model: str, signature: str, input_: str, outputs: list[str], batch: int, **kw) -> dict:
        return {
            "path": path,
            "model": model,
            "signature": signature,
            "input": input_,
            "input_shape": list(ds.row_shape),
            "outputs": outputs,
            "batch_size": batch,
            "rows": ds.rows,
            "data": os.path.dirname(os.path.dirname(ds.parquet[0])),
            "parquet": ds.parquet,
            "npz": ds.npz,
            "output": os.path.join(work, "out"),
            **kw,
        }

    mlp_outs = ["embedding", "scores"]
    if "mlp" not in args.models:
        selected -= {"B1", "B2"}
    b = args.batch_size
    plan: list[tuple[Result, dict, dict]] = [
        (Result("mlp", "R0", "npz"), job("R0", mlp_data, mlp, "serving_default", "x", mlp_outs, b), threads),
        (Result("mlp", "R1", "parquet"), job("R1", mlp_data, mlp, "serving_default", "x", mlp_outs, b), threads),
        (
            Result("mlp", "P", "parquet"),
            job("P", mlp_data, mlp, "serving_default", "x", mlp_outs, b, format="parquet"),
            threads,
        ),
    ]
    if ready["tfrecord"]:
        plan.append(
            (
                Result("mlp", "P", "tfrecord"),
                job("P", mlp_data, mlp, "serving_default", "x", mlp_outs, b, format="tfrecord"),
                threads,
            )
        )
    elif "mlp" in args.models:
        results.append(Result("mlp", "P", "tfrecord", error="beamscore has no TFRecord source yet"))
    plan += [
        (
            Result("mlp", "T", "parquet", note="ReadFromParquetBatched → RunSignature → WriteToParquetBatched"),
            job("T", mlp_data, mlp, "serving_default", "x", mlp_outs, b),
            threads,
        ),
        (
            Result("mlp", "H", "parquet", note="as T, RunInference(SignatureModelHandler)"),
            job("H", mlp_data, mlp, "serving_default", "x", mlp_outs, b),
            threads,
        ),
    ]
    threaded = ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    plan.append(
        (
            Result("mlp", "P", "parquet", note="2 Beam worker threads (" + " ".join(threaded) + ")"),
            job("P", mlp_data, mlp, "serving_default", "x", mlp_outs, b, format="parquet", extra=threaded),
            threads,
        )
    )
    if args.rss_rows:
        big = data["rss"]
        plan.append(
            (
                Result("mlp", "P", "parquet", note=f"{big.rows:,} rows: peak RSS vs the first P row"),
                job("P", big, mlp, "serving_default", "x", mlp_outs, b, format="parquet"),
                threads,
            )
        )
    plan += [
        (
            Result("mlp", "P", "parquet", note=f"{small.rows:,} rows, as B1/B2", subset=True),
            job("P", small, mlp, "serving_default", "x", mlp_outs, b, format="parquet"),
            threads,
        ),
        (
            Result("mlp", "B1", "parquet", note=f"{small.rows:,} rows; tf-keras, TF_USE_LEGACY_KERAS=1"),
            job("B1", small, mlp, "serving_default", "x", mlp_outs, b),
            {**threads, **base_env, "TF_USE_LEGACY_KERAS": "1"},
        ),
        (
            Result("mlp", "B1", "parquet", note=f"{small.rows:,} rows; as above, Beam's default batching"),
            job("B1", small, mlp, "serving_default", "x", mlp_outs, b, beam_batching=True),
            {**threads, **base_env, "TF_USE_LEGACY_KERAS": "1"},
        ),
        (
            Result("mlp", "B2", "tfrecord", note=f"{small.rows:,} rows; tfx-bsl 1.21, serve_examples"),
            job("B2", small, mlp, "serve_examples", "examples", mlp_outs, b),
            {**threads, **base_env},
        ),
    ]
    if "mlp" in args.models:  # per-row elements: beamscore on row dicts and records against Beam's handler
        per_row = f"{small.rows:,} rows, one element per row"
        plan += [
            (
                Result("mlp", "D0", "rows", note=f"{per_row}: the floor, batched and counted, no model", subset=True),
                job("D0", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result("mlp", "D", "rows", note=f"{per_row}: row dicts → BatchElements → RunSignature", subset=True),
                job("D", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result(
                    "mlp", "E", "records", note=f"{per_row}: tf.Examples → BatchElements → RunSignature", subset=True
                ),
                job("E", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result("mlp", "BH", "rows", note=f"{per_row}: RunInference(TFModelHandlerNumpy)", subset=True),
                job("BH", small, mlp, "serving_default", "x", mlp_outs, b),
                {**threads, **base_env},
            ),
        ]
    image_models = [m for m in args.models if m in ready["inputs"]]
    if image_models:
        img = data["image"]
        ib = args.image_batch_size
        for name in image_models:
            path, key = ready["models"][name], ready["inputs"][name]
            outs = ["output_0"]
            p_job = job("P", img, path, "serve", key, outs, ib, format="parquet", extra=["--map", f"{key}=x"])
            plan += [
                (Result(name, "R0", "npz"), job("R0", img, path, "serve", key, outs, ib), threads),
                (Result(name, "R1", "parquet"), job("R1", img, path, "serve", key, outs, ib), threads),
                (Result(name, "P", "parquet"), p_job, threads),
            ]
            if args.jit:
                jit_job = {**p_job, "extra": [*p_job["extra"], "--jit-compile"]}
                plan.append((Result(name, "P", "parquet", note="--jit-compile"), jit_job, threads))
    for res, spec, env in plan:
        if res.path not in selected or res.model not in args.models:
            continue
        if res.path == "BH" and not os.path.isdir(os.path.join(BASELINES, "tensorflow_hub")):
            res.error = f"{BASELINES} missing: run `make bench-baselines`"
            results.append(res)
            continue
        if res.path in ("B1", "B2") and not have_baselines:
            res.error = f"{BASELINES} missing: run `make bench-baselines`"
            results.append(res)
            continue
        results.append(_measure(res, spec, args, env))
    return results


def _find(results: list[Result], model: str, path: str, input_: str, small: bool = False) -> Result | None:
    for r in results:
        if (r.model, r.path, r.input, r.subset) == (model, path, input_, small):
            return r if not r.error else None
    return None


def table(results: list[Result], args) -> str:
    """The results as a Markdown table, then the targets with their ratios."""
    r0 = {r.model: r for r in results if r.path == "R0" and not r.error}
    lines = [
        "| model | path | input | rows | rows/s (whole process) | rows/s (steady) | x R0 (steady) | start-up s | "
        "peak RSS MiB | note |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.model} | {r.path} | {r.input} | | | | | | | not run: {r.error} |")
            continue
        ref = r0.get(r.model)
        ratio = f"{r.steady / ref.steady:.2f}" if ref and ref.steady else ""
        lines.append(
            f"| {r.model} | {r.path} | {r.input} | {r.rows:,} | {r.whole:,.0f} | {r.steady:,.0f} | {ratio} | "
            f"{r.startup:.1f} | {r.rss_mib:,.0f} | {r.note} |"
        )
    lines.append("")
    lines.append(
        f"medians of {args.repeat} run(s); batch {args.batch_size} (MLP), {args.image_batch_size} (images); "
        f"TF threads: {args.threads or 'TF default'}; {os.cpu_count()} CPUs"
    )
    lines.append("")
    lines += _targets(results)
    return "\n".join(lines)


def _ratio(a: Result | None, b: Result | None, attr_a: str, attr_b: str) -> float | None:
    if a is None or b is None or not getattr(b, attr_b) or not getattr(a, attr_a):
        return None
    return getattr(a, attr_a) / getattr(b, attr_b)


def _targets(results: list[Result]) -> list[str]:
    p = _find(results, "mlp", "P", "parquet")
    p_small = _find(results, "mlp", "P", "parquet", small=True)
    checks = [
        ("MLP P/R0, steady", _ratio(p, _find(results, "mlp", "R0", "npz"), "steady", "steady"), 0.5),
        ("MLP P/R1, whole process", _ratio(p, _find(results, "mlp", "R1", "parquet"), "whole", "whole"), 1.2),
        ("MLP P/B1, steady", _ratio(p_small, _find(results, "mlp", "B1", "parquet"), "steady", "steady"), 30),
        ("MLP T (RunSignature)/P, steady", _ratio(_find(results, "mlp", "T", "parquet"), p, "steady", "steady"), 0.8),
        ("MLP H (ModelHandler)/P, steady", _ratio(_find(results, "mlp", "H", "parquet"), p, "steady", "steady"), 0.8),
        (
            "MLP P(tfrecord)/B2, steady",
            _ratio(_find(results, "mlp", "P", "tfrecord"), _find(results, "mlp", "B2", "tfrecord"), "steady", "steady"),
            15,
        ),
        (
            "MobileNetV2 P/R0, steady",
            _ratio(
                _find(results, "mobilenet", "P", "parquet"),
                _find(results, "mobilenet", "R0", "npz"),
                "steady",
                "steady",
            ),
            0.9,
        ),
    ]
    bh = _find(results, "mlp", "BH", "rows", small=True)
    for path, input_, name in (("D", "rows", "row dicts"), ("E", "records", "records")):
        mine = _find(results, "mlp", path, input_, small=True)
        checks.append((f"MLP {path} ({name})/BH (Beam's handler), steady", _ratio(mine, bh, "steady", "steady"), 3))
    rss_big = next((r for r in results if "peak RSS vs" in r.note and not r.error), None)
    if rss_big is not None and p is not None:
        checks.append((f"MLP P peak RSS {rss_big.rows:,} rows / {p.rows:,} rows", rss_big.rss_mib / p.rss_mib, -1.10))
    out = ["| target | measured | wanted | |", "|---|--:|--:|---|"]
    for name, value, want in checks:
        if value is None:
            out.append(f"| {name} | n/a | >= {want} | not measured |")
        elif want < 0:  # an upper bound
            out.append(f"| {name} | {value:.2f} | <= {-want} | {'met' if value <= -want else 'MISSED'} |")
        else:
            out.append(f"| {name} | {value:.2f} | >= {want} | {'met' if value >= want else 'MISSED'} |")
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run each: under two minutes")
    ap.add_argument("--rows", type=int, help="MLP rows (default 1,000,000; --quick 100,000)")
    ap.add_argument("--shards", type=int, default=8, help="shards of the MLP data set")
    ap.add_argument("--baseline-rows", type=int, help="rows for B1/B2 (default 50,000; --quick 12,288)")
    ap.add_argument("--images", type=int, help="MobileNetV2 images (default 2,000; --quick 128; 0 skips)")
    ap.add_argument("--batch-size", type=int, default=4096, help="MLP rows per signature call")
    ap.add_argument("--image-batch-size", type=int, default=64, help="images per signature call (--quick: 32)")
    ap.add_argument("--threads", type=int, help="TF intra- and inter-op threads for every path (default: TF's)")
    ap.add_argument("--repeat", type=int, help="runs per path; the table shows medians (default 3; --quick 1)")
    ap.add_argument(
        "--paths",
        nargs="+",
        default=["R0", "R1", "P", "T", "H", "B1", "B2", "D0", "D", "E", "BH"],
        help="which paths to run",
    )
    ap.add_argument(
        "--models", nargs="+", default=["mlp", "mobilenet"], help="mlp, mobilenet, resnet50 (default mlp mobilenet)"
    )
    ap.add_argument("--rss-rows", type=int, default=0, help="also run P on this many rows (Parquet only), for RSS")
    ap.add_argument("--jit", action="store_true", help="also run P with --jit-compile on the image models")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench"), help="models, data, outputs, logs")
    ap.add_argument("--json", help="also write the results as JSON here")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run everything, print the table."""
    args = _parser().parse_args(argv)
    quick = args.quick
    args.rows = args.rows or (100_000 if quick else 1_000_000)
    args.baseline_rows = args.baseline_rows or (12_288 if quick else 50_000)
    args.images = args.images if args.images is not None else (128 if quick else 2_000)
    if quick and args.image_batch_size == 64:
        args.image_batch_size = 32
    args.repeat = args.repeat or (1 if quick else 3)
    if quick:
        args.shards = min(args.shards, 4)
    start = time.time()
    results = run_all(args)
    print()
    print(table(results, args))
    print(f"\nbench took {time.time() - start:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
