"""Start-up work a job does not repeat or need: TensorFlow imported without Keras, Beam's
option views made once, the model inspected once per process on a local runner."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys

import numpy as np
from conftest import direct_call, read_output
from scores import assert_scores_close

from beamscore.errors import BeamscoreError as BeamscoreErrorBase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tensorflow_is_imported_without_keras_and_a_keras_export_still_scores(models, shards, tmp_path):
    """The CLI's TensorFlow import skips Keras (a fifth of the import); a model Keras
    exported still loads and scores, and ``import keras`` works afterwards."""
    paths, ids, x = shards
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "from beamscore._quiet import import_tensorflow_quietly\n"
        "import_tensorflow_quietly()\n"
        "assert 'tensorflow' in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)[:5]\n"
        "from beamscore.cli import main\n"
        f"code = main(['score', '--model', {models['keras']!r}, '--input', {paths[1]!r}, '--output', {str(out)!r},"
        " '--map', 'features=x', '--keep', 'id'])\n"
        "import keras, tensorflow as tf\n"
        "assert tf.keras.layers.Dense(2)(tf.zeros([1, 3])).shape == (1, 2)\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    table = read_output(str(out))
    rows = np.isin(ids, table["id"].to_numpy())
    expected = direct_call(models["keras"], "serving_default", features=x[rows])
    assert_scores_close(np.stack(table["output_0"].to_numpy(zero_copy_only=False)), expected["output_0"])


def test_option_views_are_made_once_and_stay_current():
    from apache_beam.options.pipeline_options import StandardOptions, TypeOptions

    from beamscore.pipelines.runners import pipeline_options

    options = pipeline_options(["--runner=DirectRunner"], {})
    view = options.view_as(StandardOptions)
    assert options.view_as(StandardOptions) is view
    view.streaming = True  # a view writes through to the options and to every other view
    assert options.get_all_options()["streaming"] and options.view_as(StandardOptions).streaming
    assert options.view_as(TypeOptions).pipeline_type_check
    for other in (copy.deepcopy(options), pickle.loads(pickle.dumps(options))):
        assert "_views" not in other.__dict__  # a copy makes its own views, of its own values
        assert other.view_as(StandardOptions).streaming
        other.view_as(StandardOptions).streaming = False
        assert options.view_as(StandardOptions).streaming


def test_a_local_load_takes_the_launchers_inspection(models, shards, tmp_path, monkeypatch):
    """On a local runner the worker's load reuses the plan's MetaGraph: saved_model.pb is
    read and parsed once by beamscore (TensorFlow's loader reads it once more itself)."""
    from beamscore.config import ScoreConfig
    from beamscore.errors import BeamscoreError
    from beamscore.model import loader
    from beamscore.pipelines.plan import plan_job

    paths, _, _ = shards
    plan = plan_job(ScoreConfig(model=models["two_sig"], inputs=[paths[0]], output=str(tmp_path / "o"), keep=["id"]))

    def again(*args, **kwargs):
        raise AssertionError("the model was inspected again")

    monkeypatch.setattr(loader, "inspect_model", again)
    monkeypatch.setattr(loader, "_PRELOADED", {})  # an earlier in-process job's launcher load is not this test's
    loaded = loader.load_model(plan.spec)
    assert loaded.meta_graph is plan.model.meta_graph(plan.config.tag_set)
    other = loader.ModelSpec(path=plan.spec.path, fingerprint="another")  # not the model inspected
    try:
        loader.load_model(other)
    except AssertionError:
        pass
    else:
        raise BeamscoreError("a model of another fingerprint took the remembered inspection")


#: what the program's Beam import leaves out on a local runner (beamscore._beam_import)
_HIDDEN = ("google.cloud.storage", "boto3", "pymongo")


def _job_in_a_process(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def _one_file_job(models, shards, out) -> list[str]:
    """``beamscore score`` arguments of a job on the first shard (one unit), into ``out``."""
    return ["score", models["two_sig"], "--input", shards[0][0], "--output", str(out), "--keep", "id", "--no-progress"]


def test_the_program_imports_beam_without_cloud_clients_and_they_import_after(models, shards, tmp_path):
    """``beamscore score`` on a local runner imports Beam without google-cloud-storage, boto3
    and pymongo (installed here; Beam imports them only because they are): the job scores
    without any of them imported, and each imports afterwards in the same process."""
    _, ids, x = shards
    out = tmp_path / "out"
    code = (
        "import sys\n"
        f"sys.argv = {['beamscore', *_one_file_job(models, shards, out)]!r}\n"
        "from beamscore.cli import main\n"
        "code = main()\n"
        f"seen = [m for m in {_HIDDEN!r} if m in sys.modules]\n"
        "assert code == 0 and 'apache_beam' in sys.modules and not seen, (code, seen)\n"
        "import google.cloud.storage, boto3, pymongo, gcsfs\n"
        "assert google.cloud.storage.Client and boto3.client and pymongo.MongoClient\n"
    )
    done = _job_in_a_process(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bson" not in done.stderr and "Failed to import" not in done.stderr, done.stderr
    table = read_output(str(out))
    rows = np.isin(ids, table["id"].to_numpy())
    expected = direct_call(models["two_sig"], "serving_default", x=x[rows])
    assert_scores_close(np.stack(table["scores"].to_numpy(zero_copy_only=False)), expected["scores"])


def test_a_host_calling_main_imports_beam_as_usual(models, shards, tmp_path):
    """``cli.main(argv)`` in a user's process (a library call) leaves Beam's import alone:
    Beam's own ``gs://`` filesystem is registered there as everywhere else."""
    code = (
        "import sys\n"
        "from beamscore.cli import main\n"
        f"assert main({_one_file_job(models, shards, tmp_path / 'out')!r}) == 0\n"
        "from apache_beam.io.filesystems import FileSystems\n"
        "assert 'google.cloud.storage' in sys.modules and 'apache_beam.io.gcp.gcsfilesystem' in sys.modules\n"
        "assert FileSystems.get_filesystem('gs://bucket/x').scheme() == 'gs'\n"
    )
    done = _job_in_a_process(code)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_local_runner_is_told_from_the_flags_alone():
    from beamscore._beam_import import local_runner_named

    assert local_runner_named([], {})
    assert local_runner_named(["--runner=DirectRunner", "--direct_num_workers=2"], None)
    assert local_runner_named(["--runner", "FnApiRunner"], {"runner": "DirectRunner"})
    assert local_runner_named(["--runner=direct"], {"runner": "fnapirunner"})  # as Beam reads them
    assert not local_runner_named(["--runner=DataflowRunner", "--project=p"], {})
    assert not local_runner_named(["--runner", "PortableRunner"], {})
    assert not local_runner_named([], {"runner": "DataflowRunner"})
    assert not local_runner_named(["--runner=DirectRunner"], {"runner": "DaskRunner"})
    assert not local_runner_named(["--runner"], {})  # no value: Beam decides, Beam imported as usual


def test_a_workers_doctor_verdict_reads_no_other_distributions_metadata(monkeypatch):
    """Each worker logs the doctor's verdict when it loads the model (``worker_device``):
    TensorFlow's distributions are looked up by name, and the scan of every installed
    distribution's metadata (for CUDA wheels) is left out where nvidia-smi lists no GPU:
    0.075 of a worker's set-up CPU seconds here before."""
    import importlib.metadata
    import re

    from beamscore import doctor

    everything = {}
    for dist in importlib.metadata.distributions():  # as the doctor found them before
        name = re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "")).lower()
        if name in doctor.TF_DISTRIBUTIONS:
            everything[name] = dist.version
    scans = []
    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda **kw: scans.append(kw) or real(**kw))
    facts = doctor.gather(gpu_memory=False)
    assert facts.tf_distributions == dict(sorted(everything.items())) != {}
    assert bool(scans) == bool(facts.nvidia_gpus)  # a GPU machine still lists its CUDA wheels
    assert doctor.judge(facts).status in ("ok", "cpu")


