"""``beamscore show | run | score``: argument parsing and error reporting, nothing else.

Errors we can explain are one line on stderr and exit code 2; ``--debug`` adds the
traceback. Unknown ``--flags`` of ``score`` are Beam pipeline options and pass through.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from beamscore.errors import BeamscoreError, JobFailed, Terminated, first_line, wrapped_message

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILED = 1


def _model_argument(command: argparse.ArgumentParser) -> None:
    """``MODEL``, or ``--dir MODEL`` as ``saved_model_cli`` spells it; its other flags
    (``--tag_set``, ``--signature_def``, ``--input_exprs``, ``--input_examples``) are
    accepted too, so a ``saved_model_cli`` command line works with the name changed."""
    command.add_argument("model", nargs="?", help="SavedModel directory or versioned base dir (any fsspec URL)")
    command.add_argument("--dir", help="the model, as saved_model_cli takes it")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beamscore", description="Batch scoring with TensorFlow SavedModels on Apache Beam."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    show = sub.add_parser(
        "show", help="print a SavedModel's tag sets, signatures, inputs and outputs", allow_abbrev=False
    )
    _model_argument(show)
    show.add_argument("--tag-set", "--tag_set", help="comma-separated tag set, e.g. serve or serve,gpu")
    show.add_argument("--signature", "--signature_def", help="show this signature's inputs and outputs")
    show.add_argument("--all", action="store_true", help="show every signature of every tag set")
    show.add_argument("--version", type=int, help="version subdirectory to use in a base dir (default: highest)")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.add_argument("--debug", action="store_true", help="show tracebacks")

    run = sub.add_parser(
        "run",
        help="call one signature on inputs from the command line, in this process (no Beam)",
        allow_abbrev=False,
        epilog="KEY=VALUE pairs are separated by ';'; each input flag may be repeated.",
    )
    _model_argument(run)
    run.add_argument("--signature", "--signature_def", help="signature key (default serving_default, or the only one)")
    run.add_argument("--tag-set", "--tag_set", help="MetaGraph tag set (default: the only one, else serve)")
    run.add_argument("--version", type=int, help="version subdirectory of a base dir (default: highest)")
    run.add_argument("--inputs", action="append", help="'x=a.npy;y=b.npz[name];z=c.npz' arrays from files")
    run.add_argument(
        "--input-exprs", "--input_exprs", action="append", help="'x=[[1.0,2.0]];y=np.ones((2,3))' literals, no eval"
    )
    run.add_argument(
        "--input-examples",
        "--input_examples",
        action="append",
        help='\'examples=[{"age":[22],"edu":["BS"]}]\' as tf.train.Examples',
    )
    run.add_argument("--allow-pickle", action="store_true", help="allow pickled .npy/.npz data (runs code)")
    run.add_argument("--max-input-bytes", type=int, default=1 << 30, help="largest --inputs file read (default 1 GiB)")
    run.add_argument("--outdir", help="save each output as DIR/<output_key>.npy instead of printing it")
    run.add_argument("--overwrite", action="store_true", help="replace existing files in --outdir")
    run.add_argument("--print-options", help="numpy print options, e.g. 'precision=3,threshold=20'")
    run.add_argument(
        "--import", dest="imports", action="append", metavar="MODULE", help="import MODULE first (custom op library)"
    )
    run.add_argument("--debug", action="store_true", help="show tracebacks")

    score = sub.add_parser(
        "score",
        help="score input shards with a SavedModel signature on Beam",
        allow_abbrev=False,
        epilog="Any other --flag is a Beam pipeline option, e.g. --runner=DataflowRunner.",
    )
    score.add_argument("--config", help="YAML job config (sections model, input, output, batch, pipeline_options)")
    score.add_argument("--model", help="SavedModel directory or versioned base dir")
    score.add_argument("--version", type=int, help="version subdirectory of a base dir (default: highest)")
    score.add_argument("--input", action="append", dest="inputs", help="input file, directory or glob (repeatable)")
    score.add_argument(
        "--format",
        choices=["tfrecord", "npz", "npy", "parquet"],
        help="input format (default: from the file extension: .tfrecord[.gz], .npz, .npy, .parquet)",
    )
    score.add_argument(
        "--compression",
        choices=["gzip", "zlib", "none"],
        help="TFRecord compression (default: found from each file's first bytes)",
    )
    score.add_argument(
        "--pad",
        action="append",
        metavar="NAME=LENGTH[:VALUE]",
        help="pad or truncate a list column (TFRecord, Parquet, npz) to LENGTH values (repeatable)",
    )
    score.add_argument(
        "--allow-pickle",
        dest="allow_pickle",
        action="store_true",
        default=None,
        help="read .npz/.npy object arrays (unpickles: only for files you trust)",
    )
    score.add_argument("--output", help="output directory")
    score.add_argument("--signature", help="signature key (default serving_default)")
    score.add_argument("--tag-set", dest="tag_set", help="MetaGraph tag set (default serve)")
    score.add_argument("--keep", action="append", nargs="+", help="input columns to copy to the output")
    score.add_argument("--map", action="append", metavar="INPUT=COLUMN", help="feed signature input from a column")
    score.add_argument("--outputs", action="append", nargs="+", help="signature outputs to write (default all)")
    score.add_argument("--batch-size", dest="batch_size", type=int, help="rows per signature call")
    score.add_argument(
        "--model-copies",
        dest="model_copies",
        type=int,
        help="serve N copies of the model per machine, shared by its worker processes (big models on GPUs)",
    )
    score.add_argument(
        "--jit-compile",
        dest="jit_compile",
        action="store_true",
        default=None,
        help="XLA-compile the signature for batches of exactly --batch-size rows (the last one padded)",
    )
    score.add_argument(
        "--rows-per-unit", dest="rows_per_unit", type=int, help="split input files into work units of about N rows"
    )
    score.add_argument("--cast", action="store_true", default=None, help="allow lossy dtype casts (float64->float32)")
    score.add_argument("--overwrite", action="store_true", default=None, help="replace an existing output")
    score.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="with --overwrite: replace beamscore's files even when the output also holds other files (they are kept)",
    )
    score.add_argument(
        "--output-format", dest="output_format", choices=("parquet", "npy"), help="output format (default parquet)"
    )
    score.add_argument(
        "--output-compression",
        dest="output_compression",
        choices=("snappy", "zstd", "lz4", "gzip", "none"),
        help="Parquet output codec (default snappy; --compression is the TFRecord input codec)",
    )
    score.add_argument(
        "--output-compression-level",
        dest="output_compression_level",
        type=int,
        help="codec level: zstd 1-22, lz4 1-12, gzip 1-9 (default: the codec's own)",
    )
    score.add_argument(
        "--resume", action="store_true", default=None, help="continue an unfinished output: skip units already written"
    )
    score.add_argument(
        "--reject-nan", dest="reject_nan", action="store_true", default=None, help="send rows with NaN/inf to _errors/"
    )
    score.add_argument(
        "--max-failed-rows", dest="max_failed_rows", type=int, help="failed rows allowed before exit code 1 (default 0)"
    )
    score.add_argument(
        "--max-failed-fraction", dest="max_failed_fraction", type=float, help="failed fraction of rows allowed (0-1)"
    )
    score.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import MODULE on the launcher and every worker before the model loads (e.g. tensorflow_text)",
    )
    score.add_argument(
        "--plan-on-workers",
        dest="plan_on_workers",
        action="store_true",
        default=None,
        help="workers read the input footers and split files into units (default above 100,000 files)",
    )
    score.add_argument(
        "--store-timeout",
        dest="store_timeout",
        type=float,
        metavar="SECONDS",
        help="end the job when an object store leaves a request unanswered this long (default 120; "
        "env BEAMSCORE_STORE_TIMEOUT)",
    )
    score.add_argument("--no-progress", dest="progress", action="store_false", help="no progress line on the terminal")
    score.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="check the job and print its plan; submit nothing"
    )
    score.add_argument("--debug", action="store_true", help="show tracebacks and Beam logs")

    doctor = sub.add_parser(
        "doctor",
        help="check what TensorFlow can use here (versions, CUDA, GPUs, driver) and say what is wrong",
        allow_abbrev=False,
    )
    doctor.add_argument("--model", help="also load this SavedModel and report the device its ops run on")
    doctor.add_argument("--signature", help="signature of --model to call (default serving_default, or the only one)")
    doctor.add_argument("--tag-set", help="MetaGraph tag set of --model (default: the only one, else serve)")
    doctor.add_argument("--json", action="store_true", help="print JSON for scripts")
    doctor.add_argument(
        "--require-gpu", action="store_true", help="exit 1 unless TensorFlow uses a GPU (for GPU images)"
    )
    doctor.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``beamscore`` console script; returns the exit code."""
    if argv is None:
        _exit_on_signal_at_once()
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command in ("show", "run"):
        args.model = args.model or args.dir
        if not args.model:
            parser.error(f"{args.command}: give the SavedModel directory (MODEL, or --dir MODEL)")
    if args.command != "score" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.debug:
        from beamscore._quiet import import_tensorflow_quietly

        import_tensorflow_quietly()
        for name in ("apache_beam", "absl", "tensorflow"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from beamscore.stores import STORE_LOGGERS

        for name in STORE_LOGGERS:  # gcsfs logs each retry as an ERROR with its traceback
            logging.getLogger(name).setLevel(logging.CRITICAL)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_third_party_chatter)
    stderr = sys.stderr
    if not args.debug:
        from beamscore._quiet import WithoutBeam

        sys.stderr = WithoutBeam(stderr)
    with _sigterm_unwinds():
        try:
            return _dispatch(args, extra)
        finally:
            sys.stderr = stderr


