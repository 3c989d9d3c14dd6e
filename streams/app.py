"""The faust app. One factory builds the only ``faust.App`` of a process for its role.

Roles are consumer groups: ``score`` workers (scale out by starting more) validate and score
events; the one ``sink`` process writes topics to ClickHouse (it owns an embedded store) and
runs the agents that need one instance or the store: drift windows, the policy, alert delivery
and retraining.
Both roles share this module, the topics in :mod:`driftwarden.streams.topics`, and their
agents live one per module (:mod:`.score_agent`, :mod:`.sink_agent`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Literal

import faust

from driftwarden.core.errors import SettingsError
from driftwarden.core.settings import Settings
from driftwarden.streams.topics import TopicNames, bootstrap_servers
from driftwarden.streams.transport import transport_class

log = logging.getLogger(__name__)

Role = Literal["score", "sink"]


def _credentials(settings: Settings):
    proto = settings.kafka_security_protocol
    context = None
    if proto in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
    if proto.startswith("SASL"):
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=password,
            ssl_context=context, mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def consumer_unacked(consumer: Any) -> int:
    """How many messages faust's consumer still waits on (-1 when it does not say)."""
    try:
        return len(consumer._unacked_messages)
    except (AttributeError, TypeError):
        return -1


def stop_waiting(consumer: Any) -> None:
    """End faust's wait for unacknowledged messages (``Consumer.wait_empty``), which ignores being
    cancelled: forget the messages it waits on and wake it. Its last commit still takes only
    acknowledged offsets, so what was forgotten is read again at the next start."""
    unacked = getattr(consumer, "_unacked_messages", None)
    if unacked is not None:
        unacked.clear()
    waiting = getattr(consumer, "_waiting_for_ack", None)
    if waiting is not None and not waiting.done():
        waiting.set_result(None)


def app_class(transport: Any, role: str, stop_wait_s: float) -> type[faust.App]:
    """faust's App with the transport given and a stop that waits ``stop_wait_s`` at most for the
    batches in flight (``DRIFTWARDEN_STOP_WAIT_S``)."""

    class App(faust.App):
        def _new_transport(self) -> Any:  # the consumers' fetch wait from the settings (streams/transport.py)
            return transport(self.conf.broker_consumer, self)

        async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
            """At a rebalance, wait for every batch in flight (a drift segment's checkpoint is written
            before its partition moves); at a stop, ``stop_wait_s`` at most. faust's batching drops,
            at a stop, the batch it was still filling without acknowledging it (faust-streaming
            issue #162), and faust's wait for it never ended: the process was killed at the end of
            its grace period, holding its partitions until then."""
            if not self.should_stop:
                await super()._consumer_wait_empty(consumer, logger)
                return
            waiting = asyncio.ensure_future(super()._consumer_wait_empty(consumer, logger))
            done, _ = await asyncio.wait({waiting}, timeout=stop_wait_s)
            if not done:
                log.warning("%s: %d message(s) handed to agents were not acknowledged %.0f s after the stop began "
                            "(a batch still being handled, or one faust dropped at the stop); stopping without "
                            "them: they are not committed, so they are read again at the next start", role,
                            consumer_unacked(consumer), stop_wait_s)
                stop_waiting(consumer)
                await waiting  # faust's wait ends and commits what was acknowledged

    return App


def create_app(role: Role, settings: Settings, *, web_port: int | None = None) -> faust.App:
    """A faust app for ``role`` with its agents attached; run it with :func:`run_worker`."""
    port = settings.sink_web_port if role == "sink" else settings.worker_web_port
    port = port if web_port is None else web_port
    datadir = (settings.data_dir / "faust" / f"{role}-{port}").resolve()
    try:
        datadir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only image, a volume owned by another user
        raise SettingsError([("DRIFTWARDEN_DATA_DIR", f"{settings.data_dir} is not writable by this process "
                                                     f"({type(exc).__name__}: {exc}); mount a writable volume there "
                                                     "or point the variable at a writable directory")]) from exc
    transport = transport_class(settings.consumer_fetch_max_wait_ms)

    App = app_class(transport, role, settings.stop_wait_s)

    app = App(
        f"driftwarden-{role}",
        broker=[f"kafka://{s}" for s in bootstrap_servers(settings)],
        broker_credentials=_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Results leave in the same burst as their batch: linger a little and send big batches
        # (aiokafka otherwise sends one small request per message; bench/pipeline.py).
        producer_linger=0.005,
        producer_max_batch_size=1 << 20,
        producer_max_request_size=max(1 << 20, settings.max_event_bytes + (64 << 10)),
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        datadir=str(datadir),
        web_enabled=bool(port),
        web_port=port or 6066,
        web_bind=settings.web_bind,
        web_in_thread=False,
        # No table routing is used; faust's /router and /table pages would show topology and data.
        web_router_enabled=False,
        web_tables_enabled=False,
    )
    topics = TopicNames.from_settings(settings)
    from driftwarden.streams import web

    app.metrics, app.readiness = web.install(app, settings, role)  # type: ignore[attr-defined]
    if role == "score":
        from driftwarden.streams import score_agent

        score_agent.attach(app, settings, topics)
    elif role == "sink":
        from driftwarden.streams import sink_agent

        store = sink_agent.attach(app, settings, topics)
        progress = app.progress_sources  # type: ignore[attr-defined]  (the sink's /progress/ page reads them)
        if settings.drift.enabled:
            from driftwarden.streams import drift_agent

            progress.append(drift_agent.attach(app, settings, topics, store).counters)
        if settings.policy_enabled:
            from driftwarden.streams import alert_agent, policy_agent

            engine, detection_windows, feedback_counts = policy_agent.attach(app, settings, topics, store)
            progress.extend((engine.counters, detection_windows.counters, lambda: dict(feedback_counts)))
            alert_agent.attach(app, settings, topics, store)
        if settings.retrain.enabled:
            from driftwarden.streams import retrain_agent

            retrain_agent.attach(app, settings, topics, store)
    else:
        raise ValueError(f"unknown role {role!r}")
    return app


def run_worker(app: faust.App, loglevel: str = "INFO") -> None:
    """Run the app's worker in the foreground until SIGINT/SIGTERM."""
    import gc

    from faust.worker import Worker

    # Everything loaded so far (models, libraries: millions of objects) lives as long as the process:
    # the cyclic collector no longer walks it, neither in each full collection while running nor at
    # exit, where walking it took 3 of the 4.5 s a worker or sink took to exit after it had stopped.
    gc.collect()  # what loading left as garbage is freed, not kept for ever
    gc.freeze()
    Worker(app, loglevel=loglevel.lower(), quiet=True).execute_from_commandline()
