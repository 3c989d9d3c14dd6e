"""Policy agent: detections and drift windows in, alerts and retraining requests out.

Consumes ``llm.detections`` (one record per event) into detection windows per app and model
version, ``llm.feedback`` (late feedback, joined to its event's segment: from the events seen
lately, else from the store; feedback whose event is not stored yet is not judged) into the same
windows, and ``llm.drift`` (closed drift windows); the :class:`PolicyEngine` judges each
window's metrics against the rules and the agent sends what it decides to ``llm.alerts`` and
``llm.retrain``. Runs in the sink process. Its state is durable: the changed open detection
windows and rule states of a batch are written to the store's ``segment_state`` in one insert
before the batch's offsets are acknowledged, and read back at start and on every partition
assignment (windows only for the segments of this sink's partitions), so a sink killed at any
point judges, after its restart, the same windows with the same events; an event delivered again
is not counted twice. Its state is bounded per segment
(``DRIFTWARDEN_SEGMENT_IDLE_MINUTES``, ``DRIFTWARDEN_MAX_SEGMENTS``). A record that cannot be
parsed or judged, a message that cannot be sent and a failing timer run are logged and skipped:
the stream goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict

import faust

from driftwarden.core.schemas import DriftResult, parse_detections, parse_feedback
from driftwarden.core.settings import Settings
from driftwarden.core.storage.writer import until_acknowledged
from driftwarden.detectors.drift.windows import join_id
from driftwarden.retrain_trigger.alerting.policy import (
    RULE_KIND,
    Decision,
    DetectionWindows,
    PolicyEngine,
    RecentSegments,
    WINDOW_KIND,
    drift_observations,
)
from driftwarden.retrain_trigger.alerting.rules import load_policy
from driftwarden.streams.guard import exit_process, guarded
from driftwarden.streams.topics import TopicNames, partition_of
from driftwarden.streams.validation import parsed

log = logging.getLogger(__name__)

UNKNOWN_TTL_S = 60.0
#: Detection records per batch at most, and how long a batch waits to fill.
BATCH, LINGER_S = 500, 0.5


def attach(app: faust.App, settings: Settings, topics: TopicNames, store=None
           ) -> tuple[PolicyEngine, DetectionWindows, Counter]:
    """Attach the policy's agents; ``store`` (the sink's) finds the segment of feedback whose event
    was not seen lately. Returns the engine, the windows and the feedback counters."""
    policy = load_policy(settings.policy_file)
    bounds = {"idle_minutes": settings.segment_idle_minutes, "max_segments": settings.max_segments}
    engine = PolicyEngine(policy, grafana_url=settings.grafana_url, durable=store is not None, **bounds)
    windows = DetectionWindows(policy.window_size, policy.window_minutes,
                               max_subjects=policy.max_subjects if policy.per_subject else 0, **bounds)
    windows_of = topics.detections
    alerts = app.topic(topics.alerts, value_serializer="raw", key_serializer="raw")
    retrain = app.topic(topics.retrain, value_serializer="raw", key_serializer="raw")
    log.info("policy %s: %d rules from %s", engine.fingerprint, len(policy.rules),
             settings.policy_file or "the shipped default")

    metrics = getattr(app, "metrics", None)
    restored = asyncio.Event()
    lock = asyncio.Lock()
    """Held from judging to the written state: another agent's checkpoint never carries a state
    whose alert is not sent yet, and a rebalance's reload never drops one being written."""

    @app.task
    async def restore_rule_states():
        """Rule states written before a restart (or by the sink that held these partitions) first."""
        try:
            if store is not None:
                saved = await asyncio.to_thread(store.segment_states, RULE_KIND)
                n = engine.restore(saved)
                if n:
                    log.info("policy: %d rule state(s) read back from the store (streaks, firing rules, cooldowns)", n)
        except Exception as exc:  # noqa: BLE001 - judging without them could fire twice: restart instead
            exit_process("reading the policy's rule states from the store", exc)
        restored.set()

    async def forget_app(name: str) -> None:
        async with lock:
            engine.forget_app(name)
            windows.forget_app(name)

    getattr(app, "purge_hooks", []).append(forget_app)

    @app.on_partitions_assigned.connect
    async def take_over(sender, assigned, **kwargs):  # noqa: ARG001 - faust's signal signature
        """On every assignment (the first included): the open detection windows of the segments whose
        partition this sink now holds, and, after a rebalance, every rule state (another sink may
        have judged some segments). Each sink writes both before it acknowledges what changed them."""
        if store is None:
            return  # no waiting for ``restored`` here: faust starts tasks only after the first assignment
        mine = {tp.partition for tp in assigned if tp.topic == windows_of}
        count = app.consumer.topic_partitions(windows_of) or settings.topic_partitions
        async with lock:
            try:
                saved_windows = await asyncio.to_thread(store.segment_states, WINDOW_KIND)
                saved_rules = await asyncio.to_thread(store.segment_states, RULE_KIND)
            except Exception as exc:  # noqa: BLE001 - judging on stale states could fire twice: restart instead
                exit_process("reading the policy's detection windows and rule states after a rebalance", exc)
            n = windows.restore(saved_windows, lambda key: partition_of(f"{key[0]}/{key[1]}".encode(), count) in mine,
                                replace=True)
            engine.restore(saved_rules, replace=True)
        if n:
            log.info("policy: %d open detection window(s) of partitions %s read back from the store", n, sorted(mine))

    async def persist() -> None:
        """Changed detection windows and rule states to the store, in one write, before the records
        that changed them are acknowledged."""
        rules = {key: (json.loads(key)[1], state) for key, state in engine.checkpoint().items()}
        opened = windows.checkpoint()
        if store is None or not (rules or opened):
            return
        await until_acknowledged(lambda: store.save_segment_states({RULE_KIND: rules, WINDOW_KIND: opened}),
                                 what=f"{len(opened)} detection window(s) and {len(rules)} rule state(s)",
                                 max_backoff_s=settings.sink_retry_max_s)

    async def emit(decision: Decision) -> None:
        await restored.wait()
        for alert in decision.alerts:
            try:
                await (await alerts.send(key=alert.dedupe_key.encode(), value=alert.to_json_bytes()))
            except Exception as exc:  # noqa: BLE001 - the rule is firing now: its alert must not be lost
                exit_process(f"sending alert {alert.alert_id!r} to {topics.alerts}", exc)
            if metrics is not None:
                metrics.alerts.labels(alert.rule[:128], alert.status).inc()
        for request in decision.requests:
            log.warning("retraining requested for %s (events %s .. %s): %r",
                        join_id(request.app, request.model_version), request.start, request.end, request.reason[:200])
            try:
                await (await retrain.send(key=join_id(request.app, request.model_version).encode(),
                                          value=request.to_json_bytes()))
            except Exception as exc:  # noqa: BLE001 - nor its retraining request
                exit_process(f"sending retraining request {request.request_id!r} to {topics.retrain}", exc)
            if metrics is not None:
                metrics.retrain_requests.inc()
        await persist()

    @app.agent(app.topic(topics.detections, value_serializer="raw", key_serializer="raw"), name="policy-detections")
    @guarded("the policy agent (detections)")
    async def policy_detections(stream):
        """In batches: the windows' and rules' changes are written once per batch, before its offsets
        are acknowledged (take_events acks them after this body)."""
        await restored.wait()
        async for batch in stream.take_events(BATCH, within=LINGER_S):
            async with lock:
                observations = []
                for event in batch:
                    try:
                        results = parse_detections(event.message.value)
                    except Exception:  # noqa: BLE001 - the sink dead-letters it with the reason
                        continue
                    try:
                        if results:
                            recent.remember(results[0].event_id, results[0].app, results[0].model_version)
                        observations += windows.add(results)
                    except Exception:  # noqa: BLE001 - one record's failure must not stop the stream
                        log.error("policy agent could not take the detections of event %r; they are skipped and the "
                                  "stream goes on. If this repeats, look at the error below",
                                  results[0].event_id if results else None, exc_info=True)
                try:
                    decision = engine.observe(observations)
                except Exception:  # noqa: BLE001
                    log.error("policy agent could not judge %d detection window observation(s); they are skipped and "
                              "the stream goes on. If this repeats, look at the error below", len(observations),
                              exc_info=True)
                    decision = Decision()
                await emit(decision)

    @app.agent(app.topic(topics.drift, value_serializer="raw", key_serializer="raw"), name="policy-drift")
    @guarded("the policy agent (drift)")
    async def policy_drift(stream):
        await restored.wait()
        async for result in parsed(stream, DriftResult.model_validate_json, "policy agent"):
            async with lock:
                try:
                    decision = engine.observe(drift_observations(result, texts=settings.alerts.example_texts))
                except Exception:  # noqa: BLE001
                    log.error("policy agent could not judge drift window %r; it is skipped and the stream goes on. If "
                              "this repeats, look at the error below", result.window_id, exc_info=True)
                    continue
                await emit(decision)

    recent = RecentSegments()
    unknown: OrderedDict[str, float] = OrderedDict()
    """Ids the store did not know, and when it was asked (not asked again for UNKNOWN_TTL_S)."""
    feedback_counts: Counter[str] = Counter()

    @app.agent(app.topic(topics.feedback, value_serializer="raw", key_serializer="raw"), name="policy-feedback")
    @guarded("the policy agent (feedback)")
    async def policy_feedback(stream):
        await restored.wait()
        async for batch in stream.take(500, within=1.0):
            items = []
            for raw in batch:
                try:
                    items.append(parse_feedback(raw))
                except Exception:  # noqa: BLE001 - the sink dead-letters it with the reason
                    feedback_counts["feedback_unreadable"] += 1
            now = time.monotonic()
            while unknown and next(iter(unknown.values())) < now - UNKNOWN_TTL_S:
                unknown.popitem(last=False)
            missing = sorted({f.event_id for f in items if recent.get(f.event_id) is None and f.event_id not in unknown})
            found: dict = {}
            if missing and store is not None:
                try:
                    found = await asyncio.to_thread(store.event_segments, missing)
                except Exception:  # noqa: BLE001 - not judged now; the feedback itself is stored by the sink
                    log.warning("policy agent could not look up the events of %d feedback record(s) in the store; "
                                "they are not judged (they are still stored). If this repeats, check the store",
                                len(missing), exc_info=True)
            observations = []
            for f in items:
                segment = recent.get(f.event_id) or found.get(f.event_id)
                if segment is None:  # not stored (yet): asked again only after a while
                    feedback_counts["feedback_event_unknown"] += 1
                    unknown[f.event_id] = now
                    unknown.move_to_end(f.event_id)
                    while len(unknown) > 100_000:
                        unknown.popitem(last=False)
                    continue
                feedback_counts["feedback_judged"] += 1
                observations += windows.add_feedback(*segment, f.score, f.event_id, f.timestamp, f.source)
            async with lock:
                try:
                    decision = engine.observe(observations)
                except Exception:  # noqa: BLE001
                    log.error("policy agent could not judge feedback; it is skipped and the stream goes on", exc_info=True)
                    continue
                await emit(decision)

    @app.timer(interval=5.0)
    async def close_detection_windows():
        if not restored.is_set():
            return
        async with lock:
            try:
                decision = engine.observe(windows.due())
                engine.evict_idle()
            except Exception:  # noqa: BLE001 - the timer runs again in 5 s
                log.error("policy agent could not close detection windows by time or evict idle segments; the timer "
                          "tries again in 5 s. If this repeats, look at the error below", exc_info=True)
                return
            await emit(decision)

    return engine, windows, feedback_counts
