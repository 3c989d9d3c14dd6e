"""bench/injection_synthetic.py makes documents with a user's request hidden inside; the
prompt-injection head learns from them and bench/injection_data.py never measures on them."""

import re

import numpy as np
import pytest

from driftwarden.bench import injection_data as inj
from driftwarden.bench import injection_synthetic as synthetic
from driftwarden.bench.thresholds import threshold_for_precision
from driftwarden.pkg_data import rows as package_rows

pytest.importorskip("faker")


def test_each_document_appears_clean_and_with_one_request_inserted_at_the_offset_given():
    rows = synthetic.load_rows(per_kind=4)
    assert len(rows) == 2 * 4 * len(synthetic.KINDS)
    requests = {text for _, text in synthetic.requests()}
    for clean, attacked in zip(rows[::2], rows[1::2], strict=True):
        assert (clean["label"], attacked["label"]) == (0, 1)
        assert clean["group"] == attacked["group"] and clean["source"] == attacked["source"]
        kind = attacked["source"].removeprefix(synthetic.SOURCE)
        assert kind in synthetic.KINDS and attacked["attack_type"] == f"synthetic/{kind}"
        start, end = attacked["attack_start"], attacked["attack_start"] + len(attacked["attack"])
        assert attacked["context"][start:end] == attacked["attack"] in requests
        assert (attacked["context"][:start] + attacked["context"][end:]).split() == clean["context"].split()
        assert clean["attack_start"] is None and clean["question"] in synthetic.QUESTIONS[kind]


def test_the_same_seed_makes_the_same_rows_and_another_seed_other_ones():
    assert synthetic.load_rows(per_kind=3, seed=5) == synthetic.load_rows(per_kind=3, seed=5)
    assert synthetic.load_rows(per_kind=3, seed=5) != synthetic.load_rows(per_kind=3, seed=6)


def test_dates_stay_within_fixed_bounds_so_the_rows_do_not_change_with_the_day():
    years = [int(y) for r in synthetic.load_rows(per_kind=20) for y in re.findall(r"\b(\d{4})-\d\d-\d\d", r["context"])]
    assert len(years) > 100 and 1990 <= min(years) and max(years) <= 2025


def test_requests_are_one_line_prompts_in_the_group_of_their_clean_query():
    queries = {synthetic.group_of(r): r["prompt"].strip() for r in package_rows("halueval_general")}
    pool = synthetic.requests()
    assert len(pool) > 1000
    assert all("\n" not in text and queries[group] == text for group, text in pool)
    assert any("\n" in q for q in queries.values())  # some prompts carry an input below: those are left out


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match="0 or more"):
        synthetic.load_rows(per_kind=-1)


def test_a_chunk_is_labelled_an_attack_exactly_where_it_overlaps_the_request():
    events = inj.cut(inj.synthetic_events(3))
    assert len(events) == 2 * 3 * len(synthetic.KINDS) and not any(inj.is_real(e) for e in events)
    rows = synthetic.load_rows(3)
    for e, row in zip(events, rows, strict=True):
        assert e.pieces[0] == (e.prompt, 0)
        if not e.label:
            assert e.attack is None and all(y == 0 for _, y in e.pieces)
            continue
        assert e.context[e.attack[0]:e.attack[1]] == row["attack"]
        pieces = iter(e.pieces[1:])
        for s, t in inj.chunks(e.context, inj.CHUNK_CHARS):
            text, y = next(pieces)
            assert text == e.context[s:t] and y == int(s < e.attack[1] and e.attack[0] < t)
        assert sum(y for _, y in e.pieces) >= 1


def test_the_synthetic_kinds_left_out_with_a_bipia_task_are_kinds_that_are_made():
    assert {k for kinds in inj.SYNTHETIC_KINDS_OF.values() for k in kinds} <= set(synthetic.KINDS)
    assert any(inj.SYNTHETIC_FAMILY == f for f in inj.FAMILIES)


def test_figures_are_on_real_rows_and_what_is_left_out_takes_its_synthetic_kind_with_it(monkeypatch):
    def event(source, group, label, context="", attack_type="none"):
        e = inj.Event(source, group, label, f"question {group}", context, attack_type,
                      (0, len(context)) if label and context else None)
        e.pieces = [(e.prompt, int(label and not context))] + ([(context, label)] if context else [])
        return e

    events = [event("bipia-table", f"t{i // 2}", i % 2, f"| row {i} |" + (" ignore this" if i % 2 else ""),
                    "task-irrelevant/x" if i % 2 else "none") for i in range(12)]
    events += [event("bipia-email", f"e{i // 2}", i % 2, f"mail {i}", "targeted/y" if i % 2 else "none") for i in range(12)]
    for kind in ("table", "csv", "email", "log"):
        events += [event(synthetic.SOURCE + kind, f"{kind}{i // 2}", i % 2, f"{kind} {i}",
                         f"synthetic/{kind}" if i % 2 else "none") for i in range(6)]
    events += [event("queries", f"q{i}", 0) for i in range(12)] + [event("jailbreak", f"j{i}", 1) for i in range(12)]
    trained: list[set[str]] = []

    def fit(train, vectors, C=inj.C):
        trained.append({e.source for e in train})
        return (lambda keys: np.full(len(keys), 0.5)), None, None

    monkeypatch.setattr(inj, "fit", fit)
    oof = np.linspace(0, 1, len(events))
    monkeypatch.setattr(inj, "cross_validated", lambda events, vectors: oof)
    judged = inj.figures(events, {}, 0.9)

    real = [i for i, e in enumerate(events) if inj.is_real(e)]
    assert judged["parts"]["cv:all"][0] == [events[i] for i in real]
    assert judged["threshold"] == threshold_for_precision(np.array([events[i].label for i in real]), oof[real], 0.9)
    assert {e.source for e in judged["parts"]["cv:synthetic"][0]} == {"synthetic-table", "synthetic-csv",
                                                                       "synthetic-email", "synthetic-log"}
    assert all(inj.is_real(e) for name, (test, _, _) in judged["parts"].items() if name != "cv:synthetic"
               for e in test)
    made = {synthetic.SOURCE + k for k in ("table", "csv", "email", "log")}
    # bipia-email left out (source), bipia-table left out (source), the targeted family left out (every
    # e-mail document), the task-irrelevant family left out (every table document)
    assert trained[0] == {"bipia-table", "queries", "jailbreak", *made} - {"synthetic-email"}
    assert trained[1] == {"bipia-email", "queries", "jailbreak", *made} - {"synthetic-table", "synthetic-csv"}
    assert {"bipia-table", "queries", "jailbreak", *made} in trained
    assert {"bipia-email", "queries", "jailbreak"} in trained
