"""Replay turns labelled rows into realistic, valid traffic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.errors import ReplayError
from driftwarden.core.schemas import event_from_mapping
from driftwarden.pkg_data import path as data_path
from driftwarden.core.ingest.datasets import ReplayOptions, synthesise
from driftwarden.core.ingest.jsonl import read_jsonl
from driftwarden.streams.replay import replay_file


def test_halueval_general_replays_as_valid_events_spread_over_the_period():
    end = datetime(2026, 1, 1, tzinfo=UTC)
    options = ReplayOptions(span=timedelta(hours=2), end=end)
    events = list(synthesise(read_jsonl(data_path("halueval_general")), 2737, options))
    assert len(events) == 2737
    parsed = [event_from_mapping(e) for e in events]
    stamps = [e.timestamp for e in parsed]
    assert min(stamps) >= end - timedelta(hours=2) and max(stamps) <= end
    assert stamps == sorted(stamps)
    latencies = sorted(e.latency_ms for e in parsed)
    assert latencies[0] > 0 and latencies[-1] > 5 * latencies[len(latencies) // 2] / 2
    assert all(e.tokens_in >= 1 for e in parsed)
    assert len({e.event_id for e in parsed}) == 2737


def test_longer_responses_take_longer_on_average():
    events = list(synthesise(read_jsonl(data_path("halueval_general")), 2737, ReplayOptions()))
    short = [e["latency_ms"] for e in events if e["tokens_out"] < 50]
    long = [e["latency_ms"] for e in events if e["tokens_out"] > 200]
    assert sum(long) / len(long) > 2 * sum(short) / len(short)


def test_qa_rows_become_events_with_context_and_the_question_as_prompt():
    first = next(synthesise(read_jsonl(data_path("halueval_qa")), 574, ReplayOptions()))
    assert first["prompt"].startswith("Which magazine") and first["context"]
    event_from_mapping(first)


def test_the_same_prefix_gives_the_same_ids_so_a_replay_is_idempotent():
    a = [e["event_id"] for e in synthesise(read_jsonl(data_path("halueval_qa")), 574, ReplayOptions(id_prefix="p"))]
    b = [e["event_id"] for e in synthesise(read_jsonl(data_path("halueval_qa")), 574, ReplayOptions(id_prefix="p"))]
    assert a == b and a[0] == "p-halueval-qa-0-0"


def test_a_row_without_any_prompt_field_names_file_and_line(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"id": 1, "prompt": "hi"}) + "\n" + json.dumps({"id": 2, "body": "?"}) + "\n")
    with pytest.raises(ReplayError, match=r"x.jsonl:2: no text prompt"):
        replay_file(f, lambda e: True, ReplayOptions())


def test_a_line_that_is_not_json_names_file_and_line(tmp_path):
    f = tmp_path / "y.jsonl"
    f.write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(ReplayError, match=r"y.jsonl:2: not JSON"):
        replay_file(f, lambda e: True, ReplayOptions())


def test_replay_counts_what_the_publisher_refused(tmp_path):
    f = tmp_path / "z.jsonl"
    f.write_text("".join(json.dumps({"id": i, "prompt": f"q{i}"}) + "\n" for i in range(5)))
    counts = replay_file(f, lambda e: e["event_id"] != "replay-3", ReplayOptions(), limit=4)
    assert counts == {"rows": 4, "published": 3, "refused": 1}


def test_shuffle_publishes_every_row_once_in_a_seeded_order(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text("".join(json.dumps({"id": i, "prompt": f"q{i}"}) + "\n" for i in range(50)))
    seen: list[list[str]] = []
    for _ in range(2):
        ids: list[str] = []
        replay_file(f, lambda e, ids=ids: ids.append(e["event_id"]) or True, ReplayOptions(shuffle=True, seed=3))
        seen.append(ids)
    assert seen[0] == seen[1] and sorted(seen[0]) == sorted(f"replay-{i}" for i in range(50))
    assert seen[0] != [f"replay-{i}" for i in range(50)]
