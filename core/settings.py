"""The one settings object. Read from the environment (prefix ``DRIFTWARDEN_``) once at start-up.

No other module reads ``os.environ``. A bad value stops start-up with a :class:`SettingsError`
that names the environment variable.
"""

from __future__ import annotations

import functools
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftwarden.core.detector_configs import DetectorsSettings, DriftConfig
from driftwarden.core.loop_configs import AlertsConfig, RetrainConfig
from driftwarden.core.errors import SettingsError

ENV_PREFIX = "DRIFTWARDEN_"


class Price(BaseModel):
    """List price of one model, in US dollars per 1,000 tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1k: float = Field(ge=0)
    """Dollars per 1,000 prompt tokens."""
    output_per_1k: float = Field(ge=0)
    """Dollars per 1,000 completion tokens."""


#: Example list prices (USD per 1k tokens, public price pages, 2025). Override with
#: DRIFTWARDEN_PRICE_TABLE; a model missing here gets no cost unless the app sends ``cost_usd``.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(input_per_1k=0.0025, output_per_1k=0.01),
    "gpt-4o-mini": Price(input_per_1k=0.00015, output_per_1k=0.0006),
    "gpt-3.5-turbo": Price(input_per_1k=0.0005, output_per_1k=0.0015),
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class Settings(BaseSettings):
    """Everything driftwarden can be told. Each field is the variable ``DRIFTWARDEN_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", frozen=True, extra="forbid",
        use_attribute_docstrings=True,
    )

    # --- where things live -------------------------------------------------------------------
    data_dir: Path = Path(".driftwarden")
    """Local state: the embedded ClickHouse store, faust's state, the local broker's log."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of driftwarden's own log lines."""

    # --- Kafka ------------------------------------------------------------------------------
    kafka_bootstrap: str = ""
    """Comma-separated ``host:port`` list. Empty: ``up`` and ``demo`` start the local broker."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """Passed to the Kafka clients as ``security_protocol``."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism when the protocol is SASL_*."""
    kafka_sasl_username: str | None = None
    """SASL user name."""
    kafka_sasl_password: SecretStr | None = None
    """SASL password (never logged)."""
    kafka_ssl_cafile: Path | None = None
    """CA bundle that signed the brokers' certificates."""
    kafka_ssl_certfile: Path | None = None
    """Client certificate for mutual TLS."""
    kafka_ssl_keyfile: Path | None = None
    """Key of the client certificate."""
    local_broker_port: int = Field(19092, ge=1, le=65535)
    """Port of the local broker that ``up`` starts when no bootstrap is set."""

    # --- topics -----------------------------------------------------------------------------
    topic_inference: str = "llm.inference"
    """Where apps publish InferenceEvents."""
    topic_dlq: str = "llm.inference.dlq"
    """Dead letters: the raw bytes, with reason and stage in the headers."""
    topic_detections: str = "llm.detections"
    """One DetectionResult per event and detector."""
    topic_events: str = "llm.events.redacted"
    """The validated (and, if asked, redacted) events, on their way to ClickHouse."""
    topic_embeddings: str = "llm.embeddings"
    """Prompt and response embeddings, on their way to ClickHouse and the drift windows."""
    topic_drift: str = "llm.drift"
    """Drift results per window."""
    topic_alerts: str = "llm.alerts"
    """Alert events, firing and resolved."""
    topic_retrain: str = "llm.retrain"
    """Retraining requests."""
    topic_retrain_status: str = "llm.retrain.status"
    """Retraining job status: queued, running, succeeded, failed (with metrics)."""
    topic_partitions: int = Field(4, ge=1, le=1024)
    """Partitions of the topics driftwarden creates (the most score workers that share work)."""
    topic_replication: int = Field(1, ge=1, le=16)
    """Replication factor of the topics driftwarden creates."""

    # --- ClickHouse -------------------------------------------------------------------------
    clickhouse_dsn: str = ""
    """``chdb:///dir`` (embedded) or ``http(s)://user:pass@host:8123``. Empty: ``<data_dir>/clickhouse``."""
    clickhouse_database: str = "driftwarden"
    """Database that holds driftwarden's tables."""

    # --- stream processing ------------------------------------------------------------------
    batch_size: int = Field(64, ge=1, le=100_000)
    """Score agent micro-batch: at most this many events ..."""
    batch_linger_ms: int = Field(100, ge=1, le=60_000)
    """... taken within this many milliseconds."""
    sink_batch_size: int = Field(1000, ge=1, le=1_000_000)
    """Sink: rows per ClickHouse insert at most ..."""
    sink_linger_ms: int = Field(250, ge=1, le=60_000)
    """... or whatever arrived within this many milliseconds."""
    sink_retry_max_s: float = Field(30.0, gt=0)
    """Longest pause between retries of a failed ClickHouse write (writes retry until they succeed)."""
    chaos_store_down_file: Path | None = None
    """Fault injection for drills and tests: while this file exists, every ClickHouse write of the
    sink fails as if the server refused it (the sink must pause and lose nothing). Unset in production."""
    sink_web_port: int = Field(6066, ge=1, le=65535)
    """Port of the sink's HTTP page (``/stats/``), which ``stats`` asks while the sink owns the store."""
    local_sink_nice: int = Field(19, ge=0, le=19)
    """CPU niceness of the sink process that the local stack starts (with its drift tests and
    retraining jobs): on a shared machine the score workers get the CPU first, and the sink,
    which batches, catches up whenever they wait. Only 19 frees the workers from the sink's
    bursts on two cores (``bench/detectors.py``); 0 turns it off."""
    worker_web_port: int = Field(0, ge=0, le=65535)
    """Port of a score worker's faust web server; 0 turns it off."""

    # --- events -----------------------------------------------------------------------------
    max_prompt_chars: int = Field(100_000, ge=1)
    """Longest prompt accepted; longer events go to the dead-letter topic."""
    max_response_chars: int = Field(100_000, ge=1)
    """Longest response accepted."""
    max_context_chars: int = Field(200_000, ge=1)
    """Longest total of context passages accepted."""
    max_event_bytes: int = Field(1_000_000, ge=1)
    """Largest encoded event accepted (Kafka's default message limit is about 1 MB)."""
    max_clock_skew_s: int = Field(86_400, ge=0)
    """How far in the future an event's timestamp may lie."""

    # --- detectors --------------------------------------------------------------------------
    price_table: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    """JSON object ``{"model": {"input_per_1k": .., "output_per_1k": ..}}`` used for cost."""
    latency_slo_ms: float = Field(10_000.0, gt=0)
    """The operational detector flags calls slower than this."""
    redact_pii: bool = False
    """Redact detected PII from prompts and responses before they are stored."""

    drift: DriftConfig = Field(default_factory=DriftConfig)
    """Drift windows, ``DRIFTWARDEN_DRIFT__<FIELD>`` (see the drift table)."""
    detectors: DetectorsSettings = Field(default_factory=DetectorsSettings)
    """Per-detector settings, ``DRIFTWARDEN_DETECTORS__<NAME>__<FIELD>`` (see the detectors table)."""

    # --- policy, alerts, retraining --------------------------------------------------------
    policy_file: Path | None = None
    """YAML rules of the policy (``driftwarden policy check FILE``); default: the shipped rules."""
    policy_enabled: bool = True
    """Run the policy agent (alerts and retraining requests) in the sink process."""
    grafana_url: str = "http://localhost:3000"
    """Base URL of Grafana: the dashboard link in each alert, and where ``dashboards push`` provisions."""
    grafana_token: SecretStr | None = None
    """Grafana service-account token for ``dashboards push`` (never logged)."""
    grafana_folder: str = "driftwarden"
    """Folder (uid and title) that ``dashboards push`` provisions into."""
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    """Alert receivers, ``DRIFTWARDEN_ALERTS__<FIELD>`` (see the alerts table)."""
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    """Retraining, ``DRIFTWARDEN_RETRAIN__<FIELD>`` (see the retraining table)."""
    # --- publisher --------------------------------------------------------------------------
    publisher_queue_size: int = Field(100_000, ge=1)
    """Events a Publisher holds in memory before it refuses more."""
    publisher_flush_at: int = Field(500, ge=1)
    """A Publisher sends a batch when this many events are queued ..."""
    publisher_flush_interval_ms: int = Field(100, ge=1)
    """... or this many milliseconds have passed ..."""
    publisher_flush_bytes: int = Field(1_000_000, ge=1)
    """... or the batch holds this many bytes."""

    @field_validator("clickhouse_database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a plain identifier (letters, digits, underscore)")
        return value

    @field_validator(
        "topic_inference", "topic_dlq", "topic_detections", "topic_events", "topic_embeddings", "topic_drift",
        "topic_alerts", "topic_retrain", "topic_retrain_status",
    )
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError("a topic name is 1-249 of letters, digits, '.', '_' and '-'")
        return value

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        if value and not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return value

    @property
    def clickhouse_url(self) -> str:
        """The DSN clickhouse-connect is given."""
        if self.clickhouse_dsn:
            return self.clickhouse_dsn
        return f"chdb://{self.store_dir}"

    @property
    def store_dir(self) -> Path:
        """Directory of the embedded store (only meaningful for ``chdb://`` DSNs)."""
        if self.clickhouse_dsn.startswith("chdb://"):
            return Path(self.clickhouse_dsn.removeprefix("chdb://"))
        return (self.data_dir / "clickhouse").resolve()

    @property
    def datasets_dir(self) -> Path:
        """Where dataset snapshots live."""
        return (self.retrain.datasets_dir or self.data_dir / "datasets").resolve()

    @property
    def jobs_dir(self) -> Path:
        """Where retraining jobs write their outputs."""
        return (self.retrain.jobs_dir or self.data_dir / "jobs").resolve()

    @property
    def embedded_store(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")

    def kafka_client_config(self) -> dict[str, object]:
        """Security settings in kafka-python / aiokafka keyword form (no bootstrap)."""
        cfg: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            cfg["sasl_mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username is not None:
            cfg["sasl_plain_username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            cfg["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile is not None:
            cfg["ssl_cafile"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile is not None:
            cfg["ssl_certfile"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile is not None:
            cfg["ssl_keyfile"] = str(self.kafka_ssl_keyfile)
        return cfg


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and ``overrides``), or raise SettingsError."""
    # A misspelt variable would otherwise be ignored in silence; this is the one module that
    # reads the environment.
    problems = [
        (name, "unknown setting (see the README's configuration table)")
        for name in sorted(os.environ)
        if name.upper().startswith(ENV_PREFIX)
        and name[len(ENV_PREFIX):].lower().split("__", 1)[0] not in Settings.model_fields
    ]
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors():
            field = "__".join(str(part) for part in err["loc"]) if err["loc"] else "?"
            problems.append((ENV_PREFIX + field.upper(), err["msg"]))
        raise SettingsError(problems) from exc
    if problems:
        raise SettingsError(problems)
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return load_settings()


def _revealed(model: BaseModel) -> dict:
    """A nested config as JSON-ready data, secrets included (for a child's environment only)."""
    out = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, BaseModel):
            value = _revealed(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[name] = value
    return out


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment for a child process (sink, worker) that must see exactly these settings.

    The parent's environment, with every ``DRIFTWARDEN_*`` variable replaced by the value this
    settings object holds (so overrides made in code reach the child too).
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, BaseModel):
            text = json.dumps(_revealed(value))
        elif isinstance(value, dict):
            text = json.dumps({k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in value.items()})
        else:
            text = str(value)
        env[ENV_PREFIX + name.upper()] = text
    return env
