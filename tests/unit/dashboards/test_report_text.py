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
