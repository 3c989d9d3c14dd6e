"""The image's health check asks the port of its own process: the role and port flag from the
command line, the defaults from the settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from driftwarden.core.settings import get_settings

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "container" / "healthcheck.py"


@pytest.fixture
def healthcheck(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_SINK_WEB_PORT", "7001")
    monkeypatch.setenv("DRIFTWARDEN_WORKER_WEB_PORT", "7002")
    monkeypatch.setenv("DRIFTWARDEN_OTLP__PORT", "7003")
    get_settings.cache_clear()
    spec = importlib.util.spec_from_file_location("healthcheck", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args, port", [
    (["/opt/driftwarden/venv/bin/python", "/opt/driftwarden/venv/bin/driftwarden", "sink", ""], 7001),
    (["driftwarden", "worker", ""], 7002),
    (["driftwarden", "worker", "--web-port", "9100", ""], 9100),
    (["driftwarden", "otlp", ""], 7003),
    (["driftwarden", "otlp", "--port", "4400", ""], 4400),
    (["driftwarden", "replay", "file.jsonl", ""], 0),
    (["driftwarden", "worker", "--web-port", "80; rm -rf /", ""], 0),
], ids=["sink", "worker", "worker with --web-port", "otlp", "otlp with --port", "another command",
        "a port flag that is not a number"])
def test_the_health_check_asks_its_own_process_port(healthcheck, args, port):
    assert healthcheck.port_of(args) == port
