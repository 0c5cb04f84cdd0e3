"""``beamscore show | scan | run | score | doctor | report``: argument parsing and error reporting, nothing else.

Errors we can explain are one line on stderr and exit code 2; ``--debug`` adds the
traceback. A ``--flag`` of ``score`` that is not beamscore's is a Beam pipeline option and
passes through; one that is neither is refused with the nearest name (:mod:`beamscore.flags`).

Nothing here imports TensorFlow or Beam until a command needs them: ``--help``,
``--version`` and mistakes in flags, the config file or local paths are answered in well
under a second (importing TensorFlow alone takes 3-8 s).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
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

from beamscore import exitcodes
from beamscore.console import LOG_FORMATS, JsonLogFormatter, StderrLines, stamps
from beamscore.errors import (
    BeamscoreError,
    JobFailed,
    RowsFailed,
    Terminated,
    TryLater,
    first_line,
    wrapped_message,
)
from beamscore.exitcodes import EXIT_CRASHED, EXIT_ROWS_FAILED
from beamscore.flags import canonical, register_score_flags, split_beam_flags, unknown_flag_error

__all__ = ["main", "parse", "program_versions", "score_flags"]

EXIT_USAGE = exitcodes.EXIT_USAGE
EXIT_FAILED = 1  # doctor --require-gpu without a GPU
#: ``--version`` given without a number: print the program's versions (its old meaning, the
#: model's version, is ``--model-version N``)
_PRINT_VERSIONS = object()  # not a str: argparse would convert a str const with type=int

SCORE_EXAMPLES = """\
examples:
  # score Parquet shards with the model's default signature, keeping an id column
  beamscore score models/ranker --input 'data/*.parquet' --output out/ranker --keep id

  # a scheduled run from a config file: one JSON summary line on stdout, JSON logs on stderr
  beamscore score --config configs/local.yaml --output 'out/{date}' --json --log-format json

  # check a Dataflow job without submitting it (any flag beamscore does not know is Beam's)
  beamscore score --model gs://b/models/ranker --input 'gs://b/in/*.tfrecord.gz' \\
      --output gs://b/out --runner=DataflowRunner --project=my-project \\
      --region=us-central1 --temp_location=gs://b/tmp --sdk_container_image=IMAGE --dry-run
"""


class UsageError(BeamscoreError):
    """A command line argparse cannot parse: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``beamscore: error: ...``), raised, not printed
    with the usage and ``sys.exit``: :func:`main` reports them like every other error."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


class _Versions(argparse.Action):
    """``beamscore --version``: print the versions and exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(program_versions())
        parser.exit()


def program_versions() -> str:
    """beamscore's version and those of TensorFlow, Beam and pyarrow, read from the installed
    packages' metadata (nothing is imported: it takes milliseconds, not seconds)."""
    import importlib.metadata
    import platform

    from beamscore._version import __version__
    from beamscore.doctor import TF_DISTRIBUTIONS

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    # each name looked up (a scan of every installed distribution takes a second on a busy machine)
    tf = {name: version(name) for name in TF_DISTRIBUTIONS}
    tf = {name: v for name, v in sorted(tf.items()) if v != "not installed"}
    if not tf:
        tf_line = "not installed (pip install 'beamscore[cpu]' or 'beamscore[gpu]')"
    else:
        (name, ver), *more = tf.items()
        tf_line = f"{ver} ({name})" + "".join(f"; also installed: {n} {v}" for n, v in more)
    return "\n".join(
        [
            f"beamscore    {__version__}",
            f"tensorflow   {tf_line}",
            f"apache-beam  {version('apache-beam')}",
            f"pyarrow      {version('pyarrow')}",
            f"python       {platform.python_version()}",
        ]
    )


#: ``beamscore report``'s exit codes (a scheduler's check of an output)
REPORT_EXIT_CODES = """exit codes:
  0    the output is finished and succeeded
  1    the output is finished and failed (more rows failed than its limits allow)
  2    not a beamscore output (no _manifest.json, no _units/ receipts)
  75   unfinished: still being written, or interrupted (--resume finishes it); ask again later"""


def exit_code_table() -> str:
    """The exit-code table of :mod:`beamscore.exitcodes`' docstring, for help epilogs."""
    lines = (exitcodes.__doc__ or "").splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("=====")]
    body = lines[rules[1] + 1 : rules[2]] if len(rules) >= 3 else []
    out = ["exit codes:"]
    for line in body:
        code, text = line[:8].strip(), line[8:].strip().replace("``", "")
        out.append(f"  {code:<5}{text}" if code else f"       {text}")
    return "\n".join(out)


def _model_argument(
    command: argparse.ArgumentParser | Any,
    saved_model_cli: bool = False,
    what: str = "SavedModel directory or versioned base dir, any fsspec URL",
    several: bool = False,
) -> None:
    """``MODEL`` or ``--model MODEL``, the same in every command; ``show`` and ``run`` also take
    ``--dir MODEL`` as ``saved_model_cli`` spells it (with its other flags ``--tag_set``,
    ``--signature_def``, ``--input_exprs``, ``--input_examples``), so a ``saved_model_cli``
    command line works with the name changed."""
    command.add_argument(
        "model_arg",
        nargs="?",
        metavar="MODEL",
        help=f"{what} (or --model MODEL)",
    )
    if several:  # show: --model NAME=PATH, repeated, as score takes several models
        command.add_argument("--model", action="append", help=argparse.SUPPRESS)
    else:
        command.add_argument("--model", help=argparse.SUPPRESS)
    if saved_model_cli:
        command.add_argument("--dir", help=argparse.SUPPRESS)


def _allow_ops(
    command: argparse.ArgumentParser | Any,
    what: str = "run the model although it uses these ops, which the op scan refuses (files, Python, "
    "process, printing: see beamscore scan); only for models you trust",
) -> None:
    command.add_argument("--allow-ops", dest="allow_ops", action="append", metavar="OP,OP", help=what)


