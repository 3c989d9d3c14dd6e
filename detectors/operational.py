"""Operational metrics: latency, tokens, cost and error flags (no model)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from pydantic import Field

from driftwarden.core.schemas import DetectionResult, InferenceEvent, make_result
from driftwarden.core.settings import Price, Settings
from driftwarden.detectors.base import BaseDetector, BatchContext, DetectorConfig
from driftwarden.detectors.registry import register


class OperationalConfig(DetectorConfig):
    latency_slo_ms: float = Field(10_000.0, gt=0)
    """Calls slower than this are flagged."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """Model name -> price per 1k tokens, for events that carry no cost."""
    subject: str = "user_id"
    """Whom a call's cost is counted for (``user_id``, ``session_id``, ``metadata.<key>``; empty: no one)."""


def cost_usd(event: InferenceEvent, prices: dict[str, Price]) -> float | None:
    """The app's own cost when sent, else tokens priced from the table, else None."""
    if event.cost_usd is not None:
        return event.cost_usd
    price = prices.get(event.model)
    if price is None:
        return None
    return (event.tokens_in * price.input_per_1k + event.tokens_out * price.output_per_1k) / 1000.0


def operational_config(settings: Settings) -> OperationalConfig:
    return OperationalConfig(latency_slo_ms=settings.latency_slo_ms, prices=dict(settings.price_table),
                             subject=settings.cost_subject, batch_size=10_000)


_OPAQUE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def subject_of(event: InferenceEvent, subject: str) -> str | None:
    """The event's ``user_id``, ``session_id`` or metadata value named by ``subject``. It reaches
    alerts and their receivers: a value that is not an opaque id (an e-mail address, a name with
    spaces) is replaced by ``sha256:`` and the first 16 hex digits of its hash, stable per value."""
    if subject.startswith("metadata."):
        value = event.metadata.get(subject[len("metadata."):]) or None
    elif subject in ("user_id", "session_id"):
        value = getattr(event, subject) or None
    else:
        value = None
    if value is None or _OPAQUE.match(value):
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


@register("operational", config_from=operational_config, offline=False)
class OperationalDetector(BaseDetector):
    """Score = 1 for a failed call or one slower than the SLO, else 0.

    ``scores`` carries latency_ms, tokens_in, tokens_out, tokens_total, is_error, and cost_usd
    when it is known (with cost_source 1 = sent by the app, 0 = from the price table).
    """

    name = "operational"
    version = "1.0.0"
    config_class = OperationalConfig
    config: OperationalConfig
    reads_embeddings = False

    def score_batch(self, events: Sequence[InferenceEvent], ctx: BatchContext) -> list[DetectionResult]:
        return [self._score(e) for e in events]

    def _score(self, event: InferenceEvent) -> DetectionResult:
        is_error = event.status == "error"
        slow = event.latency_ms > self.config.latency_slo_ms
        scores = {
            "latency_ms": event.latency_ms,
            "tokens_in": float(event.tokens_in),
            "tokens_out": float(event.tokens_out),
            "tokens_total": float(event.tokens_in + event.tokens_out),
            "is_error": float(is_error),
        }
        cost = cost_usd(event, self.config.prices)
        if cost is not None:
            scores["cost_usd"] = cost
            scores["cost_source"] = float(event.cost_usd is not None)
        reasons = [r for r, hit in (("call failed", is_error), ("slower than SLO", slow)) if hit]
        return make_result(
            self,
            event,
            score=float(is_error or slow),
            label=is_error or slow,
            scores=scores,
            evidence="; ".join(reasons) or None,
            subject=subject_of(event, self.config.subject),
        )
