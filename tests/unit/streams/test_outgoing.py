"""The score agent's records are measured before they are sent: nothing over the producer's limit."""

from __future__ import annotations

import pytest

from driftwarden.core.schemas import EventLimits, Span, event_from_mapping, make_result, parse_detections
from driftwarden.detectors.operational import OperationalDetector
from driftwarden.streams.outgoing import RecordTooLargeError, fit_event, fit_results, outgoing, record_limit
from driftwarden.tests.cases import valid_event


def test_a_redacted_text_longer_than_its_field_limit_is_cut_with_a_marker():
    limits = EventLimits(max_prompt_chars=1000)
    grown = event_from_mapping(valid_event("o-1", prompt="x" * 900), EventLimits(max_prompt_chars=10**6))
    stored, raw = fit_event(grown.model_copy(update={"prompt": "<EMAIL_ADDRESS> " * 120}), limits)
    assert len(stored.prompt) <= 1000 and "TRUNCATED by driftwarden" in stored.prompt
    assert event_from_mapping(stored.model_dump(), limits).event_id == "o-1"  # the sink's check passes
    assert raw == stored.to_json_bytes()


def test_an_event_over_the_record_limit_is_cut_until_it_fits():
    limits = EventLimits(max_event_bytes=30_000, max_prompt_chars=10**6, max_context_chars=10**6)
    event = event_from_mapping(valid_event("o-2", prompt="p" * 40_000, context=["c" * 40_000]),
                               EventLimits(max_event_bytes=10**6, max_prompt_chars=10**6))
    stored, raw = fit_event(event, limits)
    assert len(raw) <= record_limit(limits) and "TRUNCATED" in stored.prompt + stored.context[0]


def test_results_too_large_for_one_record_lose_their_spans_then_their_evidence():
    event = event_from_mapping(valid_event("o-3"))
    spans = [Span(field="prompt", start=i, end=i + 1, type="IP_ADDRESS", score=0.9) for i in range(200)]
    results = [make_result(OperationalDetector(), event, score=1.0, label=True, spans=spans, evidence="e" * 900)
               for _ in range(5)]
    raw = fit_results(results, 8_000)
    assert len(raw) <= 8_000
    (first, *_) = parse_detections(raw)
    assert first.spans == [] and first.scores["spans_dropped"] == 200
    with pytest.raises(RecordTooLargeError, match="detections record has"):
        fit_results(results * 40, 8_000)


def test_an_ordinary_event_passes_untouched():
    limits = EventLimits()
    event = event_from_mapping(valid_event("o-4"))
    out = outgoing(event, [], [], limits)
    assert out.event == event and out.detections is None and out.embeddings is None
