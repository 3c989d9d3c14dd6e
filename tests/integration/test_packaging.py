"""`pip install driftwarden` is what a publishing app needs, and nothing of the server.

A fresh virtual environment gets the project without extras (a copy of the working tree, built
as pip builds it for a user); the Publisher imports and validates an event there without faust,
ClickHouse or any model installed, the `driftwarden` command names the extra it needs, and the
build prints none of setuptools' packaging warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib.util, json
from driftwarden.streams import Publisher
from driftwarden.core.schemas import event_from_mapping
absent = [m for m in ("faust", "chdb", "clickhouse_connect", "torch", "typer") if importlib.util.find_spec(m)]
event = event_from_mapping({"event_id": "e-1", "timestamp": "2026-01-01T00:00:00Z", "app": "a", "model": "m",
                            "model_version": "v", "prompt": "hi", "response": "ho", "latency_ms": 5,
                            "tokens_in": 1, "tokens_out": 1})
print(json.dumps({"publisher": Publisher.__name__, "installed_server_modules": absent, "event": event.event_id}))
"""


@pytest.mark.timeout(600)
def test_the_base_install_publishes_without_the_server_and_the_cli_names_its_extra(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", "artifacts", ".driftwarden", ".pytest_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    built = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", str(source)],
                           capture_output=True, text=True, timeout=540)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    for noise in ("check.warn", "absent from the `packages` configuration", "Please be careful"):
        assert noise not in built.stdout + built.stderr, f"setuptools warns: {noise}"
    out = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"installed_server_modules": []' in out.stdout and '"event": "e-1"' in out.stdout, out.stdout
    cli = subprocess.run([str(venv / "bin" / "driftwarden"), "stats"], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2 and "pip install 'driftwarden[server]'" in cli.stderr, cli.stderr
