"""Remote models reach workers as one local copy per machine, despite flaky storage.

The storage here is fsspec's in-memory filesystem behind a small fake that fails the first
``get`` calls the way a network does and counts the calls; the copied model is then loaded
by TensorFlow and called.
"""

from __future__ import annotations

import threading

import fsspec
import numpy as np
import pytest
from conftest import direct_call
from fsspec.implementations.memory import MemoryFileSystem
from scores import assert_scores_close

from beamscore.errors import BeamscoreError
from beamscore.model import loader
from beamscore.model.loader import ModelSpec, is_transient, load_model, local_copy


class FlakyFileSystem(MemoryFileSystem):
    """``flaky://``: the memory filesystem whose next ``fail`` copies raise ``error``."""

    protocol = "flaky"
    gets = 0
    fail = 0
    error: Exception = ConnectionResetError("connection reset by peer")
    lock = threading.Lock()

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("flaky://"))

    def get(self, rpath, lpath, recursive=False, **kwargs):
        with self.lock:
            type(self).gets += 1
            failing = type(self).fail > 0
            type(self).fail -= failing
        if failing:
            raise self.error
        return super().get(rpath, lpath, recursive=recursive, **kwargs)


fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)


@pytest.fixture
def remote_model(models, monkeypatch, tmp_path) -> str:
    FlakyFileSystem.store.clear()
    FlakyFileSystem.pseudo_dirs.clear()
    FlakyFileSystem.gets, FlakyFileSystem.fail = 0, 0
    FlakyFileSystem.error = ConnectionResetError("connection reset by peer")
    fs = FlakyFileSystem()
    fs.put(models["two_sig"], "/bucket/models/two_sig", recursive=True)
    monkeypatch.setattr(loader, "COPY_BACKOFF_S", 0.01)
    monkeypatch.setenv("BEAMSCORE_CACHE", str(tmp_path))
    return "flaky://bucket/models/two_sig"


def test_transient_errors_are_retried_and_the_copy_loads(remote_model, models, tmp_path):
    FlakyFileSystem.fail = 2
    local = local_copy(remote_model, "fp-1/2/3", cache_dir=str(tmp_path))
    assert FlakyFileSystem.gets == 3
    assert local == str(tmp_path / "fp-1_2_3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp-1_2_3", "fp-1_2_3.lock"]  # no half copies left
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    model = load_model(ModelSpec(path=remote_model, fingerprint="fp-1/2/3"))  # from the cache: no new copy
    assert FlakyFileSystem.gets == 3
    got = model.signature("serving_default")(x=x)
    assert_scores_close(got["scores"].numpy(), direct_call(models["two_sig"], "serving_default", x=x)["scores"])


def test_permanent_errors_fail_at_once_in_one_line(remote_model, tmp_path):
    FlakyFileSystem.fail, FlakyFileSystem.error = 5, PermissionError("403 Forbidden")
    with pytest.raises(BeamscoreError, match=r"cannot copy model flaky://bucket/models/two_sig: PermissionError"):
        local_copy(remote_model, "fp", cache_dir=str(tmp_path))
    assert FlakyFileSystem.gets == 1
    assert [p.name for p in tmp_path.iterdir()] == ["fp.lock"]


def test_gives_up_after_the_last_attempt(remote_model, tmp_path):
    FlakyFileSystem.fail = 100
    with pytest.raises(BeamscoreError, match=r"after 5 attempts: ConnectionResetError"):
        local_copy(remote_model, "fp", cache_dir=str(tmp_path))
    assert FlakyFileSystem.gets == loader.COPY_ATTEMPTS


def test_processes_of_a_machine_copy_once(remote_model, tmp_path):
    FlakyFileSystem.fail = 1  # the first copier also has to retry while the others wait
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(local_copy(remote_model, "fp", cache_dir=str(tmp_path))))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [str(tmp_path / "fp")] * 6
    assert FlakyFileSystem.gets == 2  # one failed attempt, one copy


def test_which_errors_are_transient():
    class HttpError(Exception):
        def __init__(self, code: int) -> None:
            super().__init__(f"HTTP {code}")
            self.code = code

    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError()) and is_transient(OSError("EIO"))
    assert is_transient(HttpError(503)) and is_transient(HttpError(429))
    assert not is_transient(HttpError(404)) and not is_transient(FileNotFoundError()) and not is_transient(ValueError())