def _op_names(given: list[str] | None) -> list[str] | None:
    """``--allow-ops ReadFile,WriteFile --allow-ops PrintV2`` -> the op names (``None``: not given)."""
    if given is None:
        return None
    return [name.strip() for text in given for name in text.split(",") if name.strip()]


def _model_version(command: argparse.ArgumentParser | Any, what: str) -> None:
    command.add_argument(
        "--model-version",
        dest="model_version",
        type=int,
        metavar="N",
        help=f"version subdirectory of a versioned base dir {what} (default: the highest); "
        "--version N is the old spelling",
    )
    command.add_argument(
        "--version", dest="model_version", type=int, nargs="?", const=_PRINT_VERSIONS, help=argparse.SUPPRESS
    )


def _common(command: argparse.ArgumentParser | Any) -> None:
    command.add_argument(
        "--log-format",
        dest="log_format",
        choices=LOG_FORMATS,
        default="text",
        help="what beamscore writes on stderr: text (default) or json (one object a line: ts, level, event, ...)",
    )
    command.add_argument("--debug", action="store_true", help="show tracebacks (and, for score, Beam's logs)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="beamscore",
        description="Batch scoring with TensorFlow SavedModels on Apache Beam.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=exit_code_table(),
    )
    parser.add_argument(
        "--version", action=_Versions, help="print the versions of beamscore, TensorFlow, Beam and pyarrow"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{show,scan,run,score,doctor,report}")

    show = sub.add_parser(
        "show", help="print a SavedModel's tag sets, signatures, inputs and outputs", allow_abbrev=False
    )
    _model_argument(show, saved_model_cli=True, several=True)
    show.add_argument(
        "--config",
        metavar="FILE",
        help="show the model(s) of this job config (its models: each with its own signature, tag set, version)",
    )
    show.add_argument("--tag-set", "--tag_set", help="comma-separated tag set, e.g. serve or serve,gpu")
    show.add_argument("--signature", "--signature_def", help="show this signature's inputs and outputs")
    show.add_argument("--all", action="store_true", help="show every signature of every tag set")
    _model_version(show, "to show")
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    _common(show)

    scan = sub.add_parser(
        "scan",
        help="list the ops each signature can reach that touch files, Python, the process or print; "
        "exit 1 when any is flagged",
        allow_abbrev=False,
    )
    _model_argument(scan, saved_model_cli=True)
    scan.add_argument("--tag-set", "--tag_set", help="scan only this tag set (default: every one)")
    scan.add_argument("--signature", "--signature_def", help="scan only this signature (and the load step)")
    _model_version(scan, "to scan")
    _allow_ops(scan, "count these flagged ops as allowed (exit 0 when nothing else is flagged)")
    scan.add_argument("--json", action="store_true", help="print JSON for scripts")
    _common(scan)

    run = sub.add_parser(
        "run",
        help="call one signature on inputs from the command line, in this process (no Beam)",
        allow_abbrev=False,
        epilog="KEY=VALUE pairs are separated by ';'; each input flag may be repeated.",
    )
    _model_argument(run, saved_model_cli=True)
    run.add_argument("--signature", "--signature_def", help="signature key (default serving_default, or the only one)")
    run.add_argument("--tag-set", "--tag_set", help="MetaGraph tag set (default: the only one, else serve)")
    _model_version(run, "to call")
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
    _allow_ops(run)
    _common(run)

    _score_parser(sub)

    doctor = sub.add_parser(
        "doctor",
        help="check what TensorFlow can use here (versions, CUDA, GPUs, driver) and say what is wrong",
        allow_abbrev=False,
    )
    _model_argument(doctor, what="also load this SavedModel and report the device its ops run on")
    doctor.add_argument("--signature", help="signature of MODEL to call (default serving_default, or the only one)")
    doctor.add_argument("--tag-set", help="MetaGraph tag set of MODEL (default: the only one, else serve)")
    doctor.add_argument("--json", action="store_true", help="print JSON for scripts")
    doctor.add_argument(
        "--require-gpu", action="store_true", help="exit 1 unless TensorFlow uses a GPU (for GPU images)"
    )
    _common(doctor)

    report = sub.add_parser(
        "report",
        help="summarise an output: rows, files, dead letters, outputs' distributions",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=REPORT_EXIT_CODES,
    )
    report.add_argument("output", metavar="OUT", help="the output directory of a job (any fsspec URL)")
    report.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    report.add_argument("--json", action="store_true", help="print JSON for scripts")
    _common(report)
    return parser


def _score_parser(sub: Any) -> argparse.ArgumentParser:
    """``beamscore score``: options in groups (model, input, output, job, runner), each with
    its default; the required ones (MODEL, --input, --output) may come from ``--config``."""
    score = sub.add_parser(
        "score",
        help="score input shards with a SavedModel signature on Beam",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [MODEL | --model MODEL] --input PATH [--input PATH ...] --output DIR [options] "
        "[--BEAM_OPTION=VALUE ...]",
        description="Score input shards with a SavedModel signature on Apache Beam. Required: the model, "
        "--input and --output, as flags or from --config (flags override the file).",
        epilog=f"{SCORE_EXAMPLES}\n{exit_code_table()}",
    )
    model = score.add_argument_group("model")
    model.add_argument(
        "model_arg",
        nargs="?",
        metavar="MODEL",
        help="required: SavedModel directory or versioned base dir, any fsspec URL; or --model MODEL",
    )
    model.add_argument(
        "--model",
        metavar="MODEL",
        action="append",
        help="the model, as a flag (the same as MODEL); several as NAME=PATH, repeated: every batch is read once "
        "and scored by each model, its outputs written as NAME__output (champion/challenger)",
    )
    _model_version(model, "to score with")
    model.add_argument("--signature", metavar="KEY", help="signature key (default: serving_default)")
    model.add_argument(
        "--tag-set", dest="tag_set", metavar="TAGS", help="MetaGraph tag set (default: the only one, else serve)"
    )
    model.add_argument(
        "--model-copies",
        dest="model_copies",
        type=int,
        metavar="N",
        help="serve N copies of the model per machine, shared by its worker processes (big models on GPUs; "
        "default: one per worker process)",
    )
    model.add_argument(
        "--jit-compile",
        dest="jit_compile",
        action="store_true",
        default=None,
        help="XLA-compile the signature for batches of exactly --batch-size rows (the last one padded)",
    )
    model.add_argument(
        "--route-by",
        dest="route_by",
        metavar="COLUMN",
        help="score each row only with the model its COLUMN value names (--model VALUE=PATH, repeated; a model "
        "named default takes the other rows)",
    )
    model.add_argument(
        "--max-models-per-worker",
        dest="max_models_per_worker",
        type=int,
        metavar="K",
        help="with --route-by: at most K models loaded at once per worker (least recently used released)",
    )
    model.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import MODULE on the launcher and every worker before the model loads (e.g. tensorflow_text)",
    )
    _allow_ops(model)

    from beamscore.config import INPUT_FORMATS, OUTPUT_FORMATS  # (config is light: no pyarrow, TF or Beam)

    given = score.add_argument_group("input")
    given.add_argument(
        "--input",
        action="append",
        dest="inputs",
        metavar="PATH",
        help="required: input file, directory or glob, any fsspec URL (repeatable)",
    )
    given.add_argument(
        "--format",
        choices=INPUT_FORMATS,
        help="input format (default: from the file extension: .tfrecord[.gz], .npz, .npy, .parquet, .feather, .orc)",
    )
    given.add_argument(
        "--compression",
        choices=["gzip", "zlib", "none"],
        help="TFRecord compression (default: found from each file's first bytes)",
    )
    given.add_argument("--map", action="append", metavar="INPUT=COLUMN", help="feed signature input from a column")
    given.add_argument(
        "--keep", action="append", nargs="+", metavar="COLUMN", help="input columns to copy to the output"
    )
    given.add_argument(
        "--pad",
        action="append",
        metavar="NAME=LENGTH[:VALUE]",
        help="pad or truncate a list column (TFRecord, Parquet, npz) to LENGTH values (repeatable)",
    )
    given.add_argument(
        "--cast", action="store_true", default=None, help="allow lossy dtype casts (float64->float32; default: refuse)"
    )
    given.add_argument(
        "--reject-nan", dest="reject_nan", action="store_true", default=None, help="send rows with NaN/inf to _errors/"
    )
    given.add_argument(
        "--allow-pickle",
        dest="allow_pickle",
        action="store_true",
        default=None,
        help="read .npz/.npy object arrays (unpickles: only for files you trust)",
    )
    given.add_argument(
        "--allow-empty",
        dest="allow_empty",
        action="store_true",
        default=None,
        help="score inputs that hold no rows as an empty result (default: exit 75, try again later)",
    )
    given.add_argument(
        "--rows-per-unit",
        dest="rows_per_unit",
        type=int,
        metavar="N",
        help="split input files into work units of about N rows (default: 1,048,576; Parquet by row groups)",
    )
    given.add_argument(
        "--plan-on-workers",
        dest="plan_on_workers",
        action="store_true",
        default=None,
        help="workers read the input footers and split files into units (default: above 100,000 files)",
    )
    given.add_argument(
        "--table-version",
        dest="table_version",
        type=int,
        metavar="N",
        help="an input table's version to read (Delta: version, Iceberg: snapshot id; default: the latest)",
    )
    given.add_argument(
        "--table-as-of",
        dest="table_as_of",
        metavar="TIME",
        help="read an input table as it was at this ISO 8601 time (e.g. 2026-12-01T06:00:00Z)",
    )
    given.add_argument(
        "--where",
        metavar="CONDITION",
        help="read only these partitions of an input table: \"date = '{date}'\" (partition columns, AND, IN); "
        "with --output-format delta, also the output table's partition the job replaces (equalities only)",
    )
    given.add_argument(
        "--raw-files",
        dest="raw_files",
        action="store_true",
        default=None,
        help="read files inside a Delta/Iceberg/Hudi table as plain files (default: refused, they may be stale)",
    )

    output = score.add_argument_group("output")
    output.add_argument("--output", metavar="DIR", help="required: output directory, any fsspec URL")
    output.add_argument(
        "--date",
        help="the day filled into {date} and %%Y/%%m/%%d fields of --input and --output: "
        "YYYY-MM-DD, today or yesterday (default: today, UTC); %%%% is a literal %%",
    )
    output.add_argument(
        "--outputs", action="append", nargs="+", metavar="KEY", help="signature outputs to write (default: all)"
    )
    output.add_argument(
        "--output-format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        help="output format (default: parquet); delta: --output is a Delta table, the job's files committed to it "
        "in one commit at the end",
    )
    output.add_argument(
        "--output-compression",
        dest="output_compression",
        choices=("snappy", "zstd", "lz4", "gzip", "none"),
        help="Parquet output codec (default: snappy; --compression is the TFRecord input codec)",
    )
    output.add_argument(
        "--output-compression-level",
        dest="output_compression_level",
        type=int,
        metavar="N",
        help="codec level: zstd 1-22, lz4 1-12, gzip 1-9 (default: the codec's own)",
    )
    output.add_argument(
        "--overwrite", action="store_true", default=None, help="replace an existing output (default: refuse)"
    )
    output.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="with --overwrite: replace beamscore's files even when the output also holds other files (they are kept)",
    )
    output.add_argument(
        "--resume", action="store_true", default=None, help="continue an unfinished output: skip units already written"
    )

    job = score.add_argument_group("job")
    job.add_argument(
        "--config", metavar="FILE", help="YAML job config (sections model, input, output, batch, pipeline_options)"
    )
    job.add_argument(
        "--batch-size",
        dest="batch_size",
        type=int,
        metavar="N",
        help="rows per signature call (default: 4096, fewer for wide rows: about 16 MiB of input a batch)",
    )
    job.add_argument(
        "--batch-multiple",
        dest="batch_multiple",
        type=int,
        metavar="N",
        help="pad every signature call to a multiple of N rows, for a model whose shapes need it "
        "(jax2tf's (2*b, 8)); found by itself when a row fails alone but scores in a batch of N",
    )
    job.add_argument(
        "--no-trial",
        dest="trial",
        action="store_false",
        default=None,
        help="skip the trial call: a few rows of the first input through the signature on the launcher, "
        "which refuses a model that cannot run here before anything is written",
    )
    job.add_argument(
        "--max-failed-rows",
        dest="max_failed_rows",
        type=int,
        metavar="N",
        help="failed rows allowed before exit code 1 (default: 0)",
    )
    job.add_argument(
        "--max-failed-fraction",
        dest="max_failed_fraction",
        type=float,
        metavar="F",
        help="failed fraction of rows allowed, 0-1 (default: not set)",
    )
    job.add_argument(
        "--dry-run", dest="dry_run", action="store_true", help="check the job and print its plan; submit nothing"
    )
    job.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON line on stdout (status, rows, seconds, output, manifest, exit_code...)",
    )
    job.add_argument(
        "--progress-every",
        dest="progress_every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="when stderr is not a terminal, a timestamped progress line every SECONDS (default: 30)",
    )
    job.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress on stderr (default: shown)"
    )
    job.add_argument(
        "--store-timeout",
        dest="store_timeout",
        type=float,
        metavar="SECONDS",
        help="end the job when an object store leaves a request unanswered this long (default: 120; "
        "env BEAMSCORE_STORE_TIMEOUT)",
    )
    _common(job)

    score.add_argument_group(
        "runner",
        "Any other --flag is a Beam pipeline option and passes through to Beam: --runner=DataflowRunner, "
        "--direct_running_mode=multi_processing --direct_num_workers=4, --runner=DaskRunner "
        "--dask_client_address=HOST:8786, --flink_master=HOST:8081... A flag that is neither beamscore's "
        "nor Beam's is refused (exit 2). beamscore's flags may be spelt with _ too (--batch_size). "
        "Default runner: Beam's local FnApiRunner, 2 threads.",
    )
    return score


