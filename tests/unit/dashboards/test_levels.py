"""Dashboards draw the levels their owners set: the drift test's level and the policy's threshold."""

from __future__ import annotations

from driftwarden.dashboards.levels import Levels, levels
from driftwarden.dashboards.panels import DRIFT, with_levels


def test_the_drift_panel_steps_at_the_policys_threshold_and_the_tests_level_and_names_them():
    (panel,) = [p for p in with_levels(DRIFT, 0.02, 0.001).panels if p.drift_levels]
    assert panel.thresholds == (("red", None), ("orange", 0.001), ("green", 0.02))
    assert "test level 0.02, policy threshold 0.001" in panel.title
    (bare,) = [p for p in with_levels(DRIFT, 0.05, None).panels if p.drift_levels]
    assert bare.thresholds == (("red", None), ("green", 0.05)) and "policy" not in bare.title


def test_levels_come_from_the_settings_and_the_policy_file(tmp_path, monkeypatch):
    from driftwarden.core.settings import load_settings

    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - name: strict-drift\n    metric: drift_p_value\n    threshold: 0.002\n"
                      "    clear_threshold: 0.05\n    consecutive: 1\n    severity: critical\n")
    monkeypatch.setenv("DRIFTWARDEN_POLICY_FILE", str(policy))
    monkeypatch.setenv("DRIFTWARDEN_DRIFT__ALPHA", "0.01")
    got = levels(load_settings(data_dir=tmp_path))
    assert got == Levels(alpha=0.01, drift_rules=(("strict-drift", 0.002),)) and got.drift_threshold == 0.002
    policy.write_text("rules: [oops")
    assert levels(load_settings(data_dir=tmp_path)).drift_rules == ()
