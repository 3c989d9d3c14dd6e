"""How detectors cut text into pieces: sentences, and chunks of sentences up to a size.

Offsets are into the text given; for an event's ``context`` that is its passages joined with
a newline (what :func:`join_context` returns), the same text result spans point into.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def join_context(passages: Sequence[str] | None) -> str:
    """The event's context as one text: its passages joined with a newline."""
    return "\n".join(passages or [])


def sentences(text: str, max_chars: int = 600) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``; long ones cut at ``max_chars``."""
    out: list[tuple[int, int]] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        _add(text, start, m.start(), max_chars, out)
        start = m.end()
    _add(text, start, len(text), max_chars, out)
    return out


def _add(text: str, start: int, end: int, max_chars: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        cut = cut if cut > start else start + max_chars
        if _WORD.search(text, start, cut):
            out.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start and _WORD.search(text, start, end):
        out.append((start, end))




def chunks(text: str, max_chars: int = 256, max_chunks: int = 64) -> list[tuple[int, int]]:
    """Consecutive sentences merged while the merged piece stays within ``max_chars``.

    Short lines (table rows, list items) merge into one piece; a sentence longer than
    ``max_chars`` stays whole (up to the 600 characters :func:`sentences` allows); 0 merges
    nothing. At most
    ``max_chunks`` pieces, from the start of the text.
    """
    out: list[tuple[int, int]] = []
    for start, end in sentences(text):
        if out and max_chars and end - out[-1][0] <= max_chars and "\n\n" not in text[out[-1][1]:start]:
            out[-1] = (out[-1][0], end)
        else:
            if len(out) == max_chunks:
                break
            out.append((start, end))
    return out
