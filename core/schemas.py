"""The contract: what apps publish (InferenceEvent) and what driftwarden produces (DetectionResult).

Both travel as JSON on Kafka. Validation is strict: wrong types are errors, not coerced, and
unknown top-level fields are rejected (free-form data belongs in ``metadata``), so a typo such
as ``latncy_ms`` goes to the dead-letter topic instead of being silently lost.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from driftwarden.core.errors import InvalidEventError

EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"
#: ``app``, ``model`` and ``model_version`` reach segment ids, Kafka keys, paths, SQL, Slack and
#: logs: letters, digits, '.', '_' and '-', starting with a letter or digit, no '..'.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
UINT32_MAX = 2**32 - 1
MAX_PROBLEMS = 5
MAX_METADATA_KEYS = 64
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 1024
MAX_ERROR_CHARS = 4096


@dataclass(frozen=True)
class EventLimits:
    """Size limits an event is checked against (from the settings)."""

    max_prompt_chars: int = 100_000
    max_response_chars: int = 100_000
    max_context_chars: int = 200_000
    max_event_bytes: int = 1_000_000
    max_clock_skew_s: int = 86_400
    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_latency_ms: float = 86_400_000.0
    max_cost_usd: float = 10_000.0
    max_context_passages: int = 256
    max_reason_chars: int = 1_000

    @classmethod
    def from_settings(cls, settings: Any) -> EventLimits:
        return cls(
            max_prompt_chars=settings.max_prompt_chars,
            max_response_chars=settings.max_response_chars,
            max_context_chars=settings.max_context_chars,
            max_event_bytes=settings.max_event_bytes,
            max_clock_skew_s=settings.max_clock_skew_s,
            min_event_time=settings.min_event_time,
            max_latency_ms=settings.max_latency_ms,
            max_cost_usd=settings.max_cost_usd,
            max_context_passages=settings.max_context_passages,
            max_reason_chars=settings.max_reason_chars,
        )


def _limits(info: ValidationInfo) -> EventLimits:
    ctx = info.context or {}
    return ctx.get("limits") or EventLimits()


class InferenceEvent(BaseModel):
    """One call of a model in production, as the app saw it."""

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True
    )

    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    """Idempotency key: the same id published twice is stored once."""
    timestamp: datetime
    """When the call started, ISO 8601; a timestamp without zone is taken as UTC."""
    app: str = _NAME
    """The application (feature) that made the call: letters, digits, ``.``, ``_``, ``-``."""
    model: str = _NAME
    """Model name, as priced in the price table (``gpt-4o-mini``); the same characters as ``app``."""
    model_version: str = _NAME
    """Deployed version of the model or prompt template; drift is watched per version."""
    prompt: str
    """What was sent to the model."""
    response: str = ""
    """What came back (empty when the call failed)."""
    context: list[str] | None = None
    """Retrieved passages the response should be grounded in (a single string is accepted)."""
    latency_ms: float = Field(ge=0)
    """Wall time of the call in milliseconds (at most ``DRIFTWARDEN_MAX_LATENCY_MS``)."""
    tokens_in: int = Field(ge=0, le=UINT32_MAX)
    """Prompt tokens (0 to 2³²−1)."""
    tokens_out: int = Field(ge=0, le=UINT32_MAX)
    """Completion tokens (0 to 2³²−1)."""
    cost_usd: float | None = Field(default=None, ge=0)
    """Cost the app computed (at most ``DRIFTWARDEN_MAX_COST_USD``); when absent driftwarden
    computes it from the price table."""
    status: Literal["ok", "error"] = "ok"
    """``error`` when the call failed."""
    error: str | None = Field(default=None, max_length=MAX_ERROR_CHARS)
    """The failure, when status is ``error``."""
    user_id: str | None = Field(default=None, max_length=128)
    """Opaque id of the end user (do not send e-mail addresses)."""
    session_id: str | None = Field(default=None, max_length=128)
    """Conversation or session id."""
    feedback: float | None = Field(default=None, ge=-1, le=1)
    """User feedback in [-1, 1] (thumbs down -1, up +1), when there is any."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """Free-form string pairs (at most 64, keys 128 and values 1,024 characters)."""

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: datetime, info: ValidationInfo) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        limits = _limits(info)
        skew = limits.max_clock_skew_s
        if value > datetime.now(UTC) + timedelta(seconds=skew):
            raise ValueError(f"lies more than {skew} s in the future; check the app's clock")
        if value < limits.min_event_time:
            raise ValueError(f"lies before {limits.min_event_time.isoformat()}, the earliest time accepted; "
                             "check the app's clock")
        return value

    @field_validator("latency_ms")
    @classmethod
    def _latency(cls, value: float, info: ValidationInfo) -> float:
        limit = _limits(info).max_latency_ms
        if value > limit:
            raise ValueError(f"is more than the limit of {limit:g} ms")
        return value

    @field_validator("cost_usd")
    @classmethod
    def _cost(cls, value: float | None, info: ValidationInfo) -> float | None:
        limit = _limits(info).max_cost_usd
        if value is not None and value > limit:
            raise ValueError(f"is more than the limit of {limit:g} USD for one call")
        return value

    @field_validator("app", "model", "model_version")
    @classmethod
    def _name(cls, value: str) -> str:
        if ".." in value:
            raise ValueError(NAME_RULE)
        return value

    @field_validator("context", mode="before")
    @classmethod
    def _context(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str, info: ValidationInfo) -> str:
        limit = _limits(info).max_prompt_chars
        if not value.strip():
            raise ValueError("is empty")
        if len(value) > limit:
            raise ValueError(f"has {len(value)} characters, more than the limit of {limit}")
        return value

    @field_validator("response")
    @classmethod
    def _response(cls, value: str, info: ValidationInfo) -> str:
        limit = _limits(info).max_response_chars
        if len(value) > limit:
            raise ValueError(f"has {len(value)} characters, more than the limit of {limit}")
        return value

    @field_validator("context")
    @classmethod
    def _context_size(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        limits = _limits(info)
        if value is not None and len(value) > limits.max_context_passages:
            raise ValueError(f"has {len(value)} passages, more than the limit of {limits.max_context_passages}")
        limit = limits.max_context_chars
        if value is not None and (total := sum(map(len, value))) > limit:
            raise ValueError(f"has {total} characters in all, more than the limit of {limit}")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"has {len(value)} keys, more than {MAX_METADATA_KEYS}")
        for number, (key, item) in enumerate(value.items(), 1):  # reasons never quote the input
            if not key or len(key) > MAX_METADATA_KEY:
                raise ValueError(f"key number {number} must have 1-{MAX_METADATA_KEY} characters")
            if len(item) > MAX_METADATA_VALUE:
                raise ValueError(f"the value of key number {number} is longer than {MAX_METADATA_VALUE} characters")
        return value

    @model_validator(mode="after")
    def _status(self) -> InferenceEvent:
        if self.status == "ok" and self.error is not None:
            raise ValueError("'error' is set but status is 'ok'; send status 'error' for failed calls")
        return self

    @property
    def segment_key(self) -> str:
        """Kafka key: events of one app and model version keep their order on one partition."""
        return f"{self.app}/{self.model_version}"

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


NAME_RULE = "must be 1-128 letters, digits, '.', '_' or '-', start with a letter or digit, and hold no '..'"


def _describe(exc: ValidationError, limit: int = 1_000) -> str:
    """The first :data:`MAX_PROBLEMS` problems, then how many more; at most ``limit`` characters.
    Input values are never quoted (they may be hostile, huge or personal)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for err in errors[:MAX_PROBLEMS]:
        loc = ".".join(str(p)[:64] for p in err["loc"]) or "event"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (put free-form data in 'metadata')"
        elif err["type"] == "string_pattern_mismatch" and loc in ("app", "model", "model_version"):
            msg = NAME_RULE
        parts.append(f"{loc}: {msg}")
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more problem(s)")
    return cap_reason("; ".join(parts), limit)


