"""The one-host compose example (deploy/compose/compose.yaml): every driftwarden service's
environment passes the real settings, and each runs a driftwarden command against the compose
file's own Kafka and ClickHouse. (Its images cannot be pulled here, so it is not started; its
syntax was checked with podman-compose's `config`.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from driftwarden.tests.unit.deploy.settings_env import load_settings_with

COMPOSE = Path(__file__).resolve().parents[3] / "deploy" / "compose" / "compose.yaml"
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}")


def interpolated(value: str) -> str:
    """``${NAME:-default}`` as compose resolves it with nothing set (``${NAME:?..}``: a stand-in)."""
    return _VARIABLE.sub(lambda m: m.group(2) if m.group(2) is not None else "t" * 32, value)


def test_every_driftwarden_service_environment_passes_the_real_settings():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    ours = {name: s for name, s in services.items() if "driftwarden" in s.get("image", "")}
    assert set(ours) == {"sink", "worker", "otlp"}
    for name, service in ours.items():
        env = {k: interpolated(str(v)) for k, v in service["environment"].items()}
        assert env["DRIFTWARDEN_KAFKA_BOOTSTRAP"] == "kafka:9092" and "kafka" in services
        if name == "sink":
            assert env["DRIFTWARDEN_CLICKHOUSE_DSN"].endswith("@clickhouse:8123") and "clickhouse" in services
        else:
            assert "DRIFTWARDEN_CLICKHOUSE_DSN" not in env  # only the sink reads the store
        done = load_settings_with(env)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        assert service["command"] == [name] and service["read_only"] is True
