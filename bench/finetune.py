"""The fine-tuning job on real data: SmolLM2-135M-Instruct (the default base model) with LoRA,
then its evaluation against the base model, as the loop runs it.

Builds a snapshot as a drift onto QA traffic would curate it: HaluEval QA questions with their
right answers and the passages they are grounded in (the drifted population, of which the job
holds a part out), and HaluEval general prompts and responses as the regression set from before
the drift. Runs the job for ``--steps`` steps, then the evaluation: the candidate and the base
model answer up to ``--eval-events`` prompts of each set (greedy, ``--new-tokens`` at most), and
the product's detectors (toxicity, grounded hallucination) judge the answers.

Prints the held-out loss before and after, seconds per 1,000 training examples, evaluation
seconds per 100 events (each answered by both models and scored), and the candidate's
hallucination rate on the drifted held-out against the base model's. Last line: ``key=value``.
Run: ``.venv/bin/python bench/finetune.py [--rows 400] [--steps 60] [--eval-events 64]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from driftwarden.core.logging import setup_logging
from driftwarden.core.schemas import RetrainRequest
from driftwarden.core.settings import load_settings
from driftwarden.pkg_data import rows as data_rows
from driftwarden.retrain_trigger.retraining.curation import Curated, Row
from driftwarden.retrain_trigger.retraining.evaluation import DetectorScorer, Table
from driftwarden.retrain_trigger.retraining.finetune import run
from driftwarden.retrain_trigger.retraining.snapshots import write_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400, help="drifted (QA) rows in the snapshot")
    parser.add_argument("--regression-rows", type=int, default=200)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--eval-events", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args()
    setup_logging("INFO")
    t0 = datetime.now(UTC)
    drifted = []
    for i, r in enumerate(data_rows("halueval_qa")):
        if len(drifted) >= args.rows:
            break
        if r.get("hallucinated") == 0:
            drifted.append(Row(event_id=f"qa-{i}", ts=t0 + timedelta(seconds=i), prompt=r["question"],
                               response=r["answer"], context=(r["context"],)))
    regression = [Row(event_id=f"general-{i}", ts=t0 - timedelta(hours=1, seconds=-i), prompt=r["prompt"],
                      response=r["response"])
                  for i, r in enumerate(data_rows("halueval_general")) if r.get("response")][:args.regression_rows]
    settings = load_settings()
    config = settings.retrain.model_copy(update={"max_steps": args.steps, "batch_size": args.batch_size,
                                                 "eval_max_events": args.eval_events,
                                                 "eval_max_new_tokens": args.new_tokens})
    with tempfile.TemporaryDirectory() as tmp:
        request = RetrainRequest(request_id="bench", alert_id="bench", app="bench", model_version="v1",
                                 reason="bench", start=t0, end=t0 + timedelta(hours=1), requested_at=t0)
        snap = write_snapshot(Path(tmp) / "datasets", request, Curated(train=drifted, regression=regression))
        started = time.perf_counter()
        metrics = run(snap.path, Path(tmp) / "job", config,
                      scorer=DetectorScorer(settings, config.eval_detectors))
        wall = time.perf_counter() - started
    table = Table.from_flat(metrics)
    evaluated = sum(table.counts.values())
    drifted_fig = table.figures.get("drifted", {})
    report = {"base_model": metrics["base_model"], "device": metrics["device"], "precision": metrics["precision"],
              "rows": len(drifted), "train_rows": metrics["train_rows"], "held_out_rows": metrics["held_out_rows"],
              "regression_rows": metrics["regression_rows"], "steps": metrics["steps"], "batch_size": args.batch_size,
              "loss_before": metrics["loss_before"], "loss_after": metrics["loss_after"],
              "train_seconds": metrics["train_seconds"],
              "seconds_per_1000_examples": metrics["seconds_per_1000_examples"],
              "eval_events": evaluated, "eval_seconds": metrics["eval_seconds"],
              "eval_seconds_per_100_events": 100 * metrics["eval_seconds"] / max(evaluated, 1),
              "hallucination_rate_candidate": drifted_fig.get("candidate", {}).get("hallucination_rate", float("nan")),
              "hallucination_rate_base": drifted_fig.get("current", {}).get("hallucination_rate", float("nan")),
              "job_wall_seconds": wall}
    print(table.render())
    for note in table.notes:
        print("note:", note)
    for key, value in report.items():
        print(f"{key:<30} {value:,.4f}" if isinstance(value, float) else f"{key:<30} {value}")
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
