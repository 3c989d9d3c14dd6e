"""The fine-tuning job on real data: SmolLM2-135M-Instruct (the default base model) with LoRA.

Builds a snapshot of HaluEval QA questions with their right answers (the kind of fresh data a
drift on QA traffic would curate), runs the job for ``--steps`` steps, and prints the held-out
loss before and after and the job's time per 1,000 examples. Last line: ``key=value`` pairs.
Run: ``.venv/bin/python bench/finetune.py [--rows 400] [--steps 40]``.
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
from driftwarden.retrain_trigger.retraining.finetune import run
from driftwarden.retrain_trigger.retraining.snapshots import write_snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    setup_logging("INFO")
    t0 = datetime.now(UTC)
    rows = []
    for i, r in enumerate(data_rows("halueval_qa")):
        if len(rows) >= args.rows:
            break
        if r.get("hallucinated") == 0:
            rows.append(Row(event_id=f"qa-{i}", ts=t0 + timedelta(seconds=i), prompt=r["question"],
                            response=r["answer"]))
    config = load_settings().retrain.model_copy(update={"max_steps": args.steps, "batch_size": args.batch_size})
    with tempfile.TemporaryDirectory() as tmp:
        request = RetrainRequest(request_id="bench", alert_id="bench", app="bench", model_version="v1",
                                 reason="bench", start=t0, end=t0 + timedelta(hours=1), requested_at=t0)
        snap = write_snapshot(Path(tmp) / "datasets", request, Curated(train=rows))
        started = time.perf_counter()
        metrics = run(snap.path, Path(tmp) / "job", config)
        wall = time.perf_counter() - started
    report = {"base_model": metrics["base_model"], "device": metrics["device"], "precision": metrics["precision"],
              "rows": len(rows), "train_rows": metrics["train_rows"], "held_out_rows": metrics["held_out_rows"],
              "steps": metrics["steps"], "batch_size": args.batch_size, "loss_before": metrics["loss_before"],
              "loss_after": metrics["loss_after"], "train_seconds": metrics["train_seconds"],
              "seconds_per_1000_examples": metrics["seconds_per_1000_examples"], "job_wall_seconds": wall}
    for key, value in report.items():
        print(f"{key:<28} {value:,.3f}" if isinstance(value, float) else f"{key:<28} {value}")
    print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