def test_a_command_line_without_beam_flags_leaves_beams_option_names_unread():
    """Beam's option names come from parsing Beam's option sources (a few hundredths of a
    second): a ``score`` command line without Beam flags does not need them."""
    from beamscore.cli import parse
    from beamscore.flags import beam_options

    beam_options.cache_clear()
    _, beam = parse(["score", "m", "--input", "x", "--output", "o", "--batch-size", "64", "--keep", "id"])
    assert beam == [] and beam_options.cache_info().misses == 0
    _, beam = parse(["score", "m", "--input", "x", "--output", "o", "--runner", "DirectRunner", "--project", "p"])
    assert beam == ["--runner", "DirectRunner", "--project", "p"] and beam_options.cache_info().misses == 1
    try:
        parse(["score", "m", "--input", "x", "--output", "o", "--runer=DirectRunner"])
    except BeamscoreErrorBase as exc:
        assert "--runner" in str(exc)
    else:
        raise AssertionError("a misspelt Beam flag passed")


def test_a_one_unit_job_starts_one_local_worker_thread(models, shards, tmp_path):
    """A second FnApiRunner worker thread would only be started and set up for a job of one
    unit; a job of more units, or one whose units are not known yet, gets two; the user's
    ``--direct_num_workers`` always wins."""
    from apache_beam.options.pipeline_options import DirectOptions

    from beamscore.config import ScoreConfig
    from beamscore.pipelines.runners import describe_runner, pipeline_options
    from beamscore.pipelines.score import prepare

    def workers(options):
        direct = options.view_as(DirectOptions)
        return direct.direct_running_mode, direct.direct_num_workers

    paths, _, _ = shards
    config = ScoreConfig(model=models["two_sig"], output=str(tmp_path / "o"), keep=["id"])
    plan, options, _ = prepare(config.merged({"inputs": [paths[0]]}))
    assert len(plan.units) == 1 and workers(options) == ("multi_threading", 1)
    assert describe_runner(options).endswith(": 1 thread in this process")
    plan, options, _ = prepare(config.merged({"inputs": list(paths)}))
    assert len(plan.units) == 2 and workers(options) == ("multi_threading", 2)
    assert workers(pipeline_options([], {})) == workers(pipeline_options([], {}, units=9)) == ("multi_threading", 2)
    assert workers(pipeline_options(["--direct_num_workers=2"], {}, units=1))[1] == 2