#: the signals that end a job, and the exit code and words of each
_SIGNALS = {signal.SIGTERM: (143, "terminated (SIGTERM)"), signal.SIGINT: (130, "interrupted")}
#: signals received while the command ran (the first one decides the exit code)
_received: list[int] = []
#: the terminal's stderr, kept while a multi-process run points fd 2 at the worker log
_stderr_fd = [2]


def _exit_on_signal_at_once() -> None:
    """Before the command runs (arguments, the TensorFlow import): SIGTERM and SIGINT print
    the one line and end the process with 143 / 130 at once; nothing is written yet. Only for
    the program itself (``main()`` without ``argv``), never in a host that calls :func:`main`."""

    stderr_fd = os.dup(2)  # the TensorFlow import points fd 2 at /dev/null for a while

    def at_once(signum: int, frame: object) -> None:
        code, what = _SIGNALS[signum]
        with contextlib.suppress(Exception):
            os.write(stderr_fd, f"beamscore: error: {what}\n".encode())
        os._exit(code)

    def ignore_while_exiting() -> None:
        # the command is over and its last line printed: a signal now would only cut the
        # interpreter's tear-down short and turn the exit code into "killed by signal"
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    for signum in _SIGNALS:
        signal.signal(signum, at_once)
    _at_thread_shutdown(ignore_while_exiting)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` and SIGINT
    ``KeyboardInterrupt`` in the main thread (where Python runs signal handlers) instead of
    killing the process where it stands, once: a second signal while the job unwinds (releasing
    its claim) is noted, not raised in the middle of the clean-up.

    After a signal the process ends with 143 / 130 as soon as the main thread is done
    (:func:`_end_after_signal`): the interpreter's own shutdown is skipped, where Beam's gRPC
    threads, still calling into Python, could abort it (``Fatal Python error:
    PyGILState_Release``, exit 134) or keep it waiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, frame: object) -> None:
        first = not _received
        _received.append(signum)
        if not first:  # a second signal: the clean-up is stuck or too slow for the sender
            _end_now()
        if first:
            _end_after_signal()
            threading.Thread(target=_end_if_stuck, name="beamscore-signal-exit", daemon=True).start()
            # Beam's threads that ran the job now fail one after another ("Worker subprocess
            # exited"): their tracebacks would land above the final line; a worker's own is in
            # the worker log
            threading.excepthook = lambda args: None
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    from beamscore import store_watch

    store_watch.exit_when_stuck = True  # a command, not a notebook: a job stuck on a store ends
    previous = {signum: signal.signal(signum, unwind) for signum in _SIGNALS}
    _stderr_fd[0] = os.dup(2)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not _received:  # else a thread may still write the line there
            os.close(_stderr_fd[0])
            _stderr_fd[0] = 2


#: seconds a job may take to unwind after SIGTERM / SIGINT before the process ends anyway
UNWIND_S = 30.0


def _end_now() -> None:
    """End the process with the first signal's code and its one line, without unwinding
    further (the claim is left; with this process gone it is stale at once on this host)."""
    code, what = _SIGNALS[_received[0]]
    with contextlib.suppress(Exception):
        os.write(_stderr_fd[0], f"beamscore: error: {what}\n".encode())
    os._exit(code)


def _end_if_stuck() -> None:
    """After the first signal: a job that has not ended :data:`UNWIND_S` seconds later (Beam
    waiting on a worker that the signal killed) ends now."""
    time.sleep(UNWIND_S)
    _end_now()


def _end_after_signal() -> None:
    """Once the main thread has finished (its last line printed), flush and end the process
    with the signal's exit code, before the interpreter waits for threads or tears down."""

    def end() -> None:
        code = _SIGNALS[_received[0]][0]
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    _at_thread_shutdown(end)


def _at_thread_shutdown(func: Any) -> None:
    """Call ``func`` when the main thread is done, before the interpreter joins the other
    threads (``threading._register_atexit``, as ``concurrent.futures`` uses; else ``atexit``)."""
    register = getattr(threading, "_register_atexit", None)
    try:
        (register or atexit.register)(func)
    except RuntimeError:  # the interpreter is already shutting down
        atexit.register(func)


def _dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the command; an error becomes one line on stderr and the exit code."""
    try:
        if args.command == "show":
            return _show(args)
        if args.command == "run":
            return _run(args)
        if args.command == "doctor":
            return _doctor(args)
        return _score(args, extra)
    except JobFailed as exc:  # the job ran and a worker failed
        return _fail(str(exc), EXIT_FAILED, args.debug)
    except BeamscoreError as exc:
        return _fail(str(exc), EXIT_USAGE, args.debug)
    except (KeyboardInterrupt, Terminated) as exc:
        what, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        what += f": {exc}" if str(exc) else ""
        hint = "; rerun with --resume to continue the job" if args.command == "score" else ""
        return _fail(f"{what}{hint}", code, args.debug)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line unless --debug
        found = _find_beamscore_error(exc)
        if found is not None:
            return _fail(found, EXIT_USAGE, args.debug)
        from beamscore.stores import describe_store_error

        found = describe_store_error(exc)
        if found is not None:
            return _fail(found, EXIT_USAGE, args.debug)
        hint = "" if args.debug else " (rerun with --debug for the traceback)"
        return _fail(f"{type(exc).__name__}: {first_line(str(exc))}{hint}", EXIT_FAILED, args.debug)


def _third_party_chatter(record: logging.LogRecord) -> bool:
    """Drop what Beam and TensorFlow log on the root logger (e.g. "apitools not found"), errors
    included: a failed worker's traceback is Beam's log, and our last line names its cause."""
    if record.name.split(".", 1)[0] in ("apache_beam", "tensorflow", "keras", "absl"):
        return False
    if record.levelno >= logging.ERROR:
        return True
    path = record.pathname.replace("\\", "/")
    return not any(f"/{pkg}/" in path for pkg in ("apache_beam", "tensorflow", "keras", "absl"))


def _show(args: argparse.Namespace) -> int:
    from beamscore.model.inspect import inspect_model
    from beamscore.show import render_json, render_text, warnings

    info = inspect_model(args.model, args.version)
    for warning in warnings(info):
        print(f"beamscore: warning: {warning}", file=sys.stderr)
    render = render_json if args.json else render_text
    print(render(info, args.tag_set, args.signature, args.all))
    return 0


def _run(args: argparse.Namespace) -> int:
    from beamscore import try_model
    from beamscore.model.inspect import inspect_model

    print_options = try_model.parse_print_options(args.print_options)
    feeds = try_model.collect_feeds(
        args.inputs, args.input_exprs, args.input_examples, args.allow_pickle, args.max_input_bytes
    )
    from beamscore.model.checks import import_modules

    import_modules(args.imports or [])
    result = try_model.run_signature(
        inspect_model(args.model, args.version), feeds, args.signature, args.tag_set, imports=args.imports or []
    )
    if args.outdir is None:
        print(try_model.format_outputs(result.outputs, print_options))
    else:
        paths = try_model.save_outputs(result.outputs, args.outdir, args.overwrite)
        print(try_model.format_saved(result.outputs, paths))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from beamscore import doctor

    facts = doctor.gather(args.model, args.signature, args.tag_set)
    verdict = doctor.judge(facts)
    print((doctor.render_json if args.json else doctor.render_text)(facts, verdict))
    if args.require_gpu and verdict.status == "cpu":
        return EXIT_FAILED
    return verdict.exit_code


def _score(args: argparse.Namespace, extra: list[str]) -> int:
    from beamscore.config import ScoreConfig, load_yaml
    from beamscore.pipelines.score import prepare

    if args.store_timeout is not None:  # through the environment, so worker processes see it too
        from beamscore.store_watch import TIMEOUT_ENV, store_timeout

        os.environ[TIMEOUT_ENV] = repr(args.store_timeout)
        store_timeout()  # refuses a value out of range
    stray = _stray_arguments(extra)
    if stray:
        raise BeamscoreError(f"unexpected argument {stray[0]!r}; inputs are given with --input")
    config = load_yaml(args.config) if args.config else ScoreConfig()
    config = config.merged(
        {
            "model": args.model,
            "version": args.version,
            "inputs": args.inputs,
            "format": args.format,
            "output": args.output,
            "signature": args.signature,
            "tag_set": args.tag_set,
            "keep": _flatten(args.keep),
            "map": _parse_pairs("--map", "SIGNATURE_INPUT=COLUMN", args.map),
            "outputs": _flatten(args.outputs),
            "batch_size": args.batch_size,
            "model_copies": args.model_copies,
            "jit_compile": args.jit_compile,
            "rows_per_unit": args.rows_per_unit,
            "compression": args.compression,
            "pad": _parse_pairs("--pad", "NAME=LENGTH[:VALUE]", args.pad),
            "allow_pickle": args.allow_pickle,
            "cast": args.cast,
            "overwrite": args.overwrite,
            "force": args.force,
            "output_format": args.output_format,
            "output_compression": args.output_compression,
            "output_compression_level": args.output_compression_level,
            "resume": args.resume,
            "reject_nan": args.reject_nan,
            "max_failed_rows": args.max_failed_rows,
            "max_failed_fraction": args.max_failed_fraction,
            "imports": args.imports,
            "plan_on_workers": args.plan_on_workers,
        }
    )
    plan, options, warnings = prepare(config, extra)  # the path of beamscore.score() too
    from beamscore.pipelines.dry_run import output_state, render_plan

    if args.dry_run:
        from beamscore.pipelines.resume import planned_files

        state = output_state(plan.config.output, config.overwrite, config.resume, config.force, planned_files(plan))
        print(render_plan(plan, options, warnings, state))
        from beamscore.doctor import dry_run_report

        gpu_report = dry_run_report(options.get_all_options(drop_default=True, retain_unknown_options=True))
        if gpu_report:
            print(f"\n{gpu_report}")
        return 0
    for warning in warnings:
        print(f"beamscore: warning: {warning}", file=sys.stderr)
    result = _run_plan(plan, options, args)
    m = result.manifest
    if result.complete:
        print(
            f"already complete: {plan.config.output} was finished by this job on {m.get('finished', '?')} "
            f"(rows in {m['rows_in']:,}, out {m['rows_out']:,}, failed {m['rows_failed']:,}); nothing to do"
        )
        if result.failure:
            print(f"beamscore: error: {result.failure}", file=sys.stderr)
            return EXIT_FAILED
        return 0
    rate = m["rows_out"] / result.seconds if result.seconds else 0.0
    print(
        f"scored {_scored(m)} rows in {result.seconds:.1f}s ({rate:,.0f} rows/s) "
        f"with {m['model']['path']} [{m['model']['signature']}] on {result.runner}\n"
        f"  rows in {m['rows_in']:,}, out {m['rows_out']:,}, failed {m['rows_failed']:,}; "
        f"{m['units']} units, {len(m['outputs'])} files"
        + (f" ({result.skipped} units already done, resumed)" if result.skipped else "")
        + f"\n  output: {plan.config.output} (manifest: {plan.config.output.rstrip('/')}/_manifest.json)"
    )
    if result.failure:
        print(f"beamscore: error: {result.failure}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _stray_arguments(extra: list[str]) -> list[str]:
    """Tokens that are neither Beam options nor their values.

    Beam accepts ``--project=p`` and ``--project p`` alike, so a bare token right after an
    option without ``=`` is that option's value; any other bare token is a mistake.
    """
    stray = []
    takes_value = False
    for token in extra:
        if token.startswith("--"):
            takes_value = "=" not in token
        elif takes_value:
            takes_value = False
        else:
            stray.append(token)
    return stray


def _flatten(groups: list[list[str]] | None) -> list[str] | None:
    if groups is None:
        return None
    return [item for group in groups for part in group for item in part.split(",") if item]


def _parse_pairs(flag: str, form: str, pairs: list[str] | None) -> dict[str, str] | None:
    """``["a=b", "c=d"]`` -> ``{"a": "b", "c": "d"}``; ``form`` names the expected shape in errors."""
    if pairs is None:
        return None
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise BeamscoreError(f"{flag} {pair!r}: expected {form}")
        parsed[key] = value
    return parsed


def _find_beamscore_error(exc: BaseException) -> str | None:
    """Our message from an exception a runner wrapped (in-process or as traceback text)."""
    return wrapped_message(exc)


def _scored(manifest: dict) -> str:
    """``700`` when every row was scored, ``650 of 700`` when some failed."""
    rows_in, rows_out = manifest["rows_in"], manifest["rows_out"]
    return f"{rows_out:,}" if rows_out == rows_in else f"{rows_out:,} of {rows_in:,}"


def _run_plan(plan: Any, options: Any, args: argparse.Namespace) -> Any:
    """Run the job. Local worker processes write their stderr (Beam's log, failed bundles'
    tracebacks) to a log file unless ``--debug``; it is removed when the job succeeds and
    named in the error line when it fails."""
    from beamscore.pipelines.runners import local_worker_processes
    from beamscore.pipelines.score import run_plan

    if args.debug or not local_worker_processes(options):
        return run_plan(plan, options, progress=args.progress)
    from beamscore._quiet import stderr_fd_to
    from beamscore.transforms.watchdog import WORKER_LOG, remove_orphaned_logs

    remove_orphaned_logs(tempfile.gettempdir())  # those of launchers killed with SIGKILL
    log = os.path.join(tempfile.gettempdir(), WORKER_LOG.format(pid=os.getpid()))
    kept = False
    hook = threading.excepthook

    def to_log(failed: Any) -> None:  # Beam's threads that watch a dead worker die noisily: into the log
        with contextlib.suppress(OSError), open(log, "a") as f:
            traceback.print_exception(failed.exc_type, failed.exc_value, failed.exc_traceback, file=f)

    threading.excepthook = to_log
    try:
        with stderr_fd_to(log):
            return run_plan(plan, options, progress=args.progress)
    except JobFailed as exc:
        threading.excepthook = lambda args: None  # and after the log is named, nowhere
        kept = os.path.getsize(log) > 0
        if kept:
            said = _worker_error(log)  # a worker's own one line (a stalled store) says more
            raise JobFailed(f"{said or exc} (the worker processes' log: {log})", exc.manifest) from exc
        raise
    finally:
        if not kept:
            threading.excepthook = hook
            os.unlink(log)


def _worker_error(log: str) -> str | None:
    """The first ``beamscore: error:`` line a worker process wrote to ``log``, without it."""
    prefix = "beamscore: error: "
    with open(log, errors="replace") as f:
        return next((line[len(prefix) :].strip() for line in f if line.startswith(prefix)), None)


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"beamscore: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
