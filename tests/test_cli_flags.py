"""The command line itself: strict flags, both spellings, fail-fast checks, help and versions.

Most tests call ``beamscore.cli.main`` in this process; the import test runs a fresh
interpreter, where ``sys.modules`` shows what a command really imported.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest

from beamscore import exitcodes
from beamscore.cli import main, parse, program_versions
from beamscore.errors import BeamscoreError
from beamscore.flags import beam_options, split_beam_flags, suggestion


def one_error(capsys, argv: list[str]) -> str:
    """Run ``argv``, expect exit 2 and exactly one line on stderr; return that line."""
    assert main(argv) == exitcodes.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("beamscore: error: "), err
    return err.strip()


@pytest.mark.parametrize(
    ("flag", "nearest"),
    [
        (["--batch_sise", "10"], "--batch-size"),
        (["--keeep", "id"], "--keep"),
        (["--max-failed-row=3"], "--max-failed-rows"),
        (["--direct_num_wokers=2"], "--direct_num_workers"),  # Beam's own names are suggested too
        (["--runer=DataflowRunner"], "--runner"),
    ],
)
def test_a_mistyped_flag_is_refused_with_the_nearest_name(capsys, tmp_path, flag, nearest):
    line = one_error(capsys, ["score", "m", "--input", "x", "--output", str(tmp_path), *flag])
    assert line.endswith(f"; did you mean {nearest}?"), line
    assert f"unknown option {flag[0].split('=')[0]} " in line


def test_mistakes_in_other_commands_name_the_flag(capsys):
    assert one_error(capsys, ["show", "m", "--signatur", "x"]) == (
        "beamscore: error: unknown option --signatur (not a flag of this command); did you mean --signature?"
    )
    assert "unknown option --bogus" in one_error(capsys, ["doctor", "--bogus"])
    assert "invalid int value: 'many'" in one_error(capsys, ["score", "m", "--batch-size", "many"])
    assert "see beamscore score --help" in one_error(capsys, ["score", "m", "--batch-size", "many"])


def test_beamscore_flags_take_both_spellings_and_beam_flags_pass_through():
    args, beam = parse(
        [
            "score",
            "--batch_size",
            "7",
            "--max_failed_rows=3",
            "--output_format",
            "npy",
            "--rows_per_unit",
            "9",
            "--dry_run",
            "--input",
            "in.parquet",
            "--output",
            "out",
            "--model",
            "m",
            "--runner=DaskRunner",
            "--dask_client_address",
            "tcp://10.0.0.1:8786",
            "--streaming",
            "--project",
            "p",
            "--flink_master=h:8081",
            "--experiments=a",
            "--experiments",
            "b",
        ]
    )
    assert (args.batch_size, args.max_failed_rows, args.output_format, args.rows_per_unit) == (7, 3, "npy", 9)
    assert args.dry_run and args.model == "m"
    assert beam == [
        "--runner=DaskRunner",
        "--dask_client_address",
        "tcp://10.0.0.1:8786",
        "--streaming",
        "--project",
        "p",
        "--flink_master=h:8081",
        "--experiments=a",
        "--experiments",
        "b",
    ]


def test_model_is_given_the_same_way_in_every_command(capsys):
    for command in ("show", "run", "score", "doctor"):
        assert parse([command, "models/m"])[0].model == "models/m"
        assert parse([command, "--model", "models/m"])[0].model == "models/m"
    assert parse(["show", "--dir", "models/m"])[0].model == "models/m"  # saved_model_cli's spelling
    # a boolean Beam flag does not swallow MODEL; a Beam flag's value is not MODEL
    args, beam = parse(["score", "--streaming", "models/m", "--project", "p", "--input", "x", "--output", "o"])
    assert args.model == "models/m" and beam == ["--streaming", "--project", "p"]
    assert parse(["doctor"])[0].model is None
    line = one_error(capsys, ["score", "--model", "models/m", "--input", "x", "--output", "o", "other/m"])
    assert "unexpected argument 'other/m'; inputs are given with --input, the model once (MODEL or --model)" in line
    assert "give the SavedModel directory (MODEL, or --model MODEL;" in one_error(capsys, ["run"])


def test_model_version_flag_and_its_old_spelling(models, capsys):
    assert main(["show", models["versioned"], "--model-version", "1", "--json"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert main(["show", models["versioned"], "--version", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == new and new["version"] == "1"
    assert parse(["score", "m", "--version", "3"])[0].model_version == 3
    # without a number, --version is the program's versions, in every command
    assert main(["show", "m", "--version"]) == 0
    assert capsys.readouterr().out.startswith("beamscore    ")


def test_version_prints_every_component_from_package_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["--version"])
    assert exit_.value.code == 0
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out == program_versions() + "\n" + program_versions() + "\n"
    lines = dict(line.split(None, 1) for line in program_versions().splitlines())
    assert lines["apache-beam"] == importlib.metadata.version("apache-beam")
    assert lines["pyarrow"] == importlib.metadata.version("pyarrow")
    assert lines["tensorflow"].split()[0] == importlib.metadata.version("tensorflow-cpu")
    assert set(lines) == {"beamscore", "tensorflow", "apache-beam", "pyarrow", "python"}


def test_score_help_groups_defaults_examples_and_exit_codes(capsys):
    assert main(["score", "--help"]) == 0
    text = capsys.readouterr().out
    for group in ("model:", "input:", "output:", "job:", "runner:"):
        assert f"\n{group}\n" in text, group
    assert text.index("\nmodel:") < text.index("--signature KEY") < text.index("\ninput:") < text.index("--keep")
    from beamscore.io.parquet import DEFAULT_ROWS_PER_UNIT
    from beamscore.pipelines.plan import MAX_DEFAULT_BATCH, PLAN_ON_WORKERS_ABOVE, TARGET_BATCH_BYTES

    flat = " ".join(text.split())
    assert f"default: {MAX_DEFAULT_BATCH}, fewer for wide rows: about {TARGET_BATCH_BYTES >> 20} MiB" in flat
    assert f"default: {DEFAULT_ROWS_PER_UNIT:,}" in flat and f"above {PLAN_ON_WORKERS_ABOVE:,} files" in flat
    assert "default: 30" in flat and "default: parquet" in flat and "default: serving_default" in flat
    assert flat.count("required:") == 3  # MODEL, --input, --output (or from --config)
    examples = text.split("\nexamples:\n", 1)[1].split("\nexit codes:\n")[0]
    assert examples.count("  beamscore score ") == 3
    table = text.split("\nexit codes:\n", 1)[1]
    for code in (0, 1, 2, 3, 75, 129, 130, 143):
        assert f"\n  {code:<5}" in "\n" + table, code
    assert "_SUCCESS" in table and "--resume continues" in table
    assert "EX_TEMPFAIL" in table and "--allow-empty" in table
    assert main(["--help"]) == 0
    assert "exit codes:" in capsys.readouterr().out
    assert main(["report", "--help"]) == 0
    assert "\n  75   unfinished: still being written, or interrupted" in capsys.readouterr().out


def test_fast_checks_before_the_model_and_data_are_read(tmp_path, capsys):
    config = tmp_path / "job.yaml"
    config.write_text("model: [unclosed\n")
    assert "not valid YAML" in one_error(capsys, ["score", "--config", str(config)])
    assert "missing --model, --input, --output" in one_error(capsys, ["score"])
    line = one_error(capsys, ["score", str(tmp_path / "none"), "--input", "x", "--output", str(tmp_path / "o")])
    assert line == f"beamscore: error: model '{tmp_path / 'none'}' does not exist"
    # no input yet: exit 75, try again later (exitcodes.EXIT_TEMPFAIL)
    assert main(["score", str(tmp_path), "--input", f"{tmp_path}/*.parquet", "--output", "o"]) == 75
    assert capsys.readouterr().err == f"beamscore: error: input '{tmp_path}/*.parquet' matches no files\n"
    # the value as given (it said "between 0 and 86400, got '0.0'", and 0 is not allowed)
    for given, shown in (("0", "0"), ("86400", "86400"), ("-1.5", "-1.5")):
        line = one_error(capsys, ["score", str(tmp_path), "--input", "x", "--output", "o", "--store-timeout", given])
        assert line == (
            "beamscore: error: --store-timeout must be a number of seconds above 0 and below 86400 (a day), "
            f"got {shown}"
        )
    assert "--progress-every must be a number of seconds above 0" in one_error(
        capsys, ["score", str(tmp_path), "--input", str(config), "--output", "o", "--progress-every", "0"]
    )


def test_help_version_and_mistakes_import_neither_tensorflow_nor_beam(tmp_path):
    """In a fresh interpreter: none of these imports TensorFlow or Beam (each would cost seconds)."""
    config = tmp_path / "job.yaml"
    config.write_text("pipeline_options:\n  runer: DataflowRunner\n")
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, sys, time
        from beamscore.cli import main
        runs = [
            ["--help"], ["score", "--help"], ["show", "--help"], ["--version"],
            ["score"],
            ["score", "{tmp_path}/missing", "--input", "x", "--output", "o"],
            ["score", "{tmp_path}", "--input", "{tmp_path}/*.tfrecord", "--output", "o"],
            ["score", "{tmp_path}", "--input", "{config}", "--output", "o", "--batch_sise", "3"],
            ["score", "--config", "{config}", "--model", "{tmp_path}", "--input", "{config}", "--output", "o"],
            ["show", "m", "--bogus"],
        ]
        seen = []
        for argv in runs:
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                code = main(argv)
            seen.append([argv, code, round(time.perf_counter() - start, 3), err.getvalue()])
        heavy = sorted(m for m in ("tensorflow", "apache_beam") if m in sys.modules)
        print(json.dumps({{"runs": seen, "heavy": heavy}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    codes = [code for _argv, code, _s, _err in report["runs"]]
    assert codes == [0, 0, 0, 0, 2, 2, 75, 2, 2, 2]  # 75: no input matches yet, try again later
    errors = [err for *_x, err in report["runs"][4:]]
    assert all(err.count("\n") == 1 for err in errors), errors
    assert "'runer' is neither a Beam pipeline option nor a beamscore key; did you mean runner?" in errors[4]


def test_suggestions_and_beam_names():
    known = beam_options()
    assert known is not None and known["runner"] and not known["streaming"]  # --streaming takes no value
    assert known["dask_client_address"]  # DaskRunner's options, known before Beam's dask module is imported
    assert suggestion("--batch_sise", ["--batch-size", "--keep"]) == "; did you mean --batch-size?"
    assert suggestion("--zzz", ["--batch-size"]) == ""
    assert split_beam_flags(["--keep", "a", "--job_name", "n", "--save_main_session", "m"], ["--keep"]) == (
        ["--keep", "a", "m"],
        ["--job_name", "n", "--save_main_session"],
    )


def test_unknown_beam_option_is_refused_from_python_too(models, shards, tmp_path):
    from beamscore.pipelines.score import score

    with pytest.raises(BeamscoreError, match=r"unknown option --direct_num_wokers .*did you mean --direct_num_workers"):
        score(models["two_sig"], shards[0][0], str(tmp_path / "o"), beam_args=["--direct_num_wokers=2"])
    assert not os.path.exists(tmp_path / "o")


def test_the_docs_examples_of_flags_and_versions(capsys):
    import shlex

    from docs_blocks import console_commands, docs_block

    ((command, output),) = console_commands(docs_block("cli.md", "mistyped-flag"))
    assert main(shlex.split(command)[1:]) == 2
    assert capsys.readouterr().err.splitlines() == output
    ((command, output),) = console_commands(docs_block("cli.md", "versions"))
    assert command == "beamscore --version"
    assert [line.split()[0] for line in output] == [line.split()[0] for line in program_versions().splitlines()]
