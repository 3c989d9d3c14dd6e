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
