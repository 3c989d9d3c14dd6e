"""PII: pattern recognizers without a spaCy model, results without values, redaction."""

from __future__ import annotations

import pytest

from driftwarden.core.schemas import event_from_mapping
from driftwarden.detectors.pii import PIIDetector, redact_event
from driftwarden.tests.cases import valid_event

TEXT = "Write to jane.roe@example.org, card 4111 1111 1111 1111, from 192.168.10.20 please."


@pytest.fixture(scope="module")
def detector():
    return PIIDetector()


def test_emails_cards_and_ip_addresses_are_found_with_types_and_offsets(detector):
    (result,) = detector.detect([event_from_mapping(valid_event("pii-1", prompt=TEXT))])
    types = {s.type for s in result.spans}
    assert {"EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS"} <= types
    assert result.label is True and result.score > 0.5
    email = next(s for s in result.spans if s.type == "EMAIL_ADDRESS")
    assert TEXT[email.start:email.end] == "jane.roe@example.org"


def test_a_result_keeps_offsets_not_the_values(detector):
    (result,) = detector.detect([event_from_mapping(valid_event("pii-2", prompt=TEXT))])
    assert "jane.roe" not in result.model_dump_json()
    assert "4111" not in result.model_dump_json()


def test_redaction_leaves_no_detected_pii_in_the_stored_event(detector):
    event = event_from_mapping(valid_event("pii-3", prompt=TEXT, response="Sure, mail jane.roe@example.org"))
    (result,) = detector.detect([event])
    stored = redact_event(event, result)
    assert "jane.roe@example.org" not in stored.prompt + stored.response
    assert "4111 1111" not in stored.prompt
    assert "<EMAIL_ADDRESS>" in stored.prompt and "<EMAIL_ADDRESS>" in stored.response
    (again,) = detector.detect([stored])
    assert not {"EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS"} & {s.type for s in again.spans}


def test_a_clean_prompt_is_not_flagged(detector):
    (result,) = detector.detect([event_from_mapping(valid_event("pii-4", prompt="Explain how photosynthesis works."))])
    assert result.label is False and result.spans == []