def cap_reason(reason: str, limit: int = 1_000) -> str:
    """A reason cut to ``limit`` characters (with a marker), control characters replaced."""
    clean = "".join(c if c.isprintable() else " " for c in reason)
    return clean if len(clean) <= limit else clean[: limit - 14] + " …(truncated)"


def parse_event(raw: bytes, limits: EventLimits | None = None) -> InferenceEvent:
    """Decode and validate one event from its wire bytes, or raise InvalidEventError.

    Never raises anything else: an unexpected failure (a recursion limit, a bug) is an
    InvalidEventError too, so the message is dead-lettered with its reason.
    """
    limits = limits or EventLimits()
    try:
        return _parse_event(raw, limits)
    except InvalidEventError:
        raise
    except RecursionError as exc:
        raise InvalidEventError("nested too deeply to decode", "decode") from exc
    except Exception as exc:  # noqa: BLE001 - every message gets a verdict
        raise InvalidEventError(f"cannot be validated ({type(exc).__name__})", "validate") from exc


def _parse_event(raw: bytes, limits: EventLimits) -> InferenceEvent:
    if not isinstance(raw, (bytes, bytearray)):
        raise InvalidEventError(f"message value is {type(raw).__name__}, expected bytes", "decode")
    if len(raw) > limits.max_event_bytes:
        raise InvalidEventError(
            f"event has {len(raw)} bytes, more than the limit of {limits.max_event_bytes}", "decode"
        )
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"not UTF-8 ({exc.reason} at byte {exc.start})", "decode") from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InvalidEventError(cap_reason(f"not JSON ({exc})", limits.max_reason_chars), "decode") from exc
    if not isinstance(data, dict):
        raise InvalidEventError(f"JSON {type(data).__name__} where an object was expected", "decode")
    try:
        event = InferenceEvent.model_validate_json(text, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidEventError(_describe(exc, limits.max_reason_chars), "validate") from exc
    return event  # pydantic's JSON parser already refuses lone surrogates ("Invalid JSON")


def _check_encodable(event: InferenceEvent) -> None:
    """Lone surrogates cannot be written as UTF-8 downstream; a dict built in Python may hold them."""
    texts = [event.prompt, event.response, event.error or "", event.user_id or "", event.session_id or "",
             *(event.context or []), *event.metadata.keys(), *event.metadata.values()]
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEventError(f"holds a lone surrogate (\\u{ord(text[exc.start]):04x}) that is not "
                                    "valid Unicode text", "validate") from exc


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def event_from_mapping(data: dict[str, Any], limits: EventLimits | None = None) -> InferenceEvent:
    """Validate a dict built in Python (datetimes allowed) exactly as the worker will."""
    return encode_event(data, limits)[0]


def encode_event(data: dict[str, Any], limits: EventLimits | None = None) -> tuple[InferenceEvent, bytes]:
    """The validated event and the wire bytes it was validated from (what the Publisher sends)."""
    limits = limits or EventLimits()
    try:
        raw = json.dumps(data, default=_json_default, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidEventError(cap_reason(f"cannot be encoded as JSON ({exc})"), "decode") from exc
    if len(raw) > limits.max_event_bytes:
        raise InvalidEventError(
            f"event has {len(raw)} bytes, more than the limit of {limits.max_event_bytes}", "decode"
        )
    try:
        event = InferenceEvent.model_validate_json(raw, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidEventError(_describe(exc, limits.max_reason_chars), "validate") from exc
    _check_encodable(event)
    return event, raw


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


MAX_SPANS = 200
"""Most spans one result keeps (an event full of IP addresses has thousands)."""
MAX_SCORES = 64
MAX_EVIDENCE = 1_000


class Span(BaseModel):
    """A located finding in a text field (offsets, never the value)."""

    model_config = ConfigDict(frozen=True)

    field: Literal["prompt", "response", "context"]
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    type: str
    score: float | None = None


class DetectionResult(BaseModel):
    """One detector's verdict on one event. Build with :func:`make_result` / :func:`make_error`."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    event_id: str
    detector: str
    """Registry name of the detector."""
    detector_version: str
    """Version of the detector's code and model; a change of model is visible in the data."""
    config_fingerprint: str
    """Short hash of the detector's configuration."""
    app: str = _NAME
    model_version: str = _NAME
    event_ts: datetime
    scored_at: datetime
    score: float | None = None
    """The main score, higher is worse; None when not assessable or on error."""
    label: bool | None = None
    """Flagged at the configured threshold; None when not assessable or on error."""
    scores: dict[str, float] = Field(default_factory=dict)
    """Further named values (latency, tokens, cost, per-class probabilities)."""
    spans: list[Span] = Field(default_factory=list)
    evidence: str | None = None
    """A short human-readable reason."""
    error: str | None = None
    """Set when the detector failed on this event; the stream goes on."""
    subject: str | None = Field(default=None, max_length=128)
    """Whom the call was for (the operational detector's: the event's ``user_id`` or the metadata
    value ``DRIFTWARDEN_COST_SUBJECT`` names), for per-user cost rules. Not stored in ``detections``."""

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def _result(detector: Any, event: InferenceEvent, **fields: Any) -> DetectionResult:
    return DetectionResult(
        event_id=event.event_id,
        detector=detector.name,
        detector_version=detector.version,
        config_fingerprint=detector.config.fingerprint(),
        app=event.app,
        model_version=event.model_version,
        event_ts=event.timestamp,
        scored_at=datetime.now(UTC),
        **fields,
    )


def make_result(
    detector: Any,
    event: InferenceEvent,
    *,
    score: float | None,
    label: bool | None,
    scores: dict[str, float] | None = None,
    spans: list[Span] | None = None,
    evidence: str | None = None,
    subject: str | None = None,
) -> DetectionResult:
    """The one factory for results: names the detector, its version and config fingerprint.

    Bounded whatever the detector found: at most :data:`MAX_SPANS` spans (``spans_dropped`` in
    ``scores`` counts the rest), :data:`MAX_SCORES` finite named values, evidence cut to
    :data:`MAX_EVIDENCE` characters.
    """
    if score is not None and not math.isfinite(score):
        raise ValueError(f"detector {detector.name} produced a non-finite score {score}")
    named = {k[:64]: float(v) for k, v in list((scores or {}).items())[:MAX_SCORES] if math.isfinite(v)}
    spans = spans or []
    if len(spans) > MAX_SPANS:
        named["spans_dropped"] = float(len(spans) - MAX_SPANS)
        spans = spans[:MAX_SPANS]
    if evidence is not None and len(evidence) > MAX_EVIDENCE:
        evidence = evidence[: MAX_EVIDENCE - 1] + "…"
    return _result(detector, event, score=score, label=label, scores=named, spans=spans, evidence=evidence,
                   subject=subject[:128] if subject else None)


def make_error(detector: Any, event: InferenceEvent, exc: BaseException) -> DetectionResult:
    """A result that records the detector's failure on this event."""
    return _result(detector, event, error=f"{type(exc).__name__}: {exc}"[:2000])


class EmbeddingRecord(BaseModel):
    """The embedding of one event's prompt or response, on its way to the ``embeddings`` table."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    event_id: str
    field: Literal["prompt", "response"]
    app: str = _NAME
    model_version: str = _NAME
    event_ts: datetime
    encoder: str
    """Name and version of the embedding model; vectors of different encoders are not comparable."""
    computed_at: datetime
    vector: list[float]
    """Unit-norm embedding."""
    descriptors: dict[str, float] = Field(default_factory=dict)
    """Scalar descriptors of the event (lengths, latency, tokens, detector scores), on the prompt
    record only; the drift windows test them with Evidently beside the embeddings."""

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


_DETECTIONS = TypeAdapter(list[DetectionResult])
_EMBEDDINGS = TypeAdapter(list[EmbeddingRecord])


def encode_records(records: list[DetectionResult] | list[EmbeddingRecord]) -> bytes:
    """One topic record for one event: a JSON array of its results (or of its embeddings).

    The score agent sends one record per event to ``llm.detections`` and ``llm.embeddings``
    rather than one per detector and field: a third of the messages for the broker, the sink
    and the worker's event loop to handle (``bench/detectors.py``).
    """
    adapter = _DETECTIONS if records and isinstance(records[0], DetectionResult) else _EMBEDDINGS
    return adapter.dump_json(records)


def parse_detections(raw: bytes) -> list[DetectionResult]:
    """An ``llm.detections`` record: the DetectionResults of one event."""
    return _DETECTIONS.validate_json(raw)


def parse_embeddings(raw: bytes) -> list[EmbeddingRecord]:
    """An ``llm.embeddings`` record: the prompt (and response) EmbeddingRecords of one event."""
    return _EMBEDDINGS.validate_json(raw)


class DriftCluster(BaseModel):
    """A group of current events that the drift test found unlike the reference."""

    model_config = ConfigDict(frozen=True)

    size: int = Field(ge=0)
    """Events of the window in the group."""
    example_event_ids: list[str] = Field(default_factory=list, max_length=3)
    """The events nearest the group's centre, at most three."""
    examples: list[Annotated[str, StringConstraints(max_length=300)]] = Field(default_factory=list, max_length=3)
    """Their texts as stored (redacted when PII redaction is on), one line of at most 200
    characters each, in the order of ``example_event_ids``; empty where an event was not stored
    yet when the window closed (or no text loader was given: then the list is empty)."""


class DriftResult(BaseModel):
    """One closed drift window of a segment, tested against its reference."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    window_id: str
    """``app/model_version/field/<sequence>``: stable, so a re-emitted window replaces itself."""
    app: str = _NAME
    model_version: str = _NAME
    field: Literal["prompt", "response"]
    window_start: datetime
    """Earliest event time in the current window."""
    window_end: datetime
    """Latest event time in the current window."""
    n_reference: int
    n_current: int
    method: str
    """The test, for example ``mmd2_gaussian_permutation``."""
    statistic: float
    p_value: float
    reference_policy: Literal["baseline", "previous", "pinned"]
    reference_id: str
    """What the window was compared with (a window id, or the baseline's first and last event)."""
    top_event_ids: list[str] = Field(default_factory=list)
    """Current events nearest the largest change (lowest witness)."""
    descriptor_p_values: dict[str, float] = Field(default_factory=dict)
    """Univariate drift p-value (Evidently, KS) of each scalar descriptor, reference against current."""
    novel_share: float = Field(0.0, ge=0.0, le=1.0)
    """Share of the current events further from the reference than all but ``alpha`` of the
    reference's own (about ``alpha`` when nothing is new)."""
    clusters: list[DriftCluster] = Field(default_factory=list, max_length=3)
    """What is new: the novel events grouped, largest first (``detectors/drift/clusters.py``)."""
    part_p_values: dict[str, float] = Field(default_factory=dict)
    """p-value of each part of an aggregated test (``mmd``, ``tail_0.1``, ...)."""
    encoder: str
    """Embedding model of the vectors (windows of different encoders are not compared)."""
    detector_version: str
    config_fingerprint: str
    computed_at: datetime

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


# --------------------------------------------------------------------------------------------
# Closing the loop: alerts, retraining requests, job status
# --------------------------------------------------------------------------------------------


class AlertEvent(BaseModel):
    """A rule fired or resolved for a segment (``llm.alerts``; delivered to the receivers)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    alert_id: str
    """The episode: ``<dedupe_key>@<firing time>/<window id>``; firing and resolved share it."""
    dedupe_key: str
    """Stable per rule and segment (``rule:app:model_version:field``): receivers group on it."""
    status: Literal["firing", "resolved"]
    rule: str
    severity: Literal["critical", "error", "warning", "info"]
    app: str
    model_version: str
    field: str
    """``prompt`` or ``response`` for drift rules, ``*`` for per-event metrics."""
    metric: str
    detector: str | None = None
    value: float
    """The metric in the window that fired (or resolved) the rule."""
    threshold: float
    baseline: float | None = None
    """The metric in the first window of the segment the policy saw, for "moved from ... to ..."."""
    summary: str
    """One paragraph: what moved, by how much, against which threshold, and what follows."""
    example_event_ids: list[str] = Field(default_factory=list)
    window_id: str
    window_start: datetime
    window_end: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    dashboard_url: str
    retrain_requested: bool = False
    starts_at: datetime
    ends_at: datetime | None = None
    policy_fingerprint: str

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class DatasetSpec(BaseModel):
    """What a retraining snapshot takes from the store."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_rows: int = Field(10_000, ge=1)
    near_duplicate_cosine: float = Field(0.95, gt=0, le=1)
    """Prompts at least this similar (embedding cosine) to a kept one are dropped."""
    exclude_flagged: tuple[str, ...] = ("toxicity", "prompt_injection", "hallucination")
    """Events flagged by these detectors go to the review set, not to training."""
    min_feedback: float = Field(0.0, ge=-1, le=1)
    """Events whose user feedback is below this go to the review set."""
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    """Share of the training rows the job keeps apart to measure loss before and after."""


class RetrainRequest(BaseModel):
    """Ask for a fine-tuning run on fresh data of one segment (``llm.retrain``)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    request_id: str
    """Stable per episode (the alert id): a redelivered request starts no second job."""
    alert_id: str
    app: str = _NAME
    model_version: str = _NAME
    reason: str
    start: datetime
    """Events from here ..."""
    end: datetime
    """... to here (the drifted windows)."""
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    requested_at: datetime

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class RetrainStatus(BaseModel):
    """One step of a retraining job (``llm.retrain.status``; the ``retrain_jobs`` table keeps the last)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    job_id: str
    request_id: str
    app: str = _NAME
    model_version: str = _NAME
    status: Literal["queued", "running", "succeeded", "failed"]
    launcher: str
    dataset_version: str = ""
    dataset_rows: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    """Held-out loss before and after, rows, steps, seconds, and the evaluation's figures as
    ``eval.<set>.<model>.<metric>`` (from the job's metrics file)."""
    message: str = ""
    output_dir: str = ""
    updated_at: datetime
    decision: Literal["", "promote", "hold", "reject"] = ""
    """What the promotion policy (or a person, with ``driftwarden models``) decided of a succeeded
    job's adapter; empty until decided."""
    decision_reasons: list[str] = Field(default_factory=list, max_length=50)
    """Why: one line per rule that held or failed, or the person's name and words."""
    registered_model: str = ""
    """The MLflow registered model (``driftwarden-<app>``) the adapter is a version of."""
    registered_version: str = ""
    """Its version in the MLflow registry."""

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


FEEDBACK_SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_FEEDBACK_COMMENT = 2_000


class Feedback(BaseModel):
    """A judgement of one call that arrives after it (a thumbs-down minutes later): ``llm.feedback``.

    The ``feedback`` table keeps the last one per event and source. It may arrive before its event;
    reads join the two when both are there."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)

    event_id: str = Field(pattern=EVENT_ID_PATTERN)
    """The event judged; for a call that came as an OpenTelemetry trace, its ``<trace id>:<span id>``
    or the trace id alone (hex), which applies to every LLM call of the trace."""
    score: float = Field(ge=-1, le=1)
    """-1 (thumbs down) to 1 (thumbs up); below 0 counts as negative."""
    comment: str | None = Field(default=None, max_length=MAX_FEEDBACK_COMMENT)
    """What the user wrote, if anything (redacted before storage when PII redaction is on)."""
    source: str = Field(default="user", pattern=FEEDBACK_SOURCE_PATTERN)
    """Who judged: ``user``, ``reviewer``, an eval's name. One row per event and source is kept."""
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))
    """When it was given (ISO 8601; without a zone, UTC)."""

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).astimezone(UTC)

    @property
    def negative(self) -> bool:
        return self.score < 0

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def parse_feedback(raw: bytes | str | dict[str, Any]) -> Feedback:
    """One Feedback from its JSON (or a dict built in Python), or :class:`InvalidEventError` with
    the problems (never quoting the input)."""
    try:
        if isinstance(raw, dict):
            return Feedback.model_validate_json(json.dumps(raw, default=_json_default))
        return Feedback.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidEventError(_describe(exc), "validate") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidEventError(cap_reason(f"feedback cannot be read ({type(exc).__name__})"), "decode") from exc
