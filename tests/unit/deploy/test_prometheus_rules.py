"""The shipped Prometheus rules load (``promtool check rules``), pass their unit tests
(``promtool test rules``), and name only metrics that driftwarden's processes serve."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from driftwarden.streams.metrics import ConsumerLag, Metrics, delivery_counts
from driftwarden.streams.publisher import PublisherStats
from driftwarden.streams.publisher_metrics import PublisherCollector

RULES = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run deploy/local/install.sh as root (apt-get install prometheus)")
    return path


def test_the_rules_pass_promtool_check():
    out = subprocess.run([promtool(), "check", "rules", str(RULES / "rules.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 8 rules found" in out.stdout


def test_the_rules_pass_their_promtool_unit_tests():
    out = subprocess.run([promtool(), "test", "rules", "rules_test.yml"], cwd=RULES, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_metric_the_rules_name_is_served():
    metrics = Metrics("score")
    metrics.add_counters("driftwarden_alert_deliveries", "d", ("receiver", "outcome"),
                         lambda: delivery_counts(Counter(), ["slack"]))
    metrics.registry.register(ConsumerLag(app=None))
    metrics.registry.register(PublisherCollector(SimpleNamespace(stats=PublisherStats(), room=5)))
    families = list(metrics.registry.collect())
    served = {f.name for f in families} | {f"{f.name}_total" for f in families if f.type == "counter"}
    named = set(re.findall(r"\b(driftwarden_[a-z_]+)", (RULES / "rules.yml").read_text()))
    assert named and named <= served, sorted(named - served)
