"""Policy files: the shipped rules load; mistakes are refused naming the rule and the field."""

from __future__ import annotations

import pytest

from driftwarden.core.errors import PolicyError
from driftwarden.retrain_trigger.alerting.rules import Rule, load_policy


def write(tmp_path, text: str):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_the_shipped_policy_loads_and_requests_retraining_on_prompt_drift():
    policy = load_policy()
    rules = {r.name: r for r in policy.rules}
    assert rules["prompt-drift"].retrain and rules["prompt-drift"].worse_when == "below"
    assert {"toxicity-rate", "latency-p95", "error-rate", "cost-per-hour"} <= set(rules)


def test_a_wrong_type_names_the_rule_and_the_field(tmp_path):
    path = write(tmp_path, "rules:\n  - name: drift-a\n    metric: drift_p_value\n    threshold: low\n")
    with pytest.raises(PolicyError, match=r"rule 'drift-a' field 'threshold'"):
        load_policy(path)


def test_a_detector_metric_without_a_detector_is_refused(tmp_path):
    path = write(tmp_path, "rules:\n  - name: tox\n    metric: detector_rate\n    threshold: 0.1\n")
    with pytest.raises(PolicyError, match=r"rule 'tox'.*needs 'detector'"):
        load_policy(path)


def test_a_clear_threshold_on_the_wrong_side_is_refused(tmp_path):
    path = write(tmp_path, "rules:\n  - name: d\n    metric: drift_p_value\n    threshold: 0.05\n"
                           "    clear_threshold: 0.01\n")
    with pytest.raises(PolicyError, match="must not be below threshold"):
        load_policy(path)


def test_unknown_keys_and_duplicate_names_are_refused(tmp_path):
    with pytest.raises(PolicyError, match=r"rule 'x' field 'treshold'"):
        load_policy(write(tmp_path, "rules:\n  - name: x\n    metric: error_rate\n    treshold: 1\n"))
    with pytest.raises(PolicyError, match="used twice"):
        load_policy(write(tmp_path, "rules:\n  - {name: x, metric: error_rate, threshold: 0.1}\n"
                                    "  - {name: x, metric: error_rate, threshold: 0.2}\n"))


def test_a_missing_file_and_bad_yaml_say_so(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "rules: [\n"))


def test_segment_patterns_match_app_version_and_field():
    rule = Rule(name="d", metric="drift_p_value", threshold=0.01, segment={"app": "chat-*", "field": "prompt"})
    assert rule.segment.matches("chat-eu", "v3", "prompt")
    assert not rule.segment.matches("search", "v3", "prompt")
    assert not rule.segment.matches("chat-eu", "v3", "response")


@pytest.mark.parametrize("field, value", [("threshold", ".inf"), ("threshold", ".nan"), ("clear_threshold", "-.inf"),
                                          ("cooldown_minutes", ".inf")])
def test_thresholds_and_cooldowns_that_are_not_finite_are_refused(tmp_path, field, value):
    extra = "" if field == "threshold" else "    threshold: 0.5\n"
    path = write(tmp_path, f"rules:\n  - name: e\n    metric: error_rate\n{extra}    {field}: {value}\n")
    with pytest.raises(PolicyError, match=rf"rule 'e' field '{field}'"):
        load_policy(path)
