"""Typed configuration of the OTLP receiver: ``DRIFTWARDEN_OTLP__<FIELD>``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class OtlpConfig(BaseModel):
    """The OTLP/HTTP receiver (``driftwarden otlp``, and part of ``driftwarden up``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Start the receiver with ``driftwarden up``."""
    host: str = "127.0.0.1"
    """Address the receiver listens on (``0.0.0.0`` to take traffic from other hosts)."""
    port: int = Field(4318, ge=0, le=65535)
    """HTTP port (4318 is OTLP/HTTP's own; 0 picks a free one and logs it, for ``driftwarden otlp``
    alone: ``up`` needs a fixed one)."""
    max_body_bytes: int = Field(32 << 20, ge=1024, le=1 << 30)
    """Largest request body, before and after gzip; a larger one is answered 413."""
    model_version_attribute: str = Field("service.version", min_length=1, max_length=256)
    """Attribute (of the span, else of its resource) whose value becomes ``model_version``; a span
    with neither gets ``unversioned``."""
    join_wait_s: float = Field(5.0, ge=0, le=300)
    """How long an LLM span whose text comes in separate log records (OTel GenAI's older shape,
    the openai-v2 default) waits for them; after that it is mapped with what arrived."""
    max_pending: int = Field(10_000, ge=1, le=1_000_000)
    """Spans waiting for their log records, and log records waiting for their span, each at most;
    past it the oldest waiting span is mapped at once and the oldest waiting record dropped
    (counted)."""
    busy_status: int = 503
    """The answer while the producer's queue cannot take a request (the broker slow or away). OTLP
    allows both; 503 is the default because OpenTelemetry's Python exporter retries 429 only since
    1.45 (earlier ones drop the batch), while every exporter and collector retries 503."""
    retry_after_s: int = Field(2, ge=1, le=3600)
    """``Retry-After`` of that answer, in seconds. Keep it short: OpenTelemetry's exporters give up
    at once when it is longer than what is left of their export timeout (10 s by default)."""

    @field_validator("busy_status")
    @classmethod
    def _busy(cls, value: int) -> int:
        if value not in (429, 503):
            raise ValueError("must be 429 or 503")
        return value
