"""Adding a detector is one module: a detector defined in this file, registered here, is configured
from the environment, runs in the stream's pipeline, scores a file with ``driftwarden score`` and
fires a policy rule, with no other file touched."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from pydantic import Field

from driftwarden.core.detector_configs import DetectorConfig
from driftwarden.core.schemas import event_from_mapping, make_result
from driftwarden.core.settings import load_settings
from driftwarden.detectors.base import BaseDetector
from driftwarden.detectors.offline import score_file
from driftwarden.detectors.pipeline import ScoringPipeline
from driftwarden.detectors.registry import names, register, unregister
from driftwarden.retrain_trigger.alerting.policy import DetectionWindows, PolicyEngine
from driftwarden.retrain_trigger.alerting.rules import Policy
from driftwarden.tests.cases import valid_event


class ShoutingConfig(DetectorConfig):
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """Share of upper-case letters from which a prompt counts as shouting."""


class ShoutingDetector(BaseDetector):
    """Score: the share of the prompt's letters that are upper case."""

    name = "shouting"
    version = "1.0.0"
    config_class = ShoutingConfig

    def score_batch(self, events, ctx):
        out = []
        for e in events:
            letters = [c for c in e.prompt if c.isalpha()]
            score = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
            out.append(make_result(self, e, score=score, label=score >= self.config.threshold))
        return out


@pytest.fixture
def shouting(monkeypatch, tmp_path):
    register("shouting", config=ShoutingConfig)(ShoutingDetector)
    for name in ("toxicity", "hallucination", "pii", "prompt_injection", "embeddings"):
        monkeypatch.setenv(f"DRIFTWARDEN_DETECTORS__{name.upper()}__ENABLED", "false")
    monkeypatch.setenv("DRIFTWARDEN_REDACT_PII", "false")
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__SHOUTING__THRESHOLD", "0.6")
    yield load_settings(data_dir=tmp_path)
    unregister("shouting")


def event(i: int, prompt: str):
    return event_from_mapping(valid_event(f"e-{i}", prompt=prompt))


def test_a_detector_defined_here_is_configured_scored_in_the_pipeline_and_on_files_and_alerted_on(shouting, tmp_path):
    settings = shouting
    assert "shouting" in names() and settings.detectors.shouting.threshold == 0.6

    pipeline = ScoringPipeline.from_settings(settings)
    assert sorted(d.name for d in pipeline.detectors) == ["operational", "shouting"]
    prompts = ["WHY IS MY ORDER LATE", "where is my parcel?", "REFUND ME NOW", "thanks a lot"]
    out = pipeline.run([event(i, p) for i, p in enumerate(prompts)])
    by_event = defaultdict(dict)
    for r in out.results:
        by_event[r.event_id][r.detector] = r
    assert [by_event[f"e-{i}"]["shouting"].label for i in range(4)] == [True, False, True, False]
    assert by_event["e-0"]["shouting"].config_fingerprint == settings.detectors.shouting.fingerprint()

    source, scored = tmp_path / "rows.jsonl", tmp_path / "scored.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": p}) + "\n" for i, p in enumerate(prompts)))
    counts = score_file("shouting", settings, source, "text", scored)
    assert counts["rows"] == 4 and counts["flagged"] == 2
    assert [json.loads(line)["label"] for line in scored.read_text().splitlines()] == [True, False, True, False]

    policy = Policy(rules=[{"name": "shouting-rate", "metric": "detector_rate", "detector": "shouting",
                            "threshold": 0.3, "clear_threshold": 0.1, "consecutive": 1, "severity": "warning",
                            "min_events": 4}])
    windows, engine = DetectionWindows(size=4, minutes=5), PolicyEngine(policy)
    observations = [o for i in range(4) for o in windows.add([by_event[f"e-{i}"]["shouting"]])]
    (alert,) = engine.observe(observations).alerts
    assert alert.rule == "shouting-rate" and alert.value == 0.5 and alert.detector == "shouting"


def test_an_unknown_detector_in_the_settings_names_the_known_ones(monkeypatch, tmp_path):
    from driftwarden.core.errors import SettingsError

    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__SHOUTING__THRESHOLD", "0.6")
    with pytest.raises(SettingsError, match="DRIFTWARDEN_DETECTORS__SHOUTING.*configurable detectors: hallucination"):
        load_settings(data_dir=tmp_path)
