"""Local runs default to two FnApiRunner threads; any explicit choice of mode or workers wins."""

from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions

from beamscore.pipelines.runners import LOCAL_THREADS, pipeline_options


def _direct(flags, config=None):
    options = pipeline_options(flags, config or {})
    direct = options.view_as(DirectOptions)
    return direct.direct_running_mode, direct.direct_num_workers


def test_local_default_is_two_threads():
    assert _direct([]) == ("multi_threading", LOCAL_THREADS) == ("multi_threading", 2)
    assert _direct(["--runner=DirectRunner"]) == ("multi_threading", 2)


def test_explicit_choices_win():
    assert _direct(["--direct_running_mode=in_memory"]) == ("in_memory", 1)
    assert _direct(["--direct_num_workers=3"])[1] == 3
    assert _direct([], {"direct_running_mode": "multi_processing", "direct_num_workers": 2}) == (
        "multi_processing",
        2,
    )


def test_remote_runners_are_untouched():
    assert _direct(["--runner=PortableRunner", "--job_endpoint=localhost:1"]) == ("in_memory", 1)


def test_local_worker_processes_get_the_worker_log_level_options():
    """Made directly, Beam's FnApiRunner hands its worker processes no pipeline options: the
    log level flags reach them through the runner's provision info."""
    from beamscore.pipelines.runners import local_worker_processes, make_runner

    flags = ["--direct_running_mode=multi_processing", "--default_sdk_harness_log_level=ERROR"]
    options = pipeline_options([*flags, '--sdk_harness_log_level_overrides={"absl": "CRITICAL"}'], {})
    assert local_worker_processes(options)
    given = make_runner(options)._provision_info.provision_info.pipeline_options
    assert given["beam:option:default_sdk_harness_log_level:v1"] == "ERROR"
    assert dict(given["beam:option:sdk_harness_log_level_overrides:v1"]) == {"absl": "CRITICAL"}
    assert not local_worker_processes(pipeline_options([], {}))  # threads by default
    assert not local_worker_processes(pipeline_options(["--runner=DataflowRunner"], {}))
