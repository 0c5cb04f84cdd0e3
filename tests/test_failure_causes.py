"""Every worker failure carries its cause to the launcher's one line (issue 33, item 4): the
exception's type and informative first line, and the file, unit and stage, without --debug,
in this process and from worker processes (whose failures come back as traceback text)."""

from __future__ import annotations

import pytest
import shape_models
from builders import write_parquet_shards
from cli_runs import error_lines, run_cli

from beamscore.errors import describe_failure

#: what Beam hands back when a worker process's bundle failed in a TensorFlow op (a jax2tf
#: export for CUDA only, called on CPU): the real error is deep in the text, on several lines
JAX2TF_TEXT = """Traceback (most recent call last):
  File "apache_beam/runners/common.py", line 1501, in process
    return self.do_fn_invoker.invoke_process(windowed_value)
  File "beamscore/model/runner.py", line 97, in __call__
    result = self.fn(**feeds)
tensorflow.python.framework.errors_impl.NotFoundError: Graph execution error:

Detected at node XlaCallModule defined at (most recent call last):
  File "<embedded stdlib>/threading.py", line 1002, in _bootstrap

The current platform CPU is not among the platforms required by the module: [CUDA]
\t [[{{node XlaCallModule}}]] [Op:__inference_signature_wrapper_99] [while running 'Run/Score']
"""


def test_a_traceback_text_gives_its_real_exception_and_first_informative_line():
    assert describe_failure(RuntimeError(JAX2TF_TEXT)) == (
        "NotFoundError: The current platform CPU is not among the platforms required by the module: [CUDA]"
    )
    ours = JAX2TF_TEXT + "beamscore.model.runner.ModelFailed: a.parquet (unit 0, rows 0-9): the model failed\n"
    assert describe_failure(RuntimeError(ours)) == "a.parquet (unit 0, rows 0-9): the model failed"


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("causes")
    paths = shape_models.build(str(root / "models"))
    files, _, _ = write_parquet_shards(str(root / "data"), rows=40, shards=1)
    return paths["broken"], files[0]


def test_an_unexpected_error_in_the_model_stage_names_file_unit_and_stage(broken, tmp_path, monkeypatch):
    """An exception none of our checks expected (here a RuntimeError from the signature call)."""
    from beamscore.model.runner import SignatureRunner

    model, data = broken

    def fails(self, columns, where="batch"):
        raise RuntimeError("device lost\nsecond line")

    monkeypatch.setattr(SignatureRunner, "__call__", fails)
    run = run_cli("score", "--model", model, "--input", data, "--output", str(tmp_path / "out"), "--no-trial")
    assert run.code == 3, run.stderr
    (line,) = error_lines(run.stderr)
    assert line == f"beamscore: error: the job failed: {data} (part-00000-00000): model: RuntimeError: device lost"


@pytest.mark.slow
def test_worker_processes_send_the_models_error_to_the_launchers_line(broken, tmp_path):
    model, data = broken
    multi = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
    run = run_cli("score", "--model", model, "--input", data, "--output", str(tmp_path / "out"), "--no-trial", *multi)
    assert run.code == 3, run.stderr
    line = [x for x in run.stderr.strip().splitlines() if "error" in x][-1]
    assert f"the job failed: {data} (unit 0, rows 0-39): the model failed on all 40 rows" in line
    assert "this model cannot run here" in line and "Traceback" not in run.stderr