def test_the_program_still_scores_to_a_bucket_after_the_lighter_beam_import(models, shards, tmp_path):
    """Beam's own ``gs://`` filesystem is left out of the program's import on a local runner;
    beamscore's stores (gcsfs, which imports google-cloud-storage itself) work as before: a
    job to a GCS emulator's bucket scores every row."""
    from gcs_emulator import gcs_emulator

    paths = shards[0]
    with gcs_emulator(tmp_path, "startup") as fs:
        args = ["score", models["two_sig"], "--input", paths[0], "--output", "gs://startup/out", "--keep", "id"]
        done = subprocess.run(
            [sys.executable, "-m", "beamscore", *args, "--no-progress"],
            env={**os.environ, "FSSPEC_GCS_TOKEN": "anon", "TF_CPP_MIN_LOG_LEVEL": "3"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        fs.invalidate_cache()
        assert fs.exists("startup/out/_SUCCESS")
        with fs.open("startup/out/_manifest.json") as f:
            manifest = json.load(f)
    assert manifest["rows_out"] == manifest["rows_in"] == 350 and manifest["rows_failed"] == 0


def test_a_local_worker_process_imports_beam_the_lighter_way():
    """``beamscore.worker_main`` (the SDK worker processes of a local ``multi_processing``
    run) imports Beam as the program does; Beam's worker entry point imports after it."""
    code = (
        "import sys\n"
        "from beamscore import worker_main\n"
        "worker_main.import_beam()\n"
        f"seen = [m for m in {_HIDDEN!r} if m in sys.modules]\n"
        "assert 'apache_beam' in sys.modules and not seen, seen\n"
        "from apache_beam.runners.worker import sdk_worker_main\n"
        "assert callable(sdk_worker_main.main)\n"
    )
    done = _job_in_a_process(code)
    assert done.returncode == 0, done.stderr[-3000:]


#: the modules of formats a Parquet-to-Parquet job does not use
_OTHER_FORMATS = ("beamscore.io.tfrecord", "beamscore.io.npz", "beamscore.io.npy", "beamscore.io.delta_sink")


def test_a_parquet_job_imports_no_other_formats_modules_and_they_import_on_use(models, shards, tmp_path):
    """Sources and sinks are imported when their format is used: a Parquet job imports none
    of TFRecord's, npz's, npy's or Delta's modules, and each still answers afterwards."""
    out = tmp_path / "out"
    assert shards[0][0].endswith(".parquet")
    code = (
        "import sys\n"
        f"sys.argv = {['beamscore', *_one_file_job(models, shards, out)]!r}\n"
        "from beamscore.cli import main\n"
        "code = main()\n"
        f"seen = [m for m in {_OTHER_FORMATS!r} if m in sys.modules]\n"
        "assert code == 0 and not seen, (code, seen)\n"
        "import beamscore.io as bio\n"
        "assert bio.TFRecordSource.format == 'tfrecord' and bio.SINKS['delta'].format == 'delta'\n"
        "assert sorted(bio.SOURCES) == ['feather', 'npy', 'npz', 'orc', 'parquet', 'tfrecord']\n"
        "assert [bio.SOURCES[f].format for f in bio.SOURCES] == list(bio.SOURCES)\n"
        f"assert all(m in sys.modules for m in {_OTHER_FORMATS!r})\n"
    )
    done = _job_in_a_process(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "_SUCCESS").exists()
