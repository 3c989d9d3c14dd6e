"""Spans and log records in, events and dead letters out: the conventions, the join of an LLM
span with the log records that carry its text, and the trace's retrieved documents.

Pure logic with the clock passed in: the receiver calls :meth:`SpanMapper.add_spans` and
:meth:`SpanMapper.add_logs` per request and :meth:`SpanMapper.due` on a timer. Every span is
accounted for: mapped to a valid event, dead-lettered with the reason (its protobuf bytes as the
value), or skipped as not an LLM call; nothing raises out of it.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from driftwarden.core.errors import InvalidEventError
from driftwarden.core.ingest.otlp import genai, openinference
from driftwarden.core.ingest.otlp.config import OtlpConfig
from driftwarden.core.ingest.otlp.decode import LogView, SpanView
from driftwarden.core.schemas import EventLimits, InferenceEvent, cap_reason, event_from_mapping
from driftwarden.core.storage.writer import DeadLetter

#: The conventions, most specific first: a span goes to the first that claims it. Adding one is a
#: module with the same functions (``NAME``, ``claims``, ``is_llm_call``, ``is_retriever``,
#: ``documents``, ``awaits_logs``, ``is_content_log``, ``completes``, ``to_mapping``) and its test.
CONVENTIONS: tuple[ModuleType, ...] = (openinference, genai)
#: ``source_topic`` of a dead-lettered span (``dlq_id`` = this / 0 / a hash of trace and span id,
#: so a span exported twice is stored once).
DLQ_SOURCE = "otlp.traces"
#: Documents kept per trace (at most this many, and characters in all), traces kept, and for how
#: long, for the LLM spans that come after their retriever.
MAX_DOCUMENTS = 64
MAX_DOCUMENT_CHARS = 100_000
MAX_TRACES = 2_000
DOCUMENTS_TTL_S = 120.0


@dataclass
class Outcome:
    """What one call produced: events to publish and dead letters to send."""

    events: list[InferenceEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    rejected_reasons: list[str] = field(default_factory=list)
    rejected_keys: list[tuple[str, str]] = field(default_factory=list)
    """(trace id, span id) of each dead letter, in order."""

    def extend(self, other: Outcome) -> None:
        self.events += other.events
        self.dead_letters += other.dead_letters
        self.rejected_reasons += other.rejected_reasons
        self.rejected_keys += other.rejected_keys


@dataclass
class _Pending:
    span: SpanView
    convention: ModuleType
    deadline: float
    logs: list[LogView] = field(default_factory=list)


def dead_letter_offset(trace_id: str, span_id: str) -> int:
    """A stable 63-bit number for a span (the dead letter's ``source_offset``)."""
    return int.from_bytes(hashlib.blake2b(f"{trace_id}:{span_id}".encode(), digest_size=8).digest()) >> 1


class SpanMapper:
    """Maps spans to events by their convention, joining log records within ``join_wait_s``."""

    def __init__(self, config: OtlpConfig, limits: EventLimits,
                 conventions: tuple[ModuleType, ...] = CONVENTIONS) -> None:
        self.config = config
        self.limits = limits
        self.conventions = conventions
        self.counts: Counter[str] = Counter()
        """``spans.received``, ``spans.<convention>.mapped|skipped|dead_lettered|duplicate``, ``spans.unknown.skipped``,
        ``logs.received``, ``logs.joined``, ``logs.skipped``, ``logs.dropped``, ``spans.forced`` (mapped
        before their wait ended, the pending set being full)."""
        self._spans: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._logs: OrderedDict[tuple[str, str], tuple[float, list[LogView]]] = OrderedDict()
        self._log_count = 0
        self._documents: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()  # recently mapped spans

    # --- the receiver's side ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """LLM spans waiting for their log records (they become events or dead letters later)."""
        return len(self._spans)

    def add_spans(self, spans: list[SpanView], now: float) -> Outcome:
        out = Outcome()
        self.counts["spans.received"] += len(spans)
        # Retrievers first: an LLM span of the same request then finds its documents.
        for span in spans:
            convention = self._convention(span)
            if convention is not None and convention.is_retriever(span):
                docs = convention.documents(span)
                if docs:
                    _, kept = self._documents.pop(span.trace_id, (now, []))
                    room = MAX_DOCUMENT_CHARS - sum(map(len, kept))
                    for doc in docs[: MAX_DOCUMENTS - len(kept)]:
                        if room <= 0:
                            break
                        kept.append(doc[:room])
                        room -= len(kept[-1])
                    self._documents[span.trace_id] = (now, kept)
                    while len(self._documents) > MAX_TRACES:
                        self._documents.popitem(last=False)
        for span in spans:
            convention = self._convention(span)
            if convention is None:
                self.counts["spans.unknown.skipped"] += 1
                continue
            if not convention.is_llm_call(span):
                self.counts[f"spans.{convention.NAME}.skipped"] += 1
                continue
            if span.key in self._done:  # exported again after it was mapped: its event is on its way
                self.counts[f"spans.{convention.NAME}.duplicate"] += 1
                continue
            waiting_logs = self._take_logs(span.key)
            if convention.awaits_logs(span) and not convention.completes(waiting_logs) and self.config.join_wait_s > 0:
                pending = self._spans.get(span.key)
                if pending is not None:  # the same span again (a retried export): keep one
                    waiting_logs = pending.logs + waiting_logs
                self._spans[span.key] = _Pending(span.detached(), convention, now + self.config.join_wait_s,
                                                 waiting_logs)
                while len(self._spans) > self.config.max_pending:
                    _, oldest = self._spans.popitem(last=False)
                    self.counts["spans.forced"] += 1
                    out.extend(self._map(oldest.span, oldest.convention, oldest.logs))
                continue
            out.extend(self._map(span, convention, waiting_logs))
        return out

    def add_logs(self, logs: list[LogView], now: float) -> Outcome:
        out = Outcome()
        self.counts["logs.received"] += len(logs)
        for log in logs:
            if not log.span_id or not any(c.is_content_log(log) for c in self.conventions):
                self.counts["logs.skipped"] += 1
                continue
            pending = self._spans.get(log.key)
            if pending is not None:
                pending.logs.append(log)
                self.counts["logs.joined"] += 1
                if pending.convention.completes(pending.logs):
                    del self._spans[log.key]
                    out.extend(self._map(pending.span, pending.convention, pending.logs))
                continue
            if log.key in self._done:
                self.counts["logs.dropped"] += 1  # its span was mapped already (its wait ran out)
                continue
            _, kept = self._logs.setdefault(log.key, (now, []))
            kept.append(log)
            self._log_count += 1
            while self._log_count > self.config.max_pending:
                _, (_, dropped) = self._logs.popitem(last=False)
                self._log_count -= len(dropped)
                self.counts["logs.dropped"] += len(dropped)
        return out

    def due(self, now: float) -> Outcome:
        """Map the spans whose wait ran out; drop log records that waited twice as long for a span."""
        out = Outcome()
        while self._spans:
            key, pending = next(iter(self._spans.items()))
            if pending.deadline > now:
                break
            del self._spans[key]
            out.extend(self._map(pending.span, pending.convention, pending.logs))
        while self._documents and next(iter(self._documents.values()))[0] < now - DOCUMENTS_TTL_S:
            self._documents.popitem(last=False)
        horizon = now - 2 * self.config.join_wait_s
        while self._logs:
            key, (arrived, kept) = next(iter(self._logs.items()))
            if arrived > horizon:
                break
            del self._logs[key]
            self._log_count -= len(kept)
            self.counts["logs.dropped"] += len(kept)
        return out

    def drain(self) -> Outcome:
        """Map every waiting span now (at shutdown)."""
        return self.due(float("inf"))

    # --- mapping ----------------------------------------------------------------------------------

    def _convention(self, span: SpanView) -> ModuleType | None:
        return next((c for c in self.conventions if c.claims(span)), None)

    def _take_logs(self, key: tuple[str, str]) -> list[LogView]:
        entry = self._logs.pop(key, None)
        if entry is None:
            return []
        self._log_count -= len(entry[1])
        self.counts["logs.joined"] += len(entry[1])
        return entry[1]

    def _map(self, span: SpanView, convention: ModuleType, logs: list[LogView]) -> Outcome:
        out = Outcome()
        self._done[span.key] = None
        while len(self._done) > self.config.max_pending:
            self._done.popitem(last=False)
        try:
            mapping = convention.to_mapping(span, logs, self._documents.get(span.trace_id, (0.0, []))[1], self.config)
            if not str(mapping.get("prompt", "")).strip():
                raise InvalidEventError(
                    "the LLM span carries no prompt text: turn on content capture in its instrumentation "
                    "(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true for openai-v2)"
                    + (f", or its log records did not arrive within {self.config.join_wait_s:g} s"
                       if convention.awaits_logs(span) else ""), "otlp")
            event = event_from_mapping(mapping, self.limits)
        except InvalidEventError as exc:
            return self._reject(span, convention, exc.reason, exc.stage, out)
        except Exception as exc:  # noqa: BLE001 - one bad span never stops the receiver
            return self._reject(span, convention, cap_reason(f"the span cannot be mapped ({type(exc).__name__}: {exc})"),
                                "otlp", out)
        self.counts[f"spans.{convention.NAME}.mapped"] += 1
        out.events.append(event)
        return out

    def _reject(self, span: SpanView, convention: ModuleType, reason: str, stage: str, out: Outcome) -> Outcome:
        self.counts[f"spans.{convention.NAME}.dead_lettered"] += 1
        reason = cap_reason(f"{convention.NAME} span {span.trace_id}:{span.span_id}: {reason}",
                            self.limits.max_reason_chars)
        out.dead_letters.append(DeadLetter(
            source_topic=DLQ_SOURCE, source_partition=0, source_offset=dead_letter_offset(*span.key),
            stage=stage, reason=reason, key=f"{span.trace_id}:{span.span_id}".encode(), raw=span.raw(),
        ))
        out.rejected_reasons.append(reason)
        out.rejected_keys.append(span.key)
        return out


def summary(counts: Counter[str]) -> dict[str, Any]:
    """The counters as a JSON-able dict (what the receiver's ``/stats`` shows)."""
    return dict(sorted(counts.items()))
