"""The event contract: what is accepted, and the reason each kind of bad event is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from driftwarden.core.errors import InvalidEventError
from driftwarden.core.schemas import (
    MAX_EVIDENCE,
    MAX_SPANS,
    EventLimits,
    Span,
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
from driftwarden.tests.hostile import HOSTILE, HOSTILE_MAX_CHARS

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


@pytest.mark.parametrize("kind", [h.kind for h in HOSTILE if h.topic == "inference"])
def test_every_hostile_inference_message_gets_the_verdict_the_suite_expects(kind):
    case = next(h for h in HOSTILE if h.kind == kind)
    limits = EventLimits(max_prompt_chars=HOSTILE_MAX_CHARS, max_response_chars=HOSTILE_MAX_CHARS)
    if case.stage is None:
        assert parse_event(case.raw, limits).event_id == case.event_id
    else:
        with pytest.raises(InvalidEventError) as err:
            parse_event(case.raw, limits)
        assert err.value.stage == case.stage and case.reason in err.value.reason


def test_a_reason_lists_the_first_problems_and_counts_the_rest_within_its_limit():
    raw = encode({**valid_event("many"), **{f"extra{i}": i for i in range(500)}})
    with pytest.raises(InvalidEventError) as err:
        parse_event(raw, EventLimits(max_reason_chars=200))
    assert err.value.reason.endswith("…(truncated)") or "more problem(s)" in err.value.reason
    assert len(err.value.reason) <= 200


def test_names_accept_letters_digits_dots_dashes_and_underscores_only():
    assert event_from_mapping(valid_event("n-1", app="Support_Bot-2.eu", model_version="2026.11.30-rc1")).app
    for bad in ("a b", "a/b", "a:b", "..", "a..b", "-lead", "a'b", 'a"b', "a\\b", "é", "a\tb", "x" * 127 + "\n"):
        with pytest.raises(InvalidEventError, match="must be 1-128 letters"):
            event_from_mapping(valid_event("n-2", app=bad))


def test_limits_on_latency_cost_and_time_come_from_the_settings():
    limits = EventLimits(max_latency_ms=1000, max_cost_usd=1.5, min_event_time=datetime(2026, 1, 1, tzinfo=UTC))
    event_from_mapping(valid_event("l-1", latency_ms=1000, cost_usd=1.5), limits)
    with pytest.raises(InvalidEventError, match="latency_ms: Value error, is more than the limit of 1000 ms"):
        event_from_mapping(valid_event("l-2", latency_ms=1000.5), limits)
    with pytest.raises(InvalidEventError, match="cost_usd: Value error, is more than the limit of 1.5 USD"):
        event_from_mapping(valid_event("l-3", cost_usd=2), limits)
    with pytest.raises(InvalidEventError, match="lies before 2026-01-01"):
        event_from_mapping(valid_event("l-4", timestamp="2025-12-31T23:59:59+00:00"), limits)


def test_an_unexpected_failure_while_parsing_is_a_dead_letter_not_an_exception(monkeypatch):
    from driftwarden.core import schemas

    def boom(*_a, **_k):
        raise KeyError("surprise")

    monkeypatch.setattr(schemas, "_parse_event", boom)
    with pytest.raises(InvalidEventError, match="cannot be validated \\(KeyError"):
        parse_event(b"{}")


def test_a_result_keeps_at_most_its_span_limit_finite_scores_and_short_evidence():
    event = event_from_mapping(valid_event("r-1"))
    detector = OperationalDetector()
    spans = [Span(field="prompt", start=i, end=i + 1, type="X") for i in range(MAX_SPANS + 7)]
    result = make_result(detector, event, score=0.5, label=True, spans=spans, evidence="e" * 5000,
                         scores={"ok": 1.0, "inf": float("inf"), "nan": float("nan")})
    assert len(result.spans) == MAX_SPANS and result.scores == {"ok": 1.0, "spans_dropped": 7.0}
    assert len(result.evidence) == MAX_EVIDENCE


def test_hostile_feedback_is_refused_with_a_reason_never_an_unexpected_exception():
    import pytest

    from driftwarden.core.errors import InvalidEventError
    from driftwarden.core.schemas import parse_feedback

    nested: dict = {}
    for _ in range(2000):
        nested = {"x": nested}
    for bad in ({"event_id": "e1", "score": 1, "comment": nested}, {"event_id": "e1", "score": float("nan")},
                {"event_id": "x" * 500, "score": 1}, {"event_id": "e1", "score": 1, "comment": "c" * 5000},
                b"\xff\xfe", b"[1, 2]", {"event_id": "e1", "score": 1, "source": "a b"}):
        with pytest.raises(InvalidEventError):
            parse_feedback(bad)
