"""The event contract: what is accepted, and the reason each kind of bad event is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from driftwarden.core.errors import InvalidEventError
from driftwarden.core.schemas import (
    EventLimits,
    encode_records,
    event_from_mapping,
    make_error,
    make_result,
    parse_detections,
    parse_embeddings,
    parse_event,
)
from driftwarden.detectors.operational import OperationalDetector
from driftwarden.tests.cases import BAD_EVENTS, TEST_MAX_PROMPT_CHARS, encode, valid_event

LIMITS = EventLimits(max_prompt_chars=TEST_MAX_PROMPT_CHARS)


def test_a_valid_event_parses_with_its_timestamp_in_utc():
    event = parse_event(encode(valid_event("ok-1", timestamp="2026-01-02T03:04:05+02:00")), LIMITS)
    assert event.event_id == "ok-1"
    assert event.timestamp.utcoffset().total_seconds() == 0
    assert event.timestamp.hour == 1
    assert event.segment_key == "support-bot/v7"


def test_a_timestamp_without_zone_is_taken_as_utc():
    event = parse_event(encode(valid_event("ok-2", timestamp="2026-01-02T03:04:05")), LIMITS)
    assert event.timestamp.hour == 3 and event.timestamp.tzinfo is not None


def test_a_single_context_string_becomes_a_list_of_one_passage():
    event = parse_event(encode(valid_event("ok-3", context="Paris is in France.")), LIMITS)
    assert event.context == ["Paris is in France."]


def test_a_failed_call_may_carry_its_error_and_an_empty_response():
    event = parse_event(encode(valid_event("ok-4", status="error", error="rate limited", response="")), LIMITS)
    assert event.status == "error" and event.error == "rate limited"


@pytest.mark.parametrize(("kind", "raw", "reason", "stage"), BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS])
def test_each_kind_of_bad_event_is_refused_with_a_reason_that_names_the_problem(kind, raw, reason, stage):
    with pytest.raises(InvalidEventError) as info:
        parse_event(raw, LIMITS)
    assert reason in info.value.reason, info.value.reason
    assert info.value.stage == stage


def test_the_catalogue_of_bad_events_has_at_least_twelve_kinds():
    assert len({kind for kind, *_ in BAD_EVENTS}) >= 12


def test_an_event_larger_than_the_byte_limit_is_refused_before_it_is_decoded():
    with pytest.raises(InvalidEventError, match="more than the limit of 100") as info:
        parse_event(encode(valid_event("big")), EventLimits(max_event_bytes=100))
    assert info.value.stage == "decode"


def test_event_from_mapping_validates_exactly_like_the_worker():
    with pytest.raises(InvalidEventError, match="latency_ms"):
        event_from_mapping(valid_event("m-1", latency_ms=-1))


def test_results_name_the_detector_its_version_and_config_fingerprint():
    detector = OperationalDetector()
    event = parse_event(encode(valid_event("r-1")), LIMITS)
    result = make_result(detector, event, score=0.0, label=False)
    assert (result.detector, result.detector_version) == ("operational", detector.version)
    assert result.config_fingerprint == detector.config.fingerprint()
    error = make_error(detector, event, ValueError("bad input"))
    assert error.score is None and error.error == "ValueError: bad input"


def test_a_non_finite_score_is_a_detector_bug_not_a_result():
    event = parse_event(encode(valid_event("r-2")), LIMITS)
    with pytest.raises(ValueError, match="non-finite"):
        make_result(OperationalDetector(), event, score=float("nan"), label=False)


def test_one_topic_record_carries_all_results_of_an_event_and_parses_back_to_the_same():
    detector = OperationalDetector()
    event = parse_event(encode(valid_event("r-3")), LIMITS)
    results = [make_result(detector, event, score=0.1, label=False), make_error(detector, event, ValueError("x"))]
    assert parse_detections(encode_records(results)) == results


def test_a_single_result_is_not_a_valid_detections_record():
    event = parse_event(encode(valid_event("r-4")), LIMITS)
    single = make_result(OperationalDetector(), event, score=0.0, label=False).to_json_bytes()
    with pytest.raises(ValidationError):
        parse_detections(single)
    with pytest.raises(ValidationError):
        parse_embeddings(single)
