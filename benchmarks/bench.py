"""``make bench`` / ``python -m benchmarks.bench [--quick]``: every path, whole processes, one table.

Builds the models and data under ``--work`` (reused between runs), then runs each path
(:mod:`benchmarks.paths`) ``--repeat`` times as a child process and prints the medians:

- rows/s of the whole process (rows / wall time from spawn to exit),
- steady rows/s (rows after the first batch / time from the first batch to the end),
- the steady rate as a multiple of R0's (the in-memory ceiling),
- start-up: process start to the first batch's outputs, and peak RSS (``wait4``'s ``ru_maxrss``).

Then, for the targets of issue 25:

- **start-up breakdown** of P beside R1's: when each step before the first batch ran
  (imports, listing, footers, model inspection, pipeline construction, model load, first
  batch), as wall-clock spans from the process's spawn; steps that overlap show as such;
- **bound**: each part of P timed alone on one core in the same run (``parts`` in
  :mod:`benchmarks.paths`: reading Parquet or TFRecord, the model, writing with each codec),
  summed per row and divided by the cores, beside P's steady rate for that input and codec;
- **small job**: P and R1 on the same ``--small-rows`` rows (20,000), whole-process rates;
- **at scale** (issue 35): ``--small-files`` Parquet files of 3 rows against one file of the
  same rows (:mod:`benchmarks.small_files`), P over TFRecord against P over Parquet (a
  target row), and ``--plan-files`` files planned at 40 ms a request (:mod:`benchmarks.plan`).

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
#: P's output codecs (the first is P's default); the parts child times the writer with each.
#: gzip writes ~1k rows/s (about 1,000 s for the default 1M rows): only with --codecs gzip.
CODECS = ("snappy", "zstd", "lz4", "none", "gzip")
DEFAULT_CODECS = CODECS[:4]
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
    #: which row this is, for the targets (``P``, ``P-zstd``, ``P-tfrecord``, ``P-small``...)
    key: str = ""
    #: the output codec of a P row, for its bound
    codec: str = "snappy"
    #: CPU microseconds (all threads) per row after the first batch: steadier than wall time under load
    steady_cpu_us: float = 0.0
    #: start-up spans ``(name, start, end)`` in seconds from spawn, of the median run
    spans: list = field(default_factory=list)


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
    spans = [("python start (to the bench child's first line)", 0.0, rep["main"] - t0, 0.0, 0.0)]
    spans += [(name, a - t0, b - t0, ca, cb) for name, a, b, ca, cb in rep.get("spans", [])]
    return {
        "rows": rows,
        "wall": t1 - t0,
        "whole": rows / (t1 - t0),
        "steady": steady_rows / (end - first) if end > first and steady_rows else 0.0,
        "startup": first - t0,
        "rss_mib": usage.ru_maxrss / 1024,
        "spans": sorted(spans, key=lambda span: span[1]),
        "parts": rep.get("parts"),
        "startup_cpu": rep.get("startup_cpu", 0.0),
        # CPU time (every thread) per row after the first batch: what P spends, beside its parts' sum
        "steady_cpu_us": (rep["end_cpu"] - rep.get("startup_cpu", 0.0)) * 1e6 / steady_rows if steady_rows else 0.0,
    }


def _measure(res: Result, job: dict[str, Any], args, env: dict[str, str], runs: int | None = None) -> Result:
    """Run ``job`` ``runs`` times (default ``--repeat``), adding to ``res``'s runs; medians of all."""
    log = os.path.join(args.work, "logs", f"{res.model}-{res.path}-{res.input}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    print(f"  {res.model:9s} {res.path:3s} {res.input:8s} ...", end="", flush=True)
    try:
        for _ in range(args.repeat if runs is None else runs):
            res.raw.append(_run_child(job, args.work, env, log))
    except RuntimeError as exc:
        res.error = str(exc)
        print(f" failed: {res.error}")
        return res
    res.runs = len(res.raw)
    for key in ("rows", "whole", "steady", "startup", "rss_mib", "steady_cpu_us"):
        setattr(res, key, statistics.median(r[key] for r in res.raw))
    by_startup = sorted(res.raw, key=lambda r: r["startup"])
    res.spans = by_startup[len(by_startup) // 2]["spans"]
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
    keys = ("work", "rows", "shards", "baseline_rows", "small_rows", "rss_rows", "images", "models")
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
    codecs = list(args.codecs)
    p_parquet = job("P", mlp_data, mlp, "serving_default", "x", mlp_outs, b, format="parquet")
    plan: list[tuple[Result, dict, dict]] = [
        (Result("mlp", "R0", "npz", key="R0"), job("R0", mlp_data, mlp, "serving_default", "x", mlp_outs, b), threads),
        (
            Result("mlp", "R1", "parquet", key="R1"),
            job("R1", mlp_data, mlp, "serving_default", "x", mlp_outs, b),
            threads,
        ),
        (Result("mlp", "P", "parquet", key="P", codec=codecs[0]), _with_codec(p_parquet, codecs[0]), threads),
    ]
    if ready["tfrecord"]:
        p_tfrecord = job("P", mlp_data, mlp, "serving_default", "x", mlp_outs, b, format="tfrecord")
        plan.append(
            (
                Result("mlp", "P", "tfrecord", key="P-tfrecord", codec=codecs[0]),
                _with_codec(p_tfrecord, codecs[0]),
                threads,
            )
        )
    elif "mlp" in args.models:
        results.append(Result("mlp", "P", "tfrecord", error="beamscore has no TFRecord source yet"))
    for codec in codecs[1:]:
        plan.append(
            (
                Result("mlp", "P", "parquet", note=f"--output-compression {codec}", key=f"P-{codec}", codec=codec),
                _with_codec(p_parquet, codec),
                threads,
            )
        )
    plan += [
        (
            Result(
                "mlp", "T", "parquet", note="ReadFromParquetBatched → RunSignature → WriteToParquetBatched", key="T"
            ),
            job("T", mlp_data, mlp, "serving_default", "x", mlp_outs, b),
            threads,
        ),
        (
            Result("mlp", "H", "parquet", note="as T, RunInference(SignatureModelHandler)", key="H"),
            job("H", mlp_data, mlp, "serving_default", "x", mlp_outs, b),
            threads,
        ),
    ]
    if args.rss_rows:
        big = data["rss"]
        plan.append(
            (
                Result("mlp", "P", "parquet", note=f"{big.rows:,} rows: peak RSS vs the first P row", key="P-rss"),
                job("P", big, mlp, "serving_default", "x", mlp_outs, b, format="parquet"),
                threads,
            )
        )
    if "job" in data:
        job_data = data["job"]
        note = f"{job_data.rows:,} rows: a small job"
        plan += [
            (
                Result("mlp", "R1", "parquet", note=note, subset=True, key="R1-small"),
                job("R1", job_data, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result("mlp", "P", "parquet", note=note, subset=True, key="P-small"),
                job("P", job_data, mlp, "serving_default", "x", mlp_outs, b, format="parquet"),
                threads,
            ),
        ]
    plan += [
        (
            Result("mlp", "P", "parquet", note=f"{small.rows:,} rows, as B1/B2", subset=True, key="P-baseline"),
            job("P", small, mlp, "serving_default", "x", mlp_outs, b, format="parquet"),
            threads,
        ),
        (
            Result("mlp", "B1", "parquet", note=f"{small.rows:,} rows; tf-keras, TF_USE_LEGACY_KERAS=1", key="B1"),
            job("B1", small, mlp, "serving_default", "x", mlp_outs, b),
            {**threads, **base_env, "TF_USE_LEGACY_KERAS": "1"},
        ),
        (
            Result("mlp", "B1", "parquet", note=f"{small.rows:,} rows; as above, Beam's default batching"),
            job("B1", small, mlp, "serving_default", "x", mlp_outs, b, beam_batching=True),
            {**threads, **base_env, "TF_USE_LEGACY_KERAS": "1"},
        ),
        (
            Result("mlp", "B2", "tfrecord", note=f"{small.rows:,} rows; tfx-bsl 1.21, serve_examples", key="B2"),
            job("B2", small, mlp, "serve_examples", "examples", mlp_outs, b),
            {**threads, **base_env},
        ),
    ]
    if "mlp" in args.models:  # per-row elements: beamscore on row dicts and records against Beam's handler
        per_row = f"{small.rows:,} rows, one element per row"
        plan += [
            (
                Result(
                    "mlp",
                    "D0",
                    "rows",
                    note=f"{per_row}: the floor, batched and counted, no model",
                    subset=True,
                    key="D0",
                ),
                job("D0", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result(
                    "mlp", "D", "rows", note=f"{per_row}: row dicts → RunSignature(per_row=True)", subset=True, key="D"
                ),
                job("D", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result(
                    "mlp",
                    "E",
                    "records",
                    note=f"{per_row}: tf.Examples → RunSignature(per_row=True)",
                    subset=True,
                    key="E",
                ),
                job("E", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result("mlp", "DN", "rows", note=f"{per_row}: D without gc.freeze", subset=True, key="DN"),
                job("DN", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result(
                    "mlp",
                    "DB",
                    "rows",
                    note=f"{per_row}: row dicts → BatchElements → RunSignature",
                    subset=True,
                    key="DB",
                ),
                job("DB", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result(
                    "mlp",
                    "EB",
                    "records",
                    note=f"{per_row}: tf.Examples → BatchElements → RunSignature",
                    subset=True,
                    key="EB",
                ),
                job("EB", small, mlp, "serving_default", "x", mlp_outs, b),
                threads,
            ),
            (
                Result(
                    "mlp", "BH", "rows", note=f"{per_row}: RunInference(TFModelHandlerNumpy)", subset=True, key="BH"
                ),
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
                (Result(name, "R0", "npz", key="R0"), job("R0", img, path, "serve", key, outs, ib), threads),
                (Result(name, "R1", "parquet", key="R1"), job("R1", img, path, "serve", key, outs, ib), threads),
                (Result(name, "P", "parquet", key="P"), p_job, threads),
            ]
            if args.jit:
                jit_job = {**p_job, "extra": [*p_job["extra"], "--jit-compile"]}
                plan.append((Result(name, "P", "parquet", note="--jit-compile"), jit_job, threads))
    if "P" in selected and "mlp" in args.models and ready["tfrecord"]:
        parts_job = job("parts", mlp_data, mlp, "serving_default", "x", mlp_outs, b)
        parts_job.update(parts_rows=min(args.rows, args.parts_rows), codecs=codecs)
        plan.insert(
            0, (Result("mlp", "parts", "parquet", key="parts", note="each part alone, one core"), parts_job, {})
        )
    in_turns: list[tuple[Result, dict, dict]] = []
    for res, spec, env in plan:
        if res.path not in selected | {"parts"} or res.model not in args.models:
            continue
        if res.path == "BH" and not os.path.isdir(os.path.join(BASELINES, "tensorflow_hub")):
            res.error = f"{BASELINES} missing: run `make bench-baselines`"
            results.append(res)
            continue
        if res.path in ("B1", "B2") and not have_baselines:
            res.error = f"{BASELINES} missing: run `make bench-baselines`"
            results.append(res)
            continue
        if res.path in _IN_TURNS:
            in_turns.append((res, spec, env))
            results.append(res)
            continue
        results.append(_measure(res, spec, args, env))
    # The per-row paths run in turns (one run of each, --repeat times), so that the load of a
    # shared machine falls on all of them alike: their targets are ratios of one another.
    for _ in range(args.repeat):
        for res, spec, env in in_turns:
            if not res.error:
                _measure(res, spec, args, env, runs=1)
    return results


#: paths measured in turns (see :func:`run_all`)
_IN_TURNS = {"D0", "D", "DN", "E", "DB", "EB", "BH"}


def _with_codec(job: dict, codec: str) -> dict:
    """A P job writing with ``--output-compression codec``."""
    return {**job, "extra": [*job.get("extra", []), "--output-compression", codec]}


def _find(results: list[Result], model: str, key: str) -> Result | None:
    """The row of ``model`` with ``key`` (``R0``, ``P``, ``P-zstd``, ``P-small``...), if it ran."""
    for r in results:
        if (r.model, r.key) == (model, key):
            return r if not r.error else None
    return None


def table(results: list[Result], args) -> str:
    """The results as a Markdown table, then the start-up breakdown, the bound, the targets."""
    r0 = {r.model: r for r in results if r.path == "R0" and not r.error}
    lines = [
        "| model | path | input | rows | rows/s (whole process) | rows/s (steady) | x R0 (steady) | start-up s | "
        "peak RSS MiB | note |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        if r.key == "parts":
            continue
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
    for section in (_startup_table(results), _bound_table(results), _per_row_table(results), _targets(results)):
        if section:
            lines += ["", *section]
    whole_jobs = any(r.path in ("R0", "R1", "P") for r in results)
    if args.quick or args.baseline_rows < 50_000 or (whole_jobs and args.rows < 1_000_000):
        lines += [
            "",
            "The targets are set for the default sizes (1,000,000 MLP rows, 50,000 for B1/B2 and the per-row",
            "paths): on smaller runs the fixed costs weigh more and steady rates span a few batches, so",
            "read the verdicts above as a smoke test, not as a measurement of them.",
        ]
    return "\n".join(lines)


def _per_row_table(results: list[Result]) -> list[str]:
    """The per-row paths as a user times them: whole pipelines (process spawn to exit, model
    load and Beam's start-up included) on the same rows, beside Beam's handler (BH)."""
    rows = [r for r in results if r.path in _IN_TURNS and r.model == "mlp" and not r.error and r.whole]
    bh = _find(results, "mlp", "BH")
    if not rows:
        return []
    out = [
        f"Per-row paths, whole pipelines ({rows[0].rows:,} rows, one element per row; x BH: against Beam's "
        "RunInference(TFModelHandlerNumpy) on the same rows)",
        "",
        "| path | rows/s (whole pipeline) | x BH (whole) | rows/s (steady) | x BH (steady) | start-up s |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        whole = f"{r.whole / bh.whole:.2f}" if bh and bh.whole else ""
        steady = f"{r.steady / bh.steady:.2f}" if bh and bh.steady else ""
        out.append(f"| {r.path} | {r.whole:,.0f} | {whole} | {r.steady:,.0f} | {steady} | {r.startup:.1f} |")
    return out


def _startup_table(results: list[Result]) -> list[str]:
    """Where R1's and P's start-up went: each step's span in seconds from spawn, side by side,
    with the CPU seconds of the whole process meanwhile (spans that overlap ran on different
    threads; a step that ran twice shows both)."""
    r1, p = _find(results, "mlp", "R1"), _find(results, "mlp", "P")
    if r1 is None or p is None or not p.spans:
        return []
    names = list(dict.fromkeys(span[0] for span in sorted([*p.spans, *r1.spans], key=lambda s: s[1])))

    def cell(r: Result, name: str, cpu: bool = False) -> str:
        if cpu:
            return ", ".join(f"{cb - ca:.2f}" for n, _, _, ca, cb in r.spans if n == name)
        return ", ".join(f"{a:.2f}-{b:.2f} ({b - a:.2f})" for n, a, b, _, _ in r.spans if n == name)

    out = [
        "Start-up, MLP: wall seconds from spawn, from-to (length), and CPU seconds of the whole process "
        f"meanwhile (every thread); P - R1 = {p.startup - r1.startup:+.2f} s",
        "",
        "| step | R1 | R1 CPU | P | P CPU |",
        "|---|--:|--:|--:|--:|",
    ]
    out += [f"| {n} | {cell(r1, n)} | {cell(r1, n, True)} | {cell(p, n)} | {cell(p, n, True)} |" for n in names]
    cpu = [statistics.median(run["startup_cpu"] for run in r.raw) for r in (r1, p)]
    out.append(f"| **first batch's outputs** | {r1.startup:.2f} | {cpu[0]:.2f} | {p.startup:.2f} | {cpu[1]:.2f} |")
    return out


def _bounds(results: list[Result]) -> list[tuple[Result, dict[str, float], float]]:
    """For each MLP P row of the full data set: its parts (µs of one core per row) and the
    bound they give, ``cores / sum`` rows/s."""
    parts = _find(results, "mlp", "parts")
    if parts is None or not parts.raw or not parts.raw[0].get("parts"):
        return []
    us = {
        k: statistics.median(r["parts"]["us_per_row"][k] for r in parts.raw)
        for k in parts.raw[0]["parts"]["us_per_row"]
    }
    cores = len(os.sched_getaffinity(0))
    out = []
    for r in results:
        if r.model != "mlp" or r.path != "P" or r.subset or r.error or r.key in ("P-rss",):
            continue
        write = us.get(f"write {r.codec}")
        if write is None:
            continue
        row = {"read": us[f"read {r.input}"], "model": us["model"], "write": write}
        out.append((r, row, cores * 1e6 / sum(row.values())))
    return out


def _bound_table(results: list[Result]) -> list[str]:
    bounds = _bounds(results)
    if not bounds:
        return []
    cores = len(os.sched_getaffinity(0))
    out = [
        f"Bound: each part alone on one core (µs a row), summed, divided by {cores} cores; P steady beside it",
        "",
        "| input | codec | read µs | model µs | write µs | sum µs | bound rows/s | P steady rows/s | P / bound "
        "| P CPU µs a row |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r, row, bound in bounds:
        cpu = statistics.median(run["steady_cpu_us"] for run in r.raw)
        out.append(
            f"| {r.input} | {r.codec} | {row['read']:.2f} | {row['model']:.2f} | {row['write']:.2f} | "
            f"{sum(row.values()):.2f} | {bound:,.0f} | {r.steady:,.0f} | {r.steady / bound:.2f} | {cpu:.2f} |"
        )
    out += [
        "",
        "P CPU µs a row: CPU time of every thread after the first batch, per row; above the sum it is overhead,",
        "and P steady below cores / (P CPU) means the cores were not kept busy.",
    ]
    return out


def _ratio(a: Result | None, b: Result | None, attr_a: str, attr_b: str) -> float | None:
    if a is None or b is None or not getattr(b, attr_b) or not getattr(a, attr_a):
        return None
    return getattr(a, attr_a) / getattr(b, attr_b)


def _targets(results: list[Result]) -> list[str]:
    p = _find(results, "mlp", "P")
    r1 = _find(results, "mlp", "R1")
    checks: list[tuple[str, float | None, float]] = [
        ("MLP P/R0, steady", _ratio(p, _find(results, "mlp", "R0"), "steady", "steady"), 0.5),
        ("MLP P/R1, whole process", _ratio(p, r1, "whole", "whole"), 1.2),
        (
            "MLP P start-up - R1 start-up, s",
            None if p is None or r1 is None else p.startup - r1.startup,
            -0.5,
        ),
    ]
    checks += [
        (f"MLP P/bound, steady ({r.input}, {r.codec})", r.steady / bound, 0.9) for r, _, bound in _bounds(results)
    ]
    checks += [
        (
            "MLP P/R1 on a small job, whole process",
            _ratio(_find(results, "mlp", "P-small"), _find(results, "mlp", "R1-small"), "whole", "whole"),
            0.5,
        ),
        (
            "MLP P/B1, steady",
            _ratio(_find(results, "mlp", "P-baseline"), _find(results, "mlp", "B1"), "steady", "steady"),
            30,
        ),
        ("MLP T (RunSignature)/P, steady", _ratio(_find(results, "mlp", "T"), p, "steady", "steady"), 0.8),
        ("MLP H (ModelHandler)/P, steady", _ratio(_find(results, "mlp", "H"), p, "steady", "steady"), 0.8),
        (
            "MLP P(tfrecord)/P(parquet), steady",
            _ratio(_find(results, "mlp", "P-tfrecord"), p, "steady", "steady"),
            0.9,
        ),
        (
            "MLP P(tfrecord)/B2, steady",
            _ratio(_find(results, "mlp", "P-tfrecord"), _find(results, "mlp", "B2"), "steady", "steady"),
            15,
        ),
        (
            "MobileNetV2 P/R0, steady",
            _ratio(_find(results, "mobilenet", "P"), _find(results, "mobilenet", "R0"), "steady", "steady"),
            0.95,
        ),
    ]
    bh = _find(results, "mlp", "BH")
    for path, name in (("D", "row dicts"), ("E", "records")):
        mine = _find(results, "mlp", path)
        checks.append((f"MLP {path} ({name})/BH (Beam's handler), steady", _ratio(mine, bh, "steady", "steady"), 3))
        checks.append(
            (f"MLP {path} ({name})/BH (Beam's handler), whole pipeline", _ratio(mine, bh, "whole", "whole"), 1)
        )
        checks.append(
            (f"MLP BH/{path} ({name}), CPU per row, steady", _ratio(bh, mine, "steady_cpu_us", "steady_cpu_us"), 3)
        )
    rss_big = _find(results, "mlp", "P-rss")
    if rss_big is not None and p is not None:
        checks.append((f"MLP P peak RSS {rss_big.rows:,} rows / {p.rows:,} rows", rss_big.rss_mib / p.rss_mib, -1.10))
    out = ["| target | measured | wanted | |", "|---|--:|--:|---|"]
    for name, value, want in checks:
        if value is None:
            out.append(f"| {name} | n/a | {'<=' if want < 0 else '>='} {abs(want)} | not measured |")
        elif want < 0:  # an upper bound
            out.append(f"| {name} | {value:.2f} | <= {-want} | {'met' if value <= -want else 'MISSED'} |")
        else:
            out.append(f"| {name} | {value:.2f} | >= {want} | {'met' if value >= want else 'MISSED'} |")
    return out


def scale_rows(args) -> list[str]:
    """The rows of issue 35's targets at scale, each from its own benchmark: many small files
    against one file (:mod:`benchmarks.small_files`) and planning N files at 40 ms a request
    (:mod:`benchmarks.plan`)."""
    out: list[str] = []
    if args.small_files:
        from benchmarks.small_files import run as small_files

        out += small_files(os.path.join(args.work, "small-files"), files=args.small_files, repeat=args.repeat)
    if args.plan_files:
        command = [sys.executable, "-m", "benchmarks.plan", "--files", str(args.plan_files), "--serial", "0"]
        command += ["--job-files", str(args.plan_files)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        out += ["", *(done.stdout.strip().splitlines() or [f"benchmarks.plan failed: {done.stderr[-500:]}"])]
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run each (a smoke test): ~3 minutes")
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
        default=["R0", "R1", "P", "T", "H", "B1", "B2", "D0", "D", "E", "DB", "EB", "BH"],
        help="which paths to run",
    )
    ap.add_argument(
        "--models", nargs="+", default=["mlp", "mobilenet"], help="mlp, mobilenet, resnet50 (default mlp mobilenet)"
    )
    ap.add_argument("--rss-rows", type=int, default=0, help="also run P on this many rows (Parquet only), for RSS")
    ap.add_argument("--small-rows", type=int, default=20_000, help="rows of the small job (P and R1; 0 skips it)")
    ap.add_argument("--small-files", type=int, help="small files vs one file (default 5,000; --quick 500; 0 skips)")
    ap.add_argument("--plan-files", type=int, help="files planned at 40 ms/request (default 20,000; --quick 2,000)")
    ap.add_argument(
        "--codecs",
        nargs="+",
        default=list(DEFAULT_CODECS),
        choices=CODECS,
        help="output codecs P runs with (first: default)",
    )
    ap.add_argument("--parts-rows", type=int, default=500_000, help="rows on which each part is timed alone")
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
    args.small_files = args.small_files if args.small_files is not None else (500 if quick else 5_000)
    args.plan_files = args.plan_files if args.plan_files is not None else (2_000 if quick else 20_000)
    if quick:
        args.shards = min(args.shards, 4)
    start = time.time()
    results = run_all(args)
    print()
    print(table(results, args))
    print()
    print("\n".join(scale_rows(args)))
    print(f"\nbench took {time.time() - start:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
