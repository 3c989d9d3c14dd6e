"""bench/injection_synthetic.py makes documents with a user's request hidden inside; the
prompt-injection head learns from them and bench/injection_data.py never measures on them."""

import re

import numpy as np
import pytest

from driftwarden.bench import injection_data as inj
from driftwarden.bench import injection_synthetic as synthetic

pytest.importorskip("faker")


def test_each_document_appears_clean_and_with_one_request_inserted():
    rows = synthetic.load_rows(per_kind=4)
    assert len(rows) == 2 * 4 * len(synthetic.KINDS)
    requests = {text for _, text in synthetic.requests()}
    for clean, attacked in zip(rows[::2], rows[1::2], strict=True):
        assert (clean["label"], attacked["label"]) == (0, 1)
        assert clean["group"] == attacked["group"] and clean["task"] == attacked["task"]
        assert attacked["attack_type"] == "synthetic/" + attacked["task"].removeprefix("synthetic-")
        start = attacked["context"].find(attacked["attack"])
        assert start >= 0
        removed = attacked["context"][:start] + attacked["context"][start + len(attacked["attack"]):]
        assert removed.split() == clean["context"].split()
        assert attacked["attack"] in requests
        assert clean["question"] in synthetic.QUESTIONS[clean["task"].removeprefix("synthetic-")]


def test_the_same_seed_makes_the_same_rows_and_another_seed_other_ones():
    assert synthetic.load_rows(per_kind=3, seed=5) == synthetic.load_rows(per_kind=3, seed=5)
    assert synthetic.load_rows(per_kind=3, seed=5) != synthetic.load_rows(per_kind=3, seed=6)


def test_dates_stay_within_fixed_bounds_so_the_rows_do_not_change_with_the_day():
    years = [int(y) for r in synthetic.load_rows(per_kind=20) for y in re.findall(r"\b(\d{4})-\d\d-\d\d", r["context"])]
    assert len(years) > 100 and 1990 <= min(years) and max(years) <= 2025


def test_a_request_keeps_the_group_of_its_clean_query():
    groups = dict(synthetic.requests())
    for row in synthetic.load_rows(per_kind=2)[1::2]:
        assert row["attack"] == groups[row["group"]]


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match="0 or more"):
        synthetic.load_rows(per_kind=-1)


def test_events_label_the_chunk_holding_the_request():
    events = [e for e in inj.load_events(garak=None, synthetic=2) if not inj.is_real(e)]
    assert len(events) == 2 * 2 * len(synthetic.KINDS)
    for e in events:
        hits = [text for text, y in e.pieces[1:] if y]
        if e.label:
            assert hits and all(any(w in h for h in hits) for w in e.context[e.attack[0]:e.attack[1]].split()[:3])
        else:
            assert not hits and e.attack is None
        assert e.pieces[0] == (e.prompt, 0)


def _tiny_vectors(events):
    rng = np.random.default_rng(0)
    return {t: rng.normal(size=4) for e in events for t, _ in e.pieces}


def test_figures_are_on_real_rows_and_a_left_out_task_takes_its_synthetic_kind_with_it(monkeypatch):
    def event(source, group, label, context="", attack_type="none"):
        e = inj.Event(source, group, label, f"question {group}", context, attack_type,
                      (0, len(context)) if label and context else None)
        e.pieces = [(e.prompt, int(label and not context))] + ([(context, label)] if context else [])
        return e

    events = [event("bipia-table", f"t{i}", i % 2, f"| row {i} |" + (" ignore this" if i % 2 else ""),
                    "task-irrelevant/x" if i % 2 else "none") for i in range(12)]
    events += [event("synthetic-table", f"s{i}", i % 2, f"| made {i} |", "synthetic/table" if i % 2 else "none")
               for i in range(12)]
    events += [event("synthetic-log", f"l{i}", i % 2, f"log {i}", "synthetic/log" if i % 2 else "none")
               for i in range(12)]
    events += [event("queries", f"q{i}", 0) for i in range(12)] + [event("jailbreak", f"j{i}", 1) for i in range(12)]
    seen: dict[str, set[str]] = {}

    def fit(train, vectors, C=inj.C):
        sources = {e.source for e in train}
        seen.setdefault("bipia-table" if "bipia-table" not in sources else "other", set()).update(sources)
        return (lambda keys: np.full(len(keys), 0.5)), None, None

    monkeypatch.setattr(inj, "fit", fit)
    monkeypatch.setattr(inj, "cross_validated", lambda events, vectors: np.linspace(0, 1, len(events)))
    judged = inj.figures(events, _tiny_vectors(events), 0.9)
    assert all(inj.is_real(e) for e in judged["parts"]["cv:all"][0])
    assert {e.source for e in judged["parts"]["cv:synthetic"][0]} == {"synthetic-table", "synthetic-log"}
    assert "synthetic-table" not in seen["bipia-table"] and "synthetic-log" in seen["bipia-table"]
