"""The report's flagged texts: cut to the display length before redaction, never shown when
redaction fails."""

from __future__ import annotations

import re

from driftwarden.dashboards.report import SHOWN_CHARS, WITHHELD, _withhold, shown_text

EMAIL = re.compile(r"[\w.]+@[\w.]+")


def redact_emails(text: str) -> str:
    return EMAIL.sub("<EMAIL_ADDRESS>", text)


def test_a_long_text_is_cut_before_it_is_redacted():
    seen = []

    def redact(text: str) -> str:
        seen.append(len(text))
        return redact_emails(text)

    shown = shown_text("word " * 20_000, redact)
    assert seen and seen[0] <= 4 * SHOWN_CHARS, "redaction got the head of the text, not 100 kB"
    assert len(shown) == SHOWN_CHARS + 1 and shown.endswith("…")


def test_pii_that_the_display_cut_would_split_is_redacted_whole():
    text = "x" * (SHOWN_CHARS - 10) + " john.doe@example.com and more " * 50
    shown = shown_text(text, redact_emails)
    assert "john" not in shown and "<EMAIL" in shown


def test_a_text_cut_inside_a_long_token_keeps_no_partial_word_for_the_redactor():
    text = "call me at " + "a" * 2000
    assert shown_text(text, lambda t: t) == "call me at…"


def test_a_text_whose_redaction_fails_is_withheld():
    def broken(text: str) -> str:
        raise RuntimeError("presidio exploded")

    assert shown_text("my card is 4111 1111 1111 1111", broken) == WITHHELD
    assert shown_text("my card is 4111 1111 1111 1111", _withhold) == WITHHELD
    assert shown_text("short", None) == "short", "without redaction asked for, texts show as stored"


def test_what_is_new_shows_the_stored_examples_and_reads_a_response_windows_missing_ones_from_responses():
    from datetime import UTC, datetime

    from driftwarden.core.schemas import DriftCluster, DriftResult, InferenceEvent
    from driftwarden.core.storage.memory import MemoryStore
    from driftwarden.dashboards.report import _what_is_new

    t = datetime(2026, 1, 1, tzinfo=UTC)
    store = MemoryStore()
    store.insert_events([InferenceEvent(model="m", app="chat", model_version="v1", event_id=e, timestamp=t, prompt=f"prompt {e}", response=f"response {e}",
                                        latency_ms=1, tokens_in=1, tokens_out=1) for e in "abc"])
    store.insert_drift([DriftResult(
        window_id="chat/v1/response/4", app="chat", model_version="v1", field="response", window_start=t, window_end=t, n_reference=100,
        n_current=100, method="m", statistic=0.1, p_value=0.001, reference_policy="baseline", reference_id="r",
        novel_share=0.08, encoder="e", detector_version="1", config_fingerprint="f", computed_at=t,
        clusters=[DriftCluster(size=12, example_event_ids=["a", "b"], examples=["stored a", ""]),
                  DriftCluster(size=3, example_event_ids=["c"])])])
    new = _what_is_new(store)
    assert new["field"] == "response" and new["groups"] == [(12, [("a", "stored a"), ("b", "response b")]),
                                                              (3, [("c", "response c")])]


def test_the_report_reads_everything_through_the_store_and_draws_the_level_and_the_policys_rules(tmp_path):
    from driftwarden.core.settings import load_settings
    from driftwarden.core.storage.memory import MemoryStore
    from driftwarden.dashboards.levels import levels
    from driftwarden.dashboards.report import build_report
    from driftwarden.tests.seeded import write_seed

    settings = load_settings(data_dir=tmp_path)
    rules = levels(settings).drift_rules
    assert rules, "the default policy has a rule on the drift p-value"
    text = build_report(write_seed(MemoryStore()), settings)
    assert "What is new in chat/v1/prompt/4" in text and "job-1" in text and "20260101T000000-abc" in text
    assert f"test level {settings.drift.alpha:g}" in text
    assert all(f"policy rule {name}: {threshold:g}" in text for name, threshold in rules)
    # Each evaluated job's candidate against the current model, with the decision and its reasons.
    section = text.split("<h2>Candidate vs current</h2>", 1)[1]
    assert "Job job-1 (chat v1): <span class=hold>hold</span> — driftwarden-chat version 1" in section
    assert "<td>drifted</td><td>hallucination_rate</td><td>0.3000</td><td>0.3100</td><td>-0.0100</td>" in section
    assert "<td>regression</td><td>refusal_rate</td><td>0.0500</td><td>0.0250</td><td>+0.0250</td>" in section
    assert "40 drifted events, 40 regression events" in section and "does not hold" in section
