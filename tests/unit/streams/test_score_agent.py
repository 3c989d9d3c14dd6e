"""The score agent's grouping of a batch's records into one topic record per event."""

from __future__ import annotations

from types import SimpleNamespace

from driftwarden.streams.score_agent import per_event


def test_records_are_grouped_by_event_in_the_order_events_first_appear():
    records = [SimpleNamespace(event_id=e, n=i) for i, e in enumerate(["b", "a", "b", "c", "a"])]
    groups = per_event(records)
    assert [[r.n for r in g] for g in groups.values()] == [[0, 2], [1, 4], [3]]
    assert list(groups) == ["b", "a", "c"]


def test_no_records_make_no_groups():
    assert per_event([]) == {}