def score_flags() -> list[str]:
    """``beamscore score``'s own ``--flags`` (for suggestions next to Beam's option names)."""
    parser = _parser()
    return _flags_of(_subparser(parser, "score") or parser)


def _register_score_flags(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Tell :mod:`beamscore.flags` the score command's flags (the runner checks suggest them)."""
    register_score_flags(_flags_of(_subparser(parser, "score") or parser))
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def _flags_of(parser: argparse.ArgumentParser) -> list[str]:
    """The ``--long`` option strings of a (sub)parser, help included."""
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _peek(argv: Sequence[str], flag: str) -> str | None:
    """The value of ``flag`` in ``argv`` (both spellings), read before parsing: how errors of
    the parse itself are formatted (``--log-format``) depends on it."""
    for i, token in enumerate(argv):
        name, sep, value = token.partition("=")
        if name in (flag, flag.replace("-", "_").replace("__", "--")):
            if sep:
                return value
            return argv[i + 1] if i + 1 < len(argv) else None
    return None


def parse(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> tuple[argparse.Namespace, list[str]]:
    """``(args, Beam flags)`` of a command line; raises :class:`UsageError` (or
    :class:`BeamscoreError`) for a mistake, ``SystemExit(0)`` after ``--help``/``--version``.

    beamscore's own flags take ``_`` for ``-`` (``--batch_size``); the other ``--flags`` of
    ``score`` are Beam's, each checked against Beam's option names (:mod:`beamscore.flags`)
    unless ``--import`` may define more."""
    parser = _register_score_flags(parser or _parser())
    command = _command_of(argv)
    sub = _subparser(parser, command) if command else None
    if sub is None:
        args = parser.parse_args(argv)  # --help, --version, or an unknown command: argparse says
        return args, []
    ours = _flags_of(sub)
    head = list(argv[: argv.index(command)])
    rest = [canonical(t, ours) for t in argv[argv.index(command) + 1 :]]
    beam: list[str] = []
    if command == "score":
        rest, beam = split_beam_flags(rest, ours)
    args, extra = parser.parse_known_args([*head, command, *rest])
    flags = [t for t in extra if t.startswith("-")]
    stray = [t for t in extra if not t.startswith("-")]
    if flags:
        error = unknown_flag_error(flags, ours, beam=False)
        raise error or UsageError(f"unrecognized arguments: {' '.join(flags)}")
    if command == "score" and not args.imports:
        error = unknown_flag_error(beam, ours)
        if error is not None:
            raise error
    _resolve_model(args, stray)
    return args, beam


def _resolve_model(args: argparse.Namespace, stray: list[str]) -> None:
    """One ``args.model`` from ``MODEL``, ``--model`` or ``--dir``; anything else is a mistake."""
    if not hasattr(args, "model_arg"):  # report: no model
        if stray:
            raise UsageError(f"unexpected argument {stray[0]!r}")
        return
    if isinstance(args.model, list):  # score, show: --model repeated, NAME=PATH for several models
        args.models = _named_models(args.model, routed=bool(getattr(args, "route_by", None)))
        args.model = None if args.models else (args.model[-1] if len(set(args.model)) == 1 else args.model)
        if isinstance(args.model, list):
            raise UsageError(
                f"unexpected argument {args.model[1]!r}; the model is given once, or several as --model NAME=PATH"
            )
    given = [v for v in (args.model_arg, args.model, getattr(args, "dir", None)) if v]
    if stray or len(set(given)) > 1:
        extra = [*stray, *([args.model_arg] if args.model and args.model_arg else [])]
        hint = "inputs are given with --input, the model once" if args.command == "score" else "the model is given once"
        raise UsageError(f"unexpected argument {extra[0]!r}; {hint} (MODEL or --model)")
    args.model = given[0] if given else None
    if args.command == "show" and (getattr(args, "models", None) or args.config):
        if args.model and getattr(args, "models", None):
            raise UsageError(
                f"unexpected argument {args.model!r}; give the model once, or several as --model NAME=PATH"
            )
        return  # the models are --model NAME=PATH or the config's (checked by _show)
    if not args.model and args.command in ("show", "scan", "run"):
        raise UsageError(
            f"{args.command}: give the SavedModel directory (MODEL, or --model MODEL; --dir MODEL as saved_model_cli)"
        )


def _named_models(given: list[str], routed: bool = False) -> dict[str, dict[str, str]]:
    """``--model NAME=PATH`` repeated -> ``{NAME: {"path": PATH}}`` (empty when no value names
    a model: one unnamed ``--model PATH``). A value is ``NAME=PATH`` when what comes before
    its first ``=`` is a model name and the whole value is no existing local path."""
    from beamscore.config import MODEL_NAME, ROUTE_VALUE

    pattern = ROUTE_VALUE if routed else MODEL_NAME
    named: dict[str, dict[str, str]] = {}
    plain = []
    for value in given:
        name, sep, path = value.partition("=")
        if sep and path and pattern.fullmatch(name) and not os.path.exists(value):
            if name in named:
                raise UsageError(f"--model {name}=... is given twice; each model has its own name")
            named[name] = {"path": path}
        else:
            plain.append(value)
    if named and plain:
        raise UsageError(
            f"--model {plain[0]!r} has no name; with several models give each as --model NAME=PATH "
            f"(e.g. --model champion={plain[0]})"
        )
    return named


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``beamscore`` console script; returns the exit code."""
    argv_given = argv
    if argv is None:
        _exit_on_signal_at_once()
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stderr = sys.stderr
    fmt = _peek(argv, "--log-format")
    lines = StderrLines(stderr, fmt if fmt in LOG_FORMATS else "text", stamp=stamps(stderr))
    sys.stderr = lines
    summary: dict[str, Any] = {}
    json_summary = _command_of(argv) == "score" and any(canonical(a, ["--json"]) == "--json" for a in argv)
    try:
        try:
            args, extra = parse(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else 0
        except BeamscoreError as exc:
            code = _fail(str(exc), EXIT_USAGE, False)
            if json_summary:
                _print_summary(summary, code, lines.last_error)
            return code
        args.summary = summary
        args.program = argv_given is None  # the beamscore program itself, not a host calling main()
        if getattr(args, "model_version", None) is _PRINT_VERSIONS:
            print(program_versions())
            return 0
        code = _run_command(args, extra, lines)
        if getattr(args, "json", False) and args.command == "score":
            _print_summary(summary, code, lines.last_error)
        return code
    finally:
        sys.stderr.flush()
        sys.stderr = stderr


def _run_command(args: argparse.Namespace, extra: list[str], lines: StderrLines) -> int:
    """Set up logging and stderr for the command, then run it (:func:`_dispatch`)."""
    root = logging.getLogger()
    handler = None
    level = root.level
    if not root.handlers:  # as logging.basicConfig: a host (pytest, an app) that logs already keeps its way
        handler = logging.StreamHandler(lines)
        json_logs = lines.fmt == "json"
        handler.setFormatter(
            JsonLogFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
        root.setLevel(logging.INFO if args.debug else logging.WARNING)
    # a host that calls main() gets its loggers back as they were (levels, filters)
    chatty = {name: logging.getLogger(name).level for name in ("apache_beam", "absl", "tensorflow")}
    filtered = [] if args.debug else list(root.handlers)
    if not args.debug:
        for name in chatty:
            logging.getLogger(name).setLevel(logging.ERROR)
        for h in filtered:
            h.addFilter(_third_party_chatter)
    stderr = sys.stderr
    if not args.debug:
        from beamscore._quiet import WithoutBeam

        sys.stderr = WithoutBeam(stderr)
    try:
        with _sigterm_unwinds():
            return _dispatch(args, extra)
    finally:
        sys.stderr = stderr
        for h in filtered:
            h.removeFilter(_third_party_chatter)
        if not args.debug:
            for name, was in chatty.items():
                logging.getLogger(name).setLevel(was)
        if handler is not None:
            root.removeHandler(handler)
            root.setLevel(level)


def _quiet_libraries(args: argparse.Namespace) -> None:
    """Before the first heavy import: TensorFlow without its start-up banner, and the object
    stores' loggers (gcsfs logs each retry as an ERROR with its traceback) at CRITICAL."""
    if args.debug:
        return
    from beamscore._quiet import import_tensorflow_quietly
    from beamscore.stores import STORE_LOGGERS

    import_tensorflow_quietly()
    for name in STORE_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


#: the signals that end a job, and the exit code and words of each
_SIGNALS = {signal.SIGTERM: (143, "terminated (SIGTERM)"), signal.SIGINT: (130, "interrupted")}
if hasattr(signal, "SIGHUP"):  # the terminal or ssh session closed: as SIGTERM, with its own code
    _SIGNALS[signal.SIGHUP] = (exitcodes.EXIT_HANGUP, "hung up (SIGHUP: the terminal or session closed)")
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
    if hasattr(signal, "SIGQUIT"):
        signal.signal(signal.SIGQUIT, _quit_at_once(stderr_fd))


def _quit_at_once(stderr_fd: int) -> Any:
    """SIGQUIT (Ctrl-\\) is the emergency stop, at any moment: one line and exit 131 at
    once, without unwinding (no core dump; a shell that started the job ignoring SIGQUIT, as a
    script's background job, no longer makes it a no-op). The claim is left: with this
    process gone it is stale at once on this machine, and ``--resume`` continues the job."""

    def quit_now(signum: int, frame: object) -> None:
        with contextlib.suppress(Exception):
            os.write(stderr_fd, b"beamscore: error: quit (SIGQUIT) at once, nothing cleaned up; rerun with --resume\n")
        os._exit(exitcodes.EXIT_QUIT)

    return quit_now


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
            raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum=signum)

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
        if args.command == "scan":
            return _scan(args)
        if args.command == "run":
            return _run(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "report":
            from beamscore.report import main as report_main

            return report_main(args.output, html_path=args.html, as_json=args.json)
        return _score(args, extra)
    except RowsFailed as exc:  # the job ran; too many rows failed (outputs and manifest written)
        return _fail(str(exc), EXIT_ROWS_FAILED, args.debug)
    except JobFailed as exc:  # the job crashed: a worker, the runner or a store failed
        return _fail(str(exc), EXIT_CRASHED, args.debug)
    except TryLater as exc:  # no input yet, an empty input, the output held: retry later
        return _fail(str(exc), exitcodes.EXIT_TEMPFAIL, args.debug)
    except BeamscoreError as exc:
        return _fail(str(exc), EXIT_USAGE, args.debug)
    except (KeyboardInterrupt, Terminated) as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        code, what = _SIGNALS.get(signum, _SIGNALS[signal.SIGTERM])
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
        return _fail(f"{type(exc).__name__}: {first_line(str(exc))}{hint}", EXIT_CRASHED, args.debug)


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
    _quiet_libraries(args)
    from beamscore.model.inspect import inspect_model
    from beamscore.show import render_json, render_models_json, render_models_text, render_text

    shown = _shown_models(args)
    if shown is None:  # one model: today's view
        info = inspect_model(args.model, args.model_version)
        _show_warnings(info, "")
        render = render_json if args.json else render_text
        print(render(info, args.tag_set, args.signature, args.all))
        return 0
    views = []
    for name, cfg in shown:
        info = inspect_model(cfg.model, cfg.version)
        _show_warnings(info, f"model {name!r}: ")
        views.append((name, info, cfg.tag_set, cfg.signature))
    print((render_models_json if args.json else render_models_text)(views, args.all))
    return 0


def _shown_models(args: argparse.Namespace) -> list[tuple[str, Any]] | None:
    """``show``'s models as ``(name, config)``, each config's ``model``, ``version``,
    ``tag_set`` and ``signature`` its own where a config's ``models:`` gives them, else the
    flags'; ``None`` for one unnamed model given as ``MODEL`` (today's view)."""
    models = getattr(args, "models", None) or None
    if not models and not args.config:
        return None
    from beamscore.config import ScoreConfig, load_yaml, model_configs

    config = load_yaml(args.config) if args.config else ScoreConfig()
    config = config.merged(
        {
            "model": args.model,
            "models": models,
            "version": args.model_version,
            "signature": args.signature,
            "tag_set": args.tag_set,
        }
    )
    config.check_models()
    if not config.models:
        if not config.model:
            raise UsageError(f"show: {args.config} names no model (model.path or models:)")
        return [("", config)]
    return model_configs(config)


def _show_warnings(info: Any, prefix: str) -> None:
    """What ``show`` warns about on stderr: files the model lacks, and flagged ops (a model is
    code: say so before it is run)."""
    from beamscore.model.scan import scan_model
    from beamscore.scan_view import flag_warnings
    from beamscore.show import warnings

    for warning in [*warnings(info), *flag_warnings(scan_model(info))]:
        print(f"beamscore: warning: {prefix}{warning}", file=sys.stderr)


def _scan(args: argparse.Namespace) -> int:
    """``beamscore scan``: exit 0 when nothing is flagged (or all of it is allowed), 1 otherwise."""
    _quiet_libraries(args)
    from beamscore.model.inspect import inspect_model
    from beamscore.model.scan import check_allow_ops, scan_model
    from beamscore.scan_view import render_json, render_text, select

    allow = check_allow_ops(_op_names(args.allow_ops) or [], "--allow-ops")
    info = inspect_model(args.model, args.model_version)
    scan = select(scan_model(info), args.tag_set, args.signature)
    print((render_json if args.json else render_text)(scan, allow))
    return EXIT_FAILED if scan.flagged(allow) else 0


def _run(args: argparse.Namespace) -> int:
    from beamscore import try_model

    print_options = try_model.parse_print_options(args.print_options)
    feeds = try_model.collect_feeds(
        args.inputs, args.input_exprs, args.input_examples, args.allow_pickle, args.max_input_bytes
    )
    _quiet_libraries(args)
    from beamscore.model.checks import import_modules
    from beamscore.model.inspect import inspect_model

    import_modules(args.imports or [])
    result = try_model.run_signature(
        inspect_model(args.model, args.model_version),
        feeds,
        args.signature,
        args.tag_set,
        imports=args.imports or [],
        allow_ops=_op_names(args.allow_ops) or [],
    )
    if args.outdir is None:
        print(try_model.format_outputs(result.outputs, print_options))
    else:
        paths = try_model.save_outputs(result.outputs, args.outdir, args.overwrite)
        print(try_model.format_saved(result.outputs, paths))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from beamscore import doctor

    _quiet_libraries(args)
    facts = doctor.gather(args.model, args.signature, args.tag_set)
    verdict = doctor.judge(facts)
    print((doctor.render_json if args.json else doctor.render_text)(facts, verdict))
    if args.require_gpu and verdict.status == "cpu":
        return EXIT_FAILED
    return verdict.exit_code


def _score(args: argparse.Namespace, extra: list[str]) -> int:
    from beamscore.config import ScoreConfig, load_yaml

    if args.store_timeout is not None:  # through the environment, so worker processes see it too
        from beamscore.store_watch import MAX_TIMEOUT_S, TIMEOUT_ENV, timeout_rule

        if not 0 < args.store_timeout < MAX_TIMEOUT_S:  # named as given: 0, not '0.0'
            raise UsageError(f"--store-timeout {timeout_rule()}, got {args.store_timeout:g}")
        os.environ[TIMEOUT_ENV] = repr(args.store_timeout)
    config = load_yaml(args.config) if args.config else ScoreConfig()
    config = config.merged(
        {
            "model": args.model,
            "models": getattr(args, "models", None) or None,
            "route_by": args.route_by,
            "max_models_per_worker": args.max_models_per_worker,
            "version": args.model_version,
            "inputs": args.inputs,
            "format": args.format,
            "output": args.output,
            "signature": args.signature,
            "tag_set": args.tag_set,
            "keep": _flatten(args.keep),
            "map": _parse_pairs("--map", "SIGNATURE_INPUT=COLUMN", args.map),
            "outputs": _flatten(args.outputs),
            "batch_size": args.batch_size,
            "batch_multiple": args.batch_multiple,
            "trial": args.trial,
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
            "allow_ops": _op_names(args.allow_ops),
            "plan_on_workers": args.plan_on_workers,
            "table_version": args.table_version,
            "table_as_of": args.table_as_of,
            "where": args.where,
            "raw_files": args.raw_files,
            "allow_empty": args.allow_empty,
            "date": args.date,
        }
    )
    if args.progress_every is not None and not args.progress_every > 0:
        raise UsageError(f"--progress-every must be a number of seconds above 0, got {args.progress_every!r}")
    _check_before_imports(config, args.config)
    from beamscore.pipelines.trial_apart import start_early, stop_child

    early = start_early(config, extra)  # its TensorFlow import beside this process's
    try:
        _quiet_libraries(args)
        if getattr(args, "program", False):
            from beamscore._beam_import import import_beam_for_local_job, local_runner_named

            if local_runner_named(extra, config.pipeline_options):
                import_beam_for_local_job()  # without google-cloud-storage & co., which a local job never uses
        from beamscore.pipelines.score import prepare

        plan, options, warnings = prepare(config, extra, early)  # the path of beamscore.score() too
    finally:
        stop_child(early)  # one that planning did not reach
    from beamscore.pipelines.dry_run import output_state, render_plan

    if args.dry_run:
        from beamscore.pipelines.resume import planned_files

        state = output_state(plan.config.output, config.overwrite, config.resume, config.force, planned_files(plan))
        out = sys.stderr if args.json else sys.stdout
        print(render_plan(plan, options, warnings, state), file=out)
        from beamscore.doctor import dry_run_report

        gpu_report = dry_run_report(options.get_all_options(drop_default=True, retain_unknown_options=True))
        if gpu_report:
            print(f"\n{gpu_report}", file=out)
        args.summary.update(_planned(plan))
        return 0
    for warning in warnings:
        print(f"beamscore: warning: {warning}", file=sys.stderr)
    result = _run_plan(plan, options, args)
    m = result.manifest
    args.summary.update(_finished(plan, result))
    out = sys.stderr if args.json else sys.stdout
    if result.complete:
        print(
            f"already complete: {plan.config.output} was finished by this job on {m.get('finished', '?')} "
            f"(rows in {m['rows_in']:,}, out {m['rows_out']:,}, failed {m['rows_failed']:,}); nothing to do",
            file=out,
        )
        if result.failure:
            print(f"beamscore: error: {result.failure}", file=sys.stderr)
            return EXIT_ROWS_FAILED
        return 0
    rate = (m["rows_out"] - result.rows_resumed) / result.seconds if result.seconds else 0.0  # this run's rows
    print(
        f"scored {_scored(m)} rows in {result.seconds:.1f}s ({rate:,.0f} rows/s) "
        f"with {_models_said(m)} on {result.runner}\n"
        f"  rows in {m['rows_in']:,}, out {m['rows_out']:,}, failed {m['rows_failed']:,}; "
        f"{m['units']} units, {len(m['outputs'])} files"
        + (f" ({result.skipped} units already done, resumed)" if result.skipped else "")
        + _resumed_line(m, result.rows_resumed, result.skipped)
        + _metrics_line(m.get("metrics"))
        + f"\n  run: date {m.get('date') or '?'}, started {m.get('started') or '?'}, "
        f"finished {m.get('finished') or '?'}"
        + f"\n  output: {plan.config.output} (manifest: {plan.config.output.rstrip('/')}/_manifest.json)"
        + _table_line(m.get("table_commit")),
        file=out,
    )
    if result.failure:
        print(f"beamscore: error: {result.failure}", file=sys.stderr)
        return EXIT_ROWS_FAILED
    return 0


def _check_before_imports(config: Any, config_file: str | None) -> None:
    """What can be refused without TensorFlow or Beam, in milliseconds: missing or bad
    settings, a local model that does not exist, a local input that matches no file, a config
    ``pipeline_options`` key that is no Beam option. Paths with a ``{...}`` or ``%`` field are
    left to the plan, which fills them in first."""
    import glob

    config.validate()
    check_config_paths = getattr(config, "check_config_paths", None)  # config-relative paths, named by key
    if check_config_paths is not None:
        check_config_paths()
    if _plain_local(config.model) and not os.path.exists(_local_path(config.model)):
        raise BeamscoreError(f"model {config.model!r} does not exist")
    for name, spec in (getattr(config, "models", None) or {}).items():
        path = spec.get("path", "")
        if _plain_local(path) and not os.path.exists(_local_path(path)):
            raise BeamscoreError(f"model {name!r}: {path!r} does not exist")
    for pattern in config.inputs:
        if _plain_local(pattern):
            path = _local_path(pattern)
            if not os.path.exists(path) and not glob.glob(path, recursive=True):
                raise TryLater(f"input {pattern!r} matches no files")
    if config.pipeline_options and not config.imports:
        from beamscore.flags import beam_options, suggestion

        known = beam_options()
        for key in config.pipeline_options:
            if known is not None and str(key) not in known:
                where = f"{config_file}: pipeline_options" if config_file else "pipeline_options"
                ours = _config_keys()
                hint = suggestion(str(key), [*ours, *known])
                raise BeamscoreError(f"{where}: {key!r} is neither a Beam pipeline option nor a beamscore key{hint}")


def _config_keys() -> list[str]:
    """beamscore's config keys, ``section.key``, for suggestions."""
    from beamscore.config import SECTIONS

    return [f"{section}.{key}" for section, keys in SECTIONS.items() for key in keys]


def _plain_local(path: str) -> bool:
    """A local path (or ``file://`` URL) with no field the plan fills in (``{date}``, ``%Y``)."""
    return bool(path) and ("://" not in path or path.startswith("file://")) and not any(c in path for c in "{%")


def _local_path(path: str) -> str:
    return os.path.expanduser(path.split("://", 1)[1] if "://" in path else path)


def _metrics_line(metrics: dict | None) -> str:
    """``\\n  model loads 2 (1.0 per worker), 12 batches of 4,096 rows, mean batch latency 35.1 ms``."""
    if not metrics:
        return ""
    parts = []
    if metrics.get("model_loads") is not None:
        per = metrics.get("model_loads_per_worker")
        parts.append(f"model loads {metrics['model_loads']}" + (f" ({per:g} per worker)" if per is not None else ""))
    if metrics.get("batches") is not None:
        rows = metrics.get("batch_rows_mean")
        parts.append(f"{metrics['batches']:,} batches" + (f" of {rows:,.0f} rows on average" if rows else ""))
    if metrics.get("batch_latency_ms_mean") is not None:
        parts.append(f"mean batch latency {metrics['batch_latency_ms_mean']:.1f} ms")
    if metrics.get("batch_latency_ms_p50") is not None:
        parts.append(
            "p50/p95/p99 " + "/".join(f"{metrics[f'batch_latency_ms_p{q}']:.1f}" for q in (50, 95, 99)) + " ms"
        )
    stages = metrics.get("stage_seconds")
    line = ("\n  " + ", ".join(parts)) if parts else ""
    if stages:
        line += "\n  time per stage (all workers): " + ", ".join(f"{k} {v:.2f}s" for k, v in stages.items())
    return line


def _resumed_line(manifest: dict, rows_resumed: int, units_resumed: int) -> str:
    """A resumed run's own rows apart from those an earlier run wrote (``rows_resumed``)."""
    if not units_resumed:
        return ""
    own = manifest["rows_out"] - rows_resumed
    return f"\n  this run: {own:,} rows out; reused from an earlier run: {rows_resumed:,} rows in {units_resumed} units"


def _planned(plan: Any) -> dict[str, Any]:
    """The ``--json`` summary's facts of a dry run."""
    return {
        "dry_run": True,
        "output": plan.config.output,
        "model": plan.model.path,
        "fingerprint": plan.model.fingerprint,
        "rows_planned": None if plan.on_workers else sum(u.rows for u in plan.units),
        "units_planned": None if plan.on_workers else len(plan.units),
        "files": len(plan.files),
    }


def _finished(plan: Any, result: Any) -> dict[str, Any]:
    """The ``--json`` summary's facts of a finished job, from its manifest."""
    m = result.manifest
    output = plan.config.output
    return {
        "status": m.get("status"),
        "rows_in": m["rows_in"],
        "rows_out": m["rows_out"],
        "rows_failed": m["rows_failed"],
        "seconds": round(result.seconds, 3),
        "output": output,
        "manifest": f"{output.rstrip('/')}/_manifest.json",
        "model": m["model"]["path"],
        "fingerprint": m["model"].get("fingerprint"),
        "signature": m["model"].get("signature"),
        "units": m.get("units"),
        "units_resumed": result.skipped,
        "rows_resumed": result.rows_resumed,
        "rows_out_this_run": m["rows_out"] - result.rows_resumed,
        "runner": result.runner,
        "already_complete": result.complete,
        "metrics": m.get("metrics"),
        # the run's --date and times, as the text summary's "run:" line
        "date": m.get("date"),
        "started": m.get("started"),
        "finished": m.get("finished"),
    }


#: the ``status`` of ``--json``'s summary for each exit code (the manifest's own status wins)
STATUS_OF_EXIT = {
    exitcodes.EXIT_OK: "succeeded",
    exitcodes.EXIT_ROWS_FAILED: "failed",
    exitcodes.EXIT_USAGE: "refused",
    exitcodes.EXIT_CRASHED: "crashed",
    exitcodes.EXIT_TEMPFAIL: "retry_later",
    exitcodes.EXIT_HANGUP: "hung_up",
    exitcodes.EXIT_INTERRUPTED: "interrupted",
    exitcodes.EXIT_TERMINATED: "terminated",
}


def _print_summary(summary: dict[str, Any], code: int, error: str | None) -> None:
    """``--json``: the job's summary as one JSON line, the last line on stdout, whatever the
    outcome (a refusal and a crash too: ``status``, ``exit_code`` and ``error`` say which)."""
    status = STATUS_OF_EXIT.get(code, "crashed")
    if code in (exitcodes.EXIT_OK, exitcodes.EXIT_ROWS_FAILED) and summary.get("status"):
        status = summary["status"]  # the manifest's own word
    elif code == exitcodes.EXIT_OK and summary.get("dry_run"):
        status = "planned"
    line = {**summary, "status": status, "exit_code": code, "error": error if code else None}
    line = {"status": status, "exit_code": code, **{k: v for k, v in line.items() if k not in ("status", "exit_code")}}
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()


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


def _table_line(commit: Any) -> str:
    """Where a table output's files were committed (``--output-format delta``), or nothing."""
    if not isinstance(commit, dict):
        return ""
    line = f"\n  committed to Delta table {commit.get('table')} as version {commit.get('version')}"
    replaced = commit.get("replaced")
    if isinstance(replaced, dict):
        line += f", replacing partition {' AND '.join(f'{c} = {v!r}' for c, v in replaced.items())}"
    return line


def _models_said(manifest: dict) -> str:
    """``PATH [SIGNATURE]`` of the model, or ``NAME (PATH [SIGNATURE])`` of each of several."""
    several = manifest.get("models")
    if several:
        return ", ".join(f"{m['name']} ({m['path']} [{m['signature']}])" for m in several)
    return f"{manifest['model']['path']} [{manifest['model']['signature']}]"


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

    progress = {"progress": args.progress, "progress_every": args.progress_every}
    if args.debug or not local_worker_processes(options):
        return run_plan(plan, options, **progress)
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
            return run_plan(plan, options, **progress)
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
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone (EIO)
        print(f"beamscore: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
