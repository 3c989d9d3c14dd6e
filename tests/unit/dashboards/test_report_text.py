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


class _Store:
    """Answers the two queries of ``_what_is_new`` (pure logic: the real store is in tests/e2e)."""

    def __init__(self, window, events):
        self.window, self.events, self.asked = window, events, []

    def query(self, sql, parameters=None):
        self.asked.append(sql)
        rows = [self.window] if "drift_windows" in sql else [
            (e, t) for e, t in self.events.items() if e in (parameters or {}).get("ids", [])]
        return type("Result", (), {"result_rows": rows})()


def test_what_is_new_shows_the_stored_examples_and_reads_a_response_windows_missing_ones_from_responses():
    import json

    from driftwarden.dashboards.report import _what_is_new

    clusters = json.dumps([{"size": 12, "example_event_ids": ["a", "b"], "examples": ["stored a", ""]},
                           {"size": 3, "example_event_ids": ["c"], "examples": []}])
    store = _Store(("chat/v1/response/4", "response", 0.001, 0.08, clusters), {"b": "response b", "c": "response c"})
    new = _what_is_new(store, "db")
    assert new["field"] == "response" and new["groups"] == [(12, [("a", "stored a"), ("b", "response b")]),
                                                              (3, [("c", "response c")])]
    assert "SELECT event_id, response FROM" in store.asked[-1]
