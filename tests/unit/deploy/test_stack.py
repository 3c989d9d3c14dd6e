"""The local stack restarts a process that exited, and stops at a crash loop."""

from __future__ import annotations

import subprocess
import sys

import pytest

from driftwarden.core.settings import load_settings
from driftwarden.deploy.local.stack import Stack, StackError


def _exited(code: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait(30)
    return proc


def _running() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.fixture
def stack(tmp_path, monkeypatch):
    s = Stack(settings=load_settings(data_dir=tmp_path), bootstrap="127.0.0.1:1", log_dir=tmp_path)
    spawned = []
    monkeypatch.setattr(s, "_spawn", lambda role, name, extra, nice=0: spawned.append(name) or _running())
    s.spawned = spawned
    yield s
    for p in s.workers:
        p.kill()


def test_a_worker_that_exited_is_restarted_and_the_others_are_left_alone(stack):
    alive = _running()
    stack.workers = [alive, _exited(70)]
    assert stack.supervise() == ["worker-1"]
    assert stack.spawned == ["worker-1"] and stack.workers[0] is alive and stack.workers[1].poll() is None
    assert stack.supervise() == []


def test_a_worker_in_a_crash_loop_is_not_restarted_forever(stack):
    for _ in range(3):
        stack.workers = [_exited(70)]
        stack.supervise(max_restarts=3)
    stack.workers = [_exited(70)]
    with pytest.raises(StackError, match="worker-0 exited with code 70 for the 4th time"):
        stack.supervise(max_restarts=3)


def test_a_workers_web_port_is_never_one_the_sink_otlp_or_broker_will_bind(tmp_path, monkeypatch):
    from driftwarden.deploy.local import broker as broker_module

    settings = load_settings(data_dir=tmp_path).model_copy(update={"sink_web_port": 41001, "local_broker_port": 41002})
    settings = settings.model_copy(update={"otlp": settings.otlp.model_copy(update={"port": 41003})})
    handed_out = iter([41001, 41003, 41002, 41004])

    class Socket:
        """The system's choice of a free port, made predictable: the configured ones come first."""

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(handed_out)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(broker_module.socket, "socket", Socket)
    s = Stack(settings=settings, bootstrap="127.0.0.1:1", log_dir=tmp_path)
    assert s._worker_args(0) == ["--web-port", "41004"]
