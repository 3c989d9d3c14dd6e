"""The ingestion layer: every outside row becomes an event mapping, or a ReplayError naming where and why."""

from __future__ import annotations

import pytest

from driftwarden.core.errors import ReplayError
from driftwarden.core.ingest.datasets import ReplayOptions, scoring_event, synthesise, texts_of
from driftwarden.core.ingest.jsonl import count_rows, read_jsonl
from driftwarden.core.schemas import event_from_mapping


def test_a_jsonl_source_yields_numbered_objects_and_names_the_line_that_is_not_one(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1, "question": "Who?", "answer": "Me."}\n\n[1, 2]\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"id": 1, "question": "Who?", "answer": "Me."})
    with pytest.raises(ReplayError, match=r"rows.jsonl.*3.*not an object"):
        next(rows)
    assert count_rows(path) == 2


def test_data_set_rows_become_valid_events_and_a_row_without_a_prompt_is_named():
    rows = [(1, {"id": "a", "question": "Who won?", "answer": "Nobody.", "context": "A match."}),
            (2, {"event_id": "kept", "timestamp": "2026-01-01T00:00:00Z"})]
    first, second = synthesise(rows, 2, ReplayOptions(id_prefix="t"))
    event = event_from_mapping(first)
    assert event.event_id == "t-a" and event.prompt == "Who won?" and event.context == ["A match."]
    assert second == rows[1][1], "a recorded event passes as it is"
    with pytest.raises(ReplayError, match="no text prompt"):
        list(synthesise([(7, {"id": 1, "answer": "x"})], 1, ReplayOptions()))


def test_the_scored_text_and_the_texts_of_a_field_come_from_the_same_aliases(tmp_path):
    event = scoring_event({"q": "Who?", "a": "Me.", "ctx": "Me, said I."}, 3, "a", as_response=True,
                          context_field="ctx", prompt_field="q")
    assert (event.prompt, event.response, event.context) == ("Who?", "Me.", ["Me, said I."])
    assert scoring_event({"t": "you"}, 1, "t").prompt == "you"
    with pytest.raises(ReplayError, match="'t' is missing"):
        scoring_event({"t": 5}, 1, "t")
    path = tmp_path / "texts.jsonl"
    path.write_text('{"id": "x", "answer": "one"}\n{"output": "two"}\n')
    assert texts_of(path, "response") == (["one", "two"], ["x", 2])
    with pytest.raises(ReplayError, match="no text in prompt"):
        texts_of(path, "prompt")
