"""A store seeded with a little of everything (events, detections, drift windows, alerts,
retraining requests and jobs): through the real writer into the embedded engine (:func:`seed`),
or into any store (:func:`write_seed`, for the in-memory one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from driftwarden.core.schemas import (
    AlertEvent,
    DetectionResult,
    DriftCluster,
    Feedback,
    DriftResult,
    EmbeddingRecord,
    RetrainRequest,
    RetrainStatus,
    event_from_mapping,
)
from driftwarden.core.storage.client import open_store
from driftwarden.core.storage.writer import DeadLetter
from driftwarden.tests.cases import valid_event

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
#: A succeeded job's evaluation, as the job flattens it into its metrics.
EVALUATION = {"eval.drifted.events": 40.0, "eval.regression.events": 40.0,
              "eval.drifted.candidate.held_out_loss": 2.9, "eval.drifted.current.held_out_loss": 3.2,
              "eval.drifted.candidate.hallucination_rate": 0.30, "eval.drifted.current.hallucination_rate": 0.31,
              "eval.regression.candidate.held_out_loss": 2.5, "eval.regression.current.held_out_loss": 2.45,
              "eval.regression.candidate.toxicity_rate": 0.0, "eval.regression.current.toxicity_rate": 0.0,
              "eval.regression.candidate.refusal_rate": 0.05, "eval.regression.current.refusal_rate": 0.025}


def seed(settings, n: int = 120):
    """Write the rows into the settings' store; returns the open store (close it)."""
    return write_seed(open_store(settings), n)


def write_seed(store, n: int = 120):
    """Write the rows into ``store``; returns it."""
    w = store
    rng = np.random.default_rng(0)
    events, results, vectors = [], [], []
    for i in range(n):
        mv = "v1" if i < n // 2 else "v2"
        ts = T0 + timedelta(seconds=30 * i)
        event = event_from_mapping(valid_event(f"seed-{i}", app="chat", model_version=mv, timestamp=ts.isoformat(),
                                               status="error" if i % 17 == 0 else "ok",
                                               response="" if i % 17 == 0 else "Sure, here you go.",
                                               prompt=f"question number {i} about my account",
                                               user_id=f"user-{i % 7}",
                                               **({"context": [f"Account {i} is in good standing."]}
                                                  if i % 3 == 0 else {})))
        events.append(event)
        common = {"event_id": event.event_id, "detector_version": "1", "config_fingerprint": "f", "app": "chat",
                  "model_version": mv, "event_ts": ts, "scored_at": ts}
        results.append(DetectionResult(detector="operational", score=0.0, label=False,
                                       scores={"latency_ms": 200.0 + i, "cost_usd": 0.001, "is_error": 0.0},
                                       **common))
        for name in ("toxicity", "prompt_injection", "pii", "hallucination"):
            score = float(rng.random())
            results.append(DetectionResult(detector=name, score=score, label=score > 0.8,
                                           evidence=f"{name} {score:.2f}" if score > 0.8 else None, **common))
        v = rng.normal(size=384).astype(np.float32)
        vectors.append(EmbeddingRecord(event_id=event.event_id, field="prompt", app="chat", model_version=mv,
                                       event_ts=ts, encoder="minilm", computed_at=ts,
                                       vector=(v / np.linalg.norm(v)).tolist()))
    w.insert_events(events)
    w.insert_detections(results)
    w.insert_embeddings(vectors)
    windows = []
    for k in range(4):
        end = T0 + timedelta(minutes=15 * (k + 1))
        windows.append(DriftResult(
            window_id=f"chat/v1/prompt/{k + 1}", app="chat", model_version="v1", field="prompt",
            window_start=end - timedelta(minutes=15), window_end=end, n_reference=30, n_current=30,
            method="mmd2_gaussian_permutation", statistic=0.01 * (k + 1), p_value=0.5 if k < 3 else 0.001,
            reference_policy="baseline", reference_id="chat/v1/prompt/baseline",
            top_event_ids=[f"seed-{40 + k}"], encoder="minilm", detector_version="1", config_fingerprint="f",
            novel_share=0.05 if k < 3 else 0.2,
            clusters=[] if k < 3 else [DriftCluster(size=6, example_event_ids=["seed-41", "seed-42", "seed-43"])],
            part_p_values={} if k < 3 else {"mmd": 0.2, "tail_0.1": 0.001},
            computed_at=end))
    w.insert_drift(windows)
    # Late feedback: two sources on one event (the lower counts), a second write of a source (the
    # last wins), and feedback for an event that never arrives (stored, joins nothing).
    w.insert_feedback([Feedback(event_id="seed-3", score=0.5, source="user", timestamp=T0),
                       Feedback(event_id="seed-3", score=-1.0, source="reviewer", timestamp=T0),
                       Feedback(event_id="seed-5", score=1.0, source="user", timestamp=T0)])
    w.insert_feedback([Feedback(event_id="seed-5", score=-0.5, source="user", timestamp=T0 + timedelta(minutes=7),
                                comment="wrong answer"),
                       Feedback(event_id="not-yet-arrived", score=-1.0, timestamp=T0)])
    # Feedback on a trace: it applies to the trace's calls (ids "<trace id>:<span id>").
    trace = "0af7651916cd43dd8448eb211c80319c"
    w.insert_events([event_from_mapping(valid_event(f"{trace}:{span}", app="chat", model_version="v1",
                                                    timestamp=(T0 + timedelta(seconds=5)).isoformat(),
                                                    response="Traced answer.", prompt="a traced question"))
                     for span in ("b7ad6b7169203331", "00f067aa0ba902b7")])
    w.insert_feedback([Feedback(event_id=trace, score=-0.25, timestamp=T0)])
    w.insert_dead_letters([DeadLetter("llm.inference", 0, k, "validate", "not JSON", b"", b"{oops",
                                      received_at=T0 + timedelta(minutes=k)) for k in range(3)])
    fired = T0 + timedelta(minutes=60)
    alert = AlertEvent(alert_id="prompt-drift:chat:v1:prompt@x", dedupe_key="prompt-drift:chat:v1:prompt",
                       status="firing", rule="prompt-drift", severity="critical", app="chat", model_version="v1",
                       field="prompt", metric="drift_p_value", value=0.001, threshold=0.01, baseline=0.5,
                       summary="Prompts moved.", example_event_ids=["seed-43"], window_id="chat/v1/prompt/4",
                       window_start=fired, window_end=fired, labels={"alertname": "prompt-drift"},
                       dashboard_url="http://grafana/d/x", retrain_requested=True, starts_at=fired,
                       policy_fingerprint="p")
    w.insert_alerts([alert])
    request = RetrainRequest(request_id=alert.alert_id, alert_id=alert.alert_id, app="chat", model_version="v1",
                             reason="prompt-drift", start=fired - timedelta(minutes=15), end=fired,
                             requested_at=fired)
    w.insert_retrain_requests([request])
    w.insert_retrain_status([
        RetrainStatus(job_id="job-1", request_id=request.request_id, app="chat", model_version="v1", status=s,
                      launcher="local", dataset_version="20260101T000000-abc", dataset_rows=25,
                      metrics={"loss_before": 3.2, "loss_after": 2.9, **EVALUATION} if s == "succeeded" else {},
                      updated_at=fired + timedelta(seconds=10 * i),
                      **({"decision": "hold", "decision_reasons": ["promote rule: drifted hallucination_rate: "
                                                                   "does not hold"],
                          "registered_model": "driftwarden-chat", "registered_version": "1"}
                         if s == "succeeded" else {}))
        for i, s in enumerate(("queued", "running", "succeeded"))])
    return store
