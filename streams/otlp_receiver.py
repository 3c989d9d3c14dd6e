"""The OTLP/HTTP receiver: OpenTelemetry traces and logs in, inference events on ``llm.inference``.

``POST /v1/traces`` and ``POST /v1/logs`` take ``application/x-protobuf`` or ``application/json``
bodies, gzip or not, and answer in the request's encoding with the ``Export*ServiceResponse``
(``partial_success`` counts the LLM spans that went to the dead-letter topic). A body that does
not decode is answered 400, one over ``DRIFTWARDEN_OTLP__MAX_BODY_BYTES`` 413, an unknown media
type 415, all with a ``google.rpc.Status``. While the producer's queue cannot take a request's
spans (the broker slow or away) the answer is 503 (or 429, ``DRIFTWARDEN_OTLP__BUSY_STATUS``) with
``Retry-After``, so exporters retry and nothing is dropped; while the receiver stops, 503.

Spans become events through :mod:`driftwarden.core.ingest.otlp` (the ingestion seam); this module
only serves HTTP and hands the results to a :class:`~driftwarden.streams.publisher.Publisher`.
``POST /v1/feedback`` takes late feedback (JSON, one object or a list) for ``llm.feedback``.
``GET /stats`` shows the counters (spans received, mapped, skipped, dead-lettered by convention;
log records joined and dropped; answers by status); ``GET /metrics`` the same for Prometheus, with
the Publisher's; ``GET /healthz`` answers while the loop runs, ``GET /readyz`` while the receiver
takes requests (not stopping, the producer's queue not full).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections import Counter
from typing import Any

from driftwarden.core.errors import OtlpDecodeError
from driftwarden.core.ingest.otlp.decode import (
    content_kind,
    decode_logs,
    decode_traces,
    export_response,
    gunzip,
    status_body,
)
from driftwarden.core.ingest.otlp.mapper import Outcome, SpanMapper, summary
from driftwarden.core.schemas import EventLimits
from driftwarden.core.settings import Settings
from driftwarden.streams.publisher import Publisher
from driftwarden.streams.validation import dead_letter_headers, fit_dead_letter
from driftwarden.streams.web import register_process

log = logging.getLogger(__name__)

#: gRPC status codes used in the ``Status`` bodies.
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE = 3, 8, 14
TICK_S = 0.2
MAX_FEEDBACK_ITEMS = 1_000
LOG_EVERY_S = 60.0
#: How long a stopping receiver waits for the broker to take what it holds (within Kubernetes'
#: default 30 s grace).
FLUSH_AT_STOP_S = 20.0


class OtlpReceiver:
    """The receiver's logic over aiohttp; :meth:`app` builds the web application."""

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self.settings = settings
        self.config = settings.otlp
        self.publisher = publisher
        self.mapper = SpanMapper(self.config, EventLimits.from_settings(settings))
        self.answers: Counter[int] = Counter()
        self.stopping = False
        self._ticker: asyncio.Task | None = None
        self._logged_at = time.monotonic()
        self.registry = self._registry()

    def _registry(self) -> Any:
        from prometheus_client import CollectorRegistry

        from driftwarden.streams.metrics import MappingCollector
        from driftwarden.streams.publisher_metrics import PublisherCollector

        registry = CollectorRegistry()
        registry.register(MappingCollector("driftwarden_otlp_items", "Spans and log records by what became of "
                                           "them (the counts of /stats)", "what", lambda: summary(self.mapper.counts)))
        registry.register(MappingCollector("driftwarden_otlp_responses", "Answers by HTTP status", "code",
                                           lambda: {str(k): v for k, v in self.answers.items()}))
        registry.register(MappingCollector("driftwarden_otlp_pending_spans", "LLM spans waiting for their log "
                                           "records", "state", lambda: {"waiting": self.mapper.pending}, "gauge"))
        registry.register(PublisherCollector(self.publisher))
        return registry

    # --- the application ------------------------------------------------------------------------

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/v1/traces", self.traces)
        app.router.add_post("/v1/logs", self.logs)
        app.router.add_post("/v1/feedback", self.feedback)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/readyz", self.ready)
        app.router.add_get("/", self.health)
        app.on_startup.append(self._start_ticker)
        app.on_shutdown.append(self._stop)
        return app

    async def _start_ticker(self, _app: Any) -> None:
        self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._publish(self.mapper.due(time.monotonic()))
                if time.monotonic() - self._logged_at >= LOG_EVERY_S:
                    self._logged_at = time.monotonic()
                    log.info("OTLP receiver: %s; answers %s", json.dumps(summary(self.mapper.counts)),
                             dict(self.answers))
            except Exception:  # noqa: BLE001 - the timer keeps running
                log.exception("the OTLP receiver's timer failed; it runs again in %.1f s", TICK_S)

    async def _stop(self, _app: Any) -> None:
        """Map what still waits for its log records, then hand everything to the broker."""
        self.stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
        self._publish(self.mapper.drain())
        delivered = await asyncio.get_running_loop().run_in_executor(None, self.publisher.flush, FLUSH_AT_STOP_S)
        if not delivered:
            log.error("the OTLP receiver could not hand %d record(s) to the broker within %.0f s of stopping; they "
                      "are lost (the exporters were told they were taken). Check the broker.",
                      self.publisher.capacity - self.publisher.room, FLUSH_AT_STOP_S)

    # --- handlers -----------------------------------------------------------------------------

    async def health(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"status": "stopping" if self.stopping else "ok"},
                                 status=503 if self.stopping else 200)

    async def ready(self, request: Any) -> Any:
        from aiohttp import web

        room = self.publisher.room
        checks = {"accepting": {"ok": not self.stopping, "detail": "stopping" if self.stopping else "yes"},
                  "producer_queue": {"ok": room > 0, "detail": f"room for {room} record(s)"}}
        ready = all(c["ok"] for c in checks.values())
        return web.json_response({"ready": ready, "role": "otlp", "checks": checks}, status=200 if ready else 503)

    async def metrics(self, request: Any) -> Any:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stats(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({
            "counts": summary(self.mapper.counts), "pending_spans": self.mapper.pending,
            "answers": {str(k): v for k, v in sorted(self.answers.items())},
            "publisher": {"queued": self.publisher.stats.queued, "sent": self.publisher.stats.sent,
                          "refused": self.publisher.stats.refused, "room": self.publisher.room},
        })

    async def traces(self, request: Any) -> Any:
        return await self._export(request, "traces")

    async def logs(self, request: Any) -> Any:
        return await self._export(request, "logs")

    async def feedback(self, request: Any) -> Any:
        """``POST /v1/feedback``: one feedback object or a list of them (JSON), for ``llm.feedback``.

        Answers 200 ``{"accepted": n, "rejected": [{"index": i, "reason": ...}]}`` when any was
        valid, 400 with the same body when none was, 413 past the body limit or 1,000 items."""
        from aiohttp import web

        from driftwarden.core.errors import InvalidEventError
        from driftwarden.core.schemas import parse_feedback

        if content_kind(request.headers.get("Content-Type")) != "json":
            return self._status(415, INVALID_ARGUMENT, "send application/json", "json")
        if self.stopping:
            return self._stopping("json")
        try:
            body = await self._body(request)
            if self.stopping:
                return self._stopping("json")
            data = json.loads(body)
        except OtlpDecodeError as exc:
            return self._status(413 if exc.too_large else 400, INVALID_ARGUMENT, str(exc), "json")
        except (ValueError, RecursionError):
            return self._status(400, INVALID_ARGUMENT, "the body is not JSON", "json")
        items = data if isinstance(data, list) else [data]
        if len(items) > MAX_FEEDBACK_ITEMS:
            return self._status(413, INVALID_ARGUMENT, f"{len(items)} feedback items in one request, more than "
                                f"{MAX_FEEDBACK_ITEMS}", "json")
        if self.publisher.room < len(items) + self.mapper.pending:
            return self._busy("json")
        accepted, rejected = 0, []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise InvalidEventError("feedback must be a JSON object")
                parsed = parse_feedback(item)
            except InvalidEventError as exc:
                rejected.append({"index": index, "reason": exc.reason})
                continue
            except Exception as exc:  # noqa: BLE001 - one item never fails the others
                rejected.append({"index": index, "reason": f"feedback cannot be read ({type(exc).__name__})"})
                continue
            self.publisher.publish_record(self.settings.topic_feedback, parsed.event_id.encode(),
                                          parsed.to_json_bytes())
            accepted += 1
        self.mapper.counts["feedback.accepted"] += accepted
        self.mapper.counts["feedback.rejected"] += len(rejected)
        status = 200 if accepted or not items else 400
        self.answers[status] += 1
        return web.json_response({"accepted": accepted, "rejected": rejected}, status=status)

    async def _export(self, request: Any, signal_name: str) -> Any:
        kind = content_kind(request.headers.get("Content-Type"))
        if kind is None:
            return self._status(415, INVALID_ARGUMENT, "send application/x-protobuf or application/json", None)
        if self.stopping:
            return self._stopping(kind)
        try:
            body = await self._body(request)
            items = decode_traces(body, kind) if signal_name == "traces" else decode_logs(body, kind)
        except OtlpDecodeError as exc:
            code = 413 if exc.too_large else 400
            return self._status(code, INVALID_ARGUMENT, str(exc), kind)
        if self.stopping:  # it began stopping while the body came in: what is held now was drained
            return self._stopping(kind)
        needed = len(items) if signal_name == "traces" else 0
        if needed > self.publisher.capacity // 2:
            return self._status(413, INVALID_ARGUMENT, f"{needed} spans in one request, more than the receiver "
                                f"takes at once ({self.publisher.capacity // 2}); send smaller batches", kind)
        if self.publisher.room < needed + self.mapper.pending:
            return self._busy(kind)
        now = time.monotonic()
        outcome = self.mapper.add_spans(items, now) if signal_name == "traces" else self.mapper.add_logs(items, now)
        self._publish(outcome)
        # Only this request's spans count as rejected (a span forced out of the wait is an earlier one's);
        # log records are all taken, whatever becomes of the spans they complete.
        mine = {item.key for item in items} if signal_name == "traces" else set()
        reasons = [r for k, r in zip(outcome.rejected_keys, outcome.rejected_reasons, strict=True) if k in mine]
        rejected = len(reasons)
        message = reasons[0] + (f" (and {rejected - 1} more)" if rejected > 1 else "") if reasons else ""
        self.answers[200] += 1
        return self._response(200, export_response(signal_name, kind, rejected, message), kind)

    async def _body(self, request: Any) -> bytes:
        from aiohttp import web

        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise OtlpDecodeError(f"the body has {request.content_length} bytes, more than {limit}", too_large=True)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise OtlpDecodeError(f"the body has more than {limit} bytes", too_large=True) from exc
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding == "gzip":
            return gunzip(body, limit)
        if encoding not in ("", "identity"):
            raise OtlpDecodeError(f"Content-Encoding {encoding[:32]!r} is not supported (use gzip or none)")
        return body

    # --- output -------------------------------------------------------------------------------

    def _publish(self, outcome: Outcome) -> None:
        for event in outcome.events:
            self.publisher.publish(event)
        for letter in outcome.dead_letters:
            letter = fit_dead_letter(letter, self.settings.max_event_bytes)
            self.publisher.publish_record(self.settings.topic_dlq, letter.key, letter.raw,
                                          dead_letter_headers(letter))

    def _stopping(self, kind: str | None) -> Any:
        return self._status(503, UNAVAILABLE, "the receiver is stopping; retry", kind, retry=True)

    def _busy(self, kind: str | None) -> Any:
        return self._status(self.config.busy_status, RESOURCE_EXHAUSTED, "the producer's queue is full (the broker "
                            "is slow or away); retry later", kind, retry=True)

    def _status(self, http: int, code: int, message: str, kind: str | None, retry: bool = False) -> Any:
        self.answers[http] += 1
        headers = {"Retry-After": str(self.config.retry_after_s)} if retry else {}
        if http >= 500 or http == 429:
            log.warning("OTLP receiver answered %d: %s", http, message)
        return self._response(http, status_body(code, message, kind), kind, headers)

    @staticmethod
    def _response(http: int, body: bytes, kind: str | None, headers: dict[str, str] | None = None) -> Any:
        from aiohttp import web

        content_type = "application/json" if kind == "json" else "application/x-protobuf"
        return web.Response(status=http, body=body, headers={"Content-Type": content_type, **(headers or {})})


async def _serve(settings: Settings, publisher: Publisher, ready: asyncio.Event | None = None) -> None:
    from aiohttp import web

    receiver = OtlpReceiver(settings, publisher)
    # Bodies are unpacked here, under the size limit, not by aiohttp (which would unpack first).
    runner = web.AppRunner(receiver.app(), access_log=None, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.otlp.host, settings.otlp.port)
    await site.start()
    port = next((a[1] for a in runner.addresses if isinstance(a, tuple)), settings.otlp.port)
    register_process(settings, "otlp", port)
    log.info("OTLP receiver listening on http://%s:%s (POST /v1/traces, /v1/logs); events go to %s",
             settings.otlp.host, port, settings.topic_inference)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("OTLP receiver stopping: mapping the spans still waiting and flushing to the broker")
    await runner.cleanup()


def run_receiver(settings: Settings, bootstrap: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then flush (the ``driftwarden otlp`` command)."""
    publisher = Publisher(bootstrap, settings=settings)
    try:
        asyncio.run(_serve(settings, publisher))
    finally:
        publisher.close(timeout=5.0)
