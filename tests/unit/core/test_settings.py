"""The one settings object: read from DRIFTWARDEN_* once, bad values named at start-up."""

from __future__ import annotations

import pytest

from driftwarden.core.errors import SettingsError
from driftwarden.core.settings import child_environment, load_settings


def test_defaults_need_no_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.kafka_bootstrap == ""
    assert s.clickhouse_url.startswith("chdb://")
    assert s.topic_inference == "llm.inference" and s.topic_dlq == "llm.inference.dlq"


def test_a_bad_value_stops_start_up_naming_the_variable(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_BATCH_SIZE", "lots")
    monkeypatch.setenv("DRIFTWARDEN_CLICKHOUSE_DSN", "mysql://db")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "DRIFTWARDEN_BATCH_SIZE" in message
    assert "DRIFTWARDEN_CLICKHOUSE_DSN" in message and "chdb://" in message


def test_zero_is_a_value_not_a_missing_setting(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_WORKER_WEB_PORT", "0")
    monkeypatch.setenv("DRIFTWARDEN_MAX_CLOCK_SKEW_S", "0")
    s = load_settings()
    assert s.worker_web_port == 0 and s.max_clock_skew_s == 0


def test_an_unknown_variable_with_the_prefix_is_refused(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_BATCH_SIZ", "10")
    with pytest.raises(SettingsError, match="DRIFTWARDEN_BATCH_SIZ"):
        load_settings()


def test_the_price_table_is_read_as_json(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_PRICE_TABLE", '{"my-model": {"input_per_1k": 0.001, "output_per_1k": 0.002}}')
    s = load_settings()
    assert set(s.price_table) == {"my-model"}
    assert s.price_table["my-model"].output_per_1k == 0.002


def test_a_negative_price_is_refused(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_PRICE_TABLE", '{"m": {"input_per_1k": -1, "output_per_1k": 0}}')
    with pytest.raises(SettingsError, match="DRIFTWARDEN_PRICE_TABLE"):
        load_settings()


def test_sasl_settings_pass_through_to_the_kafka_clients_without_logging_the_password(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTWARDEN_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DRIFTWARDEN_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("DRIFTWARDEN_KAFKA_SASL_PASSWORD", "s3cret")
    s = load_settings()
    cfg = s.kafka_client_config()
    assert cfg["security_protocol"] == "SASL_SSL" and cfg["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(s)


def test_a_server_dsn_is_used_as_given(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_CLICKHOUSE_DSN", "http://default:pw@ch.internal:8123")
    s = load_settings()
    assert not s.embedded_store and s.clickhouse_url == "http://default:pw@ch.internal:8123"


def test_the_dsn_is_a_secret_absent_from_the_settings_repr_and_masked_for_display(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_CLICKHOUSE_DSN", "http://user:s3cret@127.0.0.1:1/?password=s3cret2&database=x")
    s = load_settings()
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
    assert s.clickhouse_url_masked == "http://user:***@127.0.0.1:1/?password=***&database=x"


def test_a_bad_dsn_is_named_without_its_value_even_in_the_exception_chain(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_CLICKHOUSE_DSN", "mysql://root:s3cret@db")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "DRIFTWARDEN_CLICKHOUSE_DSN" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "s3cret" not in str(info.value)


def test_a_child_process_environment_carries_every_setting_as_the_parent_holds_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTWARDEN_BATCH_SIZE", "7")
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__TOXICITY__THRESHOLD", "0.42")
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__PII__ENABLED", "false")
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__PII__ENTITIES", '["EMAIL_ADDRESS"]')
    parent = load_settings(data_dir=tmp_path, sink_web_port=7777)
    env = child_environment(parent)
    for key, value in env.items():
        if key.startswith("DRIFTWARDEN_"):
            monkeypatch.setenv(key, value)
    for key in ("DRIFTWARDEN_DETECTORS__TOXICITY__THRESHOLD", "DRIFTWARDEN_DETECTORS__PII__ENABLED",
                "DRIFTWARDEN_DETECTORS__PII__ENTITIES"):
        monkeypatch.delenv(key, raising=False)  # the child has only what child_environment gives it
    child = load_settings()
    assert child == parent
    assert child.sink_web_port == 7777 and child.batch_size == 7
    assert child.detectors.toxicity.threshold == 0.42 and not child.detectors.pii.enabled
    assert child.detectors.pii.entities == ("EMAIL_ADDRESS",)


def test_detector_settings_are_nested_with_double_underscores(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__TOXICITY__THRESHOLD", "0.8")
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__PII__ENABLED", "false")
    s = load_settings()
    assert s.detectors.toxicity.threshold == 0.8 and not s.detectors.pii.enabled
    assert s.detectors.hallucination.threshold == 0.651  # its own default


def test_a_bad_detector_setting_names_the_nested_variable(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__TOXICITY__THRESHOLD", "2")
    with pytest.raises(SettingsError, match="DRIFTWARDEN_DETECTORS__TOXICITY__THRESHOLD"):
        load_settings()


def test_a_misspelt_detector_name_is_refused(monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_DETECTORS__TOXICTY__THRESHOLD", "0.2")
    with pytest.raises(SettingsError, match="TOXICTY"):
        load_settings()


def test_nested_secrets_reach_a_child_process_intact(monkeypatch):
    parent = load_settings(alerts={"slack_webhook_url": "https://hooks.slack.test/T/B/secret",
                                   "pagerduty_routing_key": "R0UT1NG"},
                           retrain={"max_steps": 3, "datasets_dir": "/data/sets"})
    for key, value in child_environment(parent).items():
        if key.startswith("DRIFTWARDEN_"):
            monkeypatch.setenv(key, value)
    child = load_settings()
    assert child.alerts.slack_webhook_url.get_secret_value() == "https://hooks.slack.test/T/B/secret"
    assert child.alerts.pagerduty_routing_key.get_secret_value() == "R0UT1NG"
    assert child.retrain == parent.retrain and "secret" not in repr(child.alerts)
