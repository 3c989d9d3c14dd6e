"""The evaluation table: candidate against current on the drifted held-out and the regression set,
on a tiny GPT-2 built in code (the job's real loading and generation path), and its pure parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from driftwarden.core.loop_configs import RetrainConfig
from driftwarden.core.schemas import RetrainRequest
from driftwarden.retrain_trigger.retraining.curation import Curated, Row
from driftwarden.retrain_trigger.retraining.evaluation import (
    Example, Table, answer_figures, evaluate,
)
from driftwarden.retrain_trigger.retraining.finetune import run
from driftwarden.retrain_trigger.retraining.snapshots import write_snapshot
from driftwarden.tests.tiny_models import build_tiny_causal_lm

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CITIES = ["Paris", "Rome", "Madrid", "Berlin", "Lisbon", "Vienna", "Prague", "Dublin"]


def rows(n: int, prefix: str, context: bool) -> list[Row]:
    return [Row(event_id=f"{prefix}-{i}", ts=T0 + timedelta(seconds=i), prompt=f"What is the capital number {i}?",
                response=f"The capital is {CITIES[i % len(CITIES)]}.",
                context=(f"Capital number {i} is {CITIES[i % len(CITIES)]}.",) if context else ())
            for i in range(n)]


class CountingScorer:
    """Flags an answer that names no city of its context (a stand-in for the product's detectors,
    whose own tests load them; here the table's wiring is under test)."""

    notes: list[str] = []

    def __init__(self):
        self.calls = []

    def available(self):
        return ["hallucination", "toxicity"]

    def __call__(self, name, rows_):
        self.calls.append((name, len(rows_)))
        if name == "toxicity":
            return 0.0
        judged = [r for r in rows_ if r["context"]]
        return sum(1 for r in judged if not any(c in r["answer"] for c in CITIES)) / len(judged) if judged else None


@pytest.mark.timeout(300)
def test_a_job_writes_a_table_of_candidate_against_current_on_both_sets(tmp_path):
    train = rows(40, "after", context=True)
    before = rows(12, "before", context=False)
    model_dir = build_tiny_causal_lm(tmp_path / "tiny", [f"{r.prompt} {r.response}" for r in train])
    request = RetrainRequest(request_id="r", alert_id="a", app="qa", model_version="v1", reason="drift", start=T0,
                             end=T0 + timedelta(hours=1), requested_at=T0)
    snap = write_snapshot(tmp_path / "datasets", request, Curated(train=train, regression=before))
    config = RetrainConfig(base_model=model_dir, max_steps=20, batch_size=4, learning_rate=5e-3, device="cpu",
                           eval_max_events=6, eval_max_new_tokens=8)
    scorer = CountingScorer()
    metrics = run(snap.path, tmp_path / "job", config, progress=False, scorer=scorer)
    table = Table.from_flat(metrics)
    assert set(table.figures) == {"drifted", "regression"}
    for set_name in ("drifted", "regression"):
        for model in ("candidate", "current"):
            got = table.figures[set_name][model]
            assert {"held_out_loss", "empty_rate", "refusal_rate", "answer_words", "toxicity_rate"} <= set(got)
    # Hallucination needs context: the drifted events have it, the regression events do not.
    assert "hallucination_rate" in table.figures["drifted"]["candidate"]
    assert "hallucination_rate" not in table.figures["regression"]["candidate"]
    # The current model's drifted loss is the loss before training; the candidate's the loss after.
    assert table.figures["drifted"]["current"]["held_out_loss"] == metrics["loss_before"]
    assert table.figures["drifted"]["candidate"]["held_out_loss"] == metrics["loss_after"] < metrics["loss_before"]
    assert table.counts == {"drifted": min(6, metrics["held_out_rows"]), "regression": 6}
    written = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert written["evaluation"]["figures"] == table.figures and written["regression_rows"] == 12
    assert written["dataset_sha256"] == snap.manifest["content_sha256"] and metrics["eval_seconds"] > 0
    assert "drifted" in table.render() and "hallucination_rate" in table.render()


@pytest.mark.timeout(300)
def test_a_job_started_from_the_current_adapter_compares_with_it_not_with_the_base(tmp_path):
    train = rows(40, "after", context=False)
    model_dir = build_tiny_causal_lm(tmp_path / "tiny", [f"{r.prompt} {r.response}" for r in train])
    request = RetrainRequest(request_id="r", alert_id="a", app="qa", model_version="v1", reason="drift", start=T0,
                             end=T0 + timedelta(hours=1), requested_at=T0)
    snap = write_snapshot(tmp_path / "datasets", request, Curated(train=train))
    config = RetrainConfig(base_model=model_dir, max_steps=20, batch_size=4, learning_rate=5e-3, device="cpu",
                           eval_max_events=0)
    first = run(snap.path, tmp_path / "first", config, progress=False)
    second = run(snap.path, tmp_path / "second", config, progress=False, current_adapter=tmp_path / "first" / "adapter")
    # The second job starts where the first ended: its "before" is the first's "after".
    assert second["loss_before"] == pytest.approx(first["loss_after"], rel=1e-4)
    assert second["current_adapter"].endswith("adapter")
    assert "no regression set" in " ".join(second["evaluation"]["notes"])
    assert "losses only" in " ".join(second["evaluation"]["notes"])


def test_a_job_killed_before_the_end_leaves_no_metrics_file_from_an_earlier_run(tmp_path):
    from driftwarden.retrain_trigger.retraining.finetune import METRICS, _write_atomically

    out = tmp_path / "job"
    out.mkdir()
    _write_atomically(out / METRICS, "{}")
    assert (out / METRICS).read_text() == "{}" and not list(out.glob(".*.tmp"))


def test_empty_answers_refusals_and_length_are_counted():
    figures = answer_figures(["", "  ", "I'm sorry, but I cannot help with that.", "Paris is the capital of France."])
    assert figures["empty_rate"] == 0.5 and figures["refusal_rate"] == 0.25
    assert figures["answer_words"] == pytest.approx((0 + 0 + 8 + 6) / 4)
    assert answer_figures(["I can't help with that request."])["refusal_rate"] == 1.0
    assert answer_figures(["I cannot wait to visit Rome!"])["refusal_rate"] == 0.0
    assert answer_figures([]) == {}


def test_the_table_survives_flattening_into_the_jobs_metrics_and_back():
    examples = {"drifted": [Example("e1", "q", "a", ("ctx",))], "regression": []}
    models = {"candidate": ("C", 1.0), "current": ("K", 2.0)}
    table = evaluate(examples, models, lambda model, prompts: [f"{model} says hi" for _ in prompts],
                     lambda name, rows_: 0.5, ["toxicity"], max_events=5)
    assert table.figures["drifted"]["candidate"]["held_out_loss"] == 1.0
    assert table.figures["drifted"]["current"]["toxicity_rate"] == 0.5
    assert "no regression events" in " ".join(table.notes)
    back = Table.from_flat({**table.flat(), "loss_before": 3.0})
    assert back.figures == table.figures and back.counts == table.counts
    assert [r[:2] for r in back.rows()][:2] == [("drifted", "held_out_loss"), ("drifted", "toxicity_rate")]


@pytest.mark.timeout(300)
def test_prompts_longer_than_the_models_positions_are_cut_from_the_left_and_still_answered(tmp_path):
    long = "The archive lists every capital city and its history in great detail. " * 40
    train = [Row(event_id=f"long-{i}", ts=T0 + timedelta(seconds=i), prompt=f"What is the capital number {i}?",
                 response=f"The capital is {CITIES[i % len(CITIES)]}.", context=(long,)) for i in range(20)]
    model_dir = build_tiny_causal_lm(tmp_path / "tiny", [f"{r.prompt} {r.response} {long[:200]}" for r in train])
    request = RetrainRequest(request_id="r", alert_id="a", app="qa", model_version="v1", reason="drift", start=T0,
                             end=T0 + timedelta(hours=1), requested_at=T0)
    snap = write_snapshot(tmp_path / "datasets", request, Curated(train=train))
    config = RetrainConfig(base_model=model_dir, max_steps=2, batch_size=4, device="cpu", max_length=1024,
                           eval_max_events=3, eval_max_new_tokens=16)
    metrics = run(snap.path, tmp_path / "job", config, progress=False)
    assert metrics["eval.drifted.events"] == min(3, metrics["held_out_rows"])
    assert "eval.drifted.candidate.answer_words" in metrics


@pytest.mark.timeout(300)
def test_the_products_detectors_judge_generated_answers_against_their_context(tmp_path):
    """The real toxicity and grounding detectors, built as for offline scoring: an answer the
    context does not support is flagged, one it supports is not; events without context are not
    judged for grounding; a detector that cannot be built is left out with a note."""
    from driftwarden.core.settings import load_settings
    from driftwarden.retrain_trigger.retraining.evaluation import DetectorScorer

    settings = load_settings(data_dir=tmp_path)
    scorer = DetectorScorer(settings, ["toxicity", "hallucination", "no-such-detector"])
    assert scorer.available() == ["toxicity", "hallucination"]
    assert "no-such-detector left out" in scorer.notes[0]
    context = ["The Eiffel Tower is in Paris. It was completed in 1889 and is 330 metres tall."]
    supported = {"prompt": "When was the Eiffel Tower completed?", "answer": "It was completed in 1889.",
                 "context": context}
    invented = {"prompt": "When was the Eiffel Tower completed?",
                "answer": "The Eiffel Tower was completed in 1925 by Italian engineers in Rome, for the Olympic "
                          "Games held there that summer.", "context": context}
    assert scorer("hallucination", [supported]) == 0.0
    assert scorer("hallucination", [invented]) == 1.0
    assert scorer("hallucination", [{**supported, "context": []}]) is None, "no context: nothing to judge"
    assert scorer("toxicity", [supported, invented]) == 0.0
    assert scorer("toxicity", [{"prompt": "x", "answer": "You are a worthless idiot and I hate you.",
                                "context": []}]) == 1.0
