"""The README tells the truth: its examples run, its tables list every field and setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from driftwarden.core.schemas import InferenceEvent
from driftwarden.core.settings import ENV_PREFIX, Settings, get_settings
from driftwarden.tests.realstack import wait_for

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def table_names(text: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, text, flags=re.M))


def test_the_configuration_table_lists_every_setting_and_nothing_else():
    text = README.read_text()
    documented = table_names(text, r"^\| `(DRIFTWARDEN_[A-Z0-9_]+)` \|")
    actual = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert documented == actual


def test_the_event_contract_table_lists_every_field_of_the_schema():
    text = README.read_text()
    contract = text.split("## The event contract", 1)[1].split("\n## ", 1)[0]
    documented = table_names(contract, r"^\| `([a-z_]+)` \|")
    assert documented == set(InferenceEvent.model_fields)


def test_every_environment_variable_the_readme_exports_is_a_real_setting():
    text = README.read_text()
    exported = set(re.findall(r"export (DRIFTWARDEN_[A-Z0-9_]+)=", text))
    actual = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    assert exported and exported <= actual


@pytest.mark.integration
def test_the_publisher_example_runs_and_its_event_is_stored(stack, stack_settings, monkeypatch, capsys):
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no Python example"
    monkeypatch.setenv("DRIFTWARDEN_KAFKA_BOOTSTRAP", stack.bootstrap)
    get_settings.cache_clear()
    before = wait_for(stack_settings, lambda c: True)["events"]
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})
    assert "sent=1" in capsys.readouterr().out
    counts = wait_for(stack_settings, lambda c: c["events"] >= before + 1, stack=stack)
    segments = {(s["app"], s["model_version"]) for s in counts["events_by_segment"]}
    assert ("support-bot", "2026-11-01") in segments


def test_the_detectors_table_documents_every_detector_setting():
    from driftwarden.core.detector_configs import EmbeddingsConfig
    from driftwarden.detectors.registry import registrations

    text = README.read_text()
    section = text.split("## Detectors", 1)[1].split("\n## ", 1)[0]
    documented = table_names(section, r"^\| `([a-z_]+)` \| ")
    configs = {"embeddings": EmbeddingsConfig, **{n: r.config for n, r in registrations().items() if r.config}}
    fields = {f for config in configs.values() for f in config.model_fields}
    assert fields <= documented, sorted(fields - documented)
    for name in configs:
        assert f"`{name.upper()}`" in section


def test_the_drift_table_documents_every_drift_setting():
    from driftwarden.core.detector_configs import DriftConfig

    section = README.read_text().split("## Embedding drift", 1)[1].split("\n## ", 1)[0]
    assert set(DriftConfig.model_fields) <= table_names(section, r"^\| `([a-z_]+)` \| ")
