"""The one settings object. Read from the environment (prefix ``DRIFTWARDEN_``) once at start-up.

No other module reads ``os.environ``. A bad value stops start-up with a :class:`SettingsError`
that names the environment variable.
"""

from __future__ import annotations

import functools
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftwarden.core.detector_configs import DetectorsSettings, DriftConfig
from driftwarden.core.ingest.otlp.config import OtlpConfig
from driftwarden.core.loop_configs import AlertsConfig, RetrainConfig
from driftwarden.core.storage.retention import RetentionConfig
from driftwarden.core.errors import SettingsError
from driftwarden.core.secrets import mask_url

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

def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) is reachable from this machine only."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


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
    topic_feedback: str = "llm.feedback"
    """Feedback that arrives after its call (``Publisher.feedback``, ``POST /v1/feedback``)."""
    topic_partitions: int = Field(4, ge=1, le=1024)
    """Partitions of the topics driftwarden creates (the most score workers that share work)."""
    topic_replication: int = Field(1, ge=1, le=16)
    """Replication factor of the topics driftwarden creates."""

    # --- ClickHouse -------------------------------------------------------------------------
    clickhouse_dsn: SecretStr = SecretStr("")
    """``chdb:///dir`` (embedded) or ``http(s)://user:pass@host:8123`` (a secret: shown masked,
    never logged). Empty: ``<data_dir>/clickhouse``."""
    clickhouse_database: str = "driftwarden"
    """Database that holds driftwarden's tables."""
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    """Days each table keeps a row after it was stored, ``DRIFTWARDEN_RETENTION__<TABLE>_DAYS``
    (0: for ever); applied as ClickHouse TTL when the store is opened."""

    # --- stream processing ------------------------------------------------------------------
    batch_size: int = Field(64, ge=1, le=100_000)
    """Score agent micro-batch: at most this many events ..."""
    batch_linger_ms: int = Field(100, ge=1, le=60_000)
    """... taken within this many milliseconds."""
    sink_batch_size: int = Field(1000, ge=1, le=1_000_000)
    """Sink: rows per ClickHouse insert at most ..."""
    sink_linger_ms: int = Field(250, ge=1, le=60_000)
    """... or whatever arrived within this many milliseconds."""
    stop_wait_s: float = Field(20.0, ge=0, le=3600)
    """At SIGTERM, how long a worker or the sink waits for the batches its agents are in the middle
    of before it stops without them (they are not committed, so they are read again at the next
    start). faust's own wait has no end when its batching dropped a batch at the stop
    (faust-streaming issue #162). Keep it below the grace period before a kill (45 s in the local
    stack, ``terminationGracePeriodSeconds`` in Kubernetes). A rebalance always waits in full."""
    consumer_fetch_max_wait_ms: int = Field(100, ge=1, le=60_000)
    """Longest a worker's or the sink's fetch waits on the broker for data. A broker that answers
    only when the wait is over (the local Tansu broker) adds it to every hop; Kafka answers as
    soon as data arrives, so a shorter wait costs it only more polls of idle topics (faust's own
    1500 ms put publish → row at p99 2.1 s, ``bench/pipeline.py``)."""
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
    tune_allocator: bool = True
    """Fix glibc's mmap threshold and cap its arenas when a worker or the sink starts
    (``core/allocator.py``): with glibc's defaults their memory grows in steps over a long run."""
    worker_web_port: int = Field(0, ge=0, le=65535)
    """Port of a score worker's web server (``/metrics``, ``/healthz``, ``/readyz``); 0 turns it off.
    The local stack gives each worker a free port and ``driftwarden stats`` lists them."""
    web_bind: str = "127.0.0.1"
    """Address the sink's and workers' web servers listen on. Beyond loopback (``0.0.0.0`` in a
    pod) ``web_token`` must be set: the processes refuse to start without it."""
    web_token: SecretStr | None = Field(None, validate_default=True)
    """Bearer token that the sink's data pages (``/stats/``, ``/progress/``, ``/report/``,
    ``/alerts/``) require when the web server listens beyond loopback (``driftwarden stats`` and the
    local stack send it). ``/metrics``, ``/healthz`` and ``/readyz`` stay open for probes and scrapers."""
    metrics_max_segments: int = Field(100, ge=0, le=100_000)
    """Segments (app, model version, field) with their own series in ``/metrics`` (the last drift
    p-value): the most recently updated ones; older series are dropped past the cap. 0: none."""

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
    min_event_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    """Earliest event timestamp accepted (ISO 8601); older events go to the dead-letter topic.
    The store's time columns hold 1900-2299; a floor far below now only admits broken clocks."""
    max_latency_ms: float = Field(86_400_000.0, gt=0, le=1e12)
    """Largest ``latency_ms`` accepted (default one day); larger values are dead-lettered."""
    max_cost_usd: float = Field(10_000.0, gt=0, le=1e12)
    """Largest ``cost_usd`` of one call accepted; sums over windows stay finite below it."""
    max_context_passages: int = Field(256, ge=1, le=100_000)
    """Most retrieved passages in one event's ``context``."""
    max_reason_chars: int = Field(1_000, ge=80, le=8_192)
    """Longest dead-letter reason (the first problems, then how many more there were)."""

    # --- detectors --------------------------------------------------------------------------
    price_table: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    """JSON object ``{"model": {"input_per_1k": .., "output_per_1k": ..}}`` used for cost."""
    latency_slo_ms: float = Field(10_000.0, gt=0)
    """The operational detector flags calls slower than this."""
    cost_subject: str = Field("user_id", pattern=r"^(user_id|session_id|metadata\.[^\s]{1,128})?$")
    """Whom a call's cost is counted for in per-user cost rules (``per: subject``): ``user_id``,
    ``session_id`` or ``metadata.<key>``; empty turns it off."""
    redact_pii: bool = True
    """Redact detected PII before anything is stored: prompt, response, context passages, metadata
    values, the error text, and the stored copy of dead letters. Turning it off (``false``) stores
    what apps sent, PII included: a deliberate choice for stores whose readers may see it."""

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
    otlp: OtlpConfig = Field(default_factory=OtlpConfig)
    """The OTLP receiver, ``DRIFTWARDEN_OTLP__<FIELD>`` (see "Send OpenTelemetry traces")."""

    # --- state per segment (drift windows, detection windows, rule states) -----------------
    segment_idle_minutes: float = Field(1440.0, gt=0, le=525_600)
    """A segment (app, model version; for drift also the field) that sent nothing for this long
    is evicted from the drift windows, the detection windows and the policy's rule states; if it
    comes back it starts again as after a restart. A rule that is firing is kept until it resolves."""
    max_segments: int = Field(2_000, ge=1, le=1_000_000)
    """Live segments each of the drift windows, the detection windows and the policy keeps at most;
    past it the least recently seen one is evicted, with a WARNING. A drift segment holds up to
    ``baseline_size + window_size`` vectors (about 0.6 MB at the defaults with 384-d embeddings)."""

    # --- publisher --------------------------------------------------------------------------
    publisher_queue_size: int = Field(100_000, ge=1)
    """Events a Publisher holds in memory before it refuses more."""
    publisher_flush_at: int = Field(500, ge=1)
    """A Publisher sends a batch when this many events are queued ..."""
    publisher_flush_interval_ms: int = Field(100, ge=1)
    """... or this many milliseconds have passed ..."""
    publisher_flush_bytes: int = Field(1_000_000, ge=1)
    """... or the batch holds this many bytes."""

    @field_validator("web_token")
    @classmethod
    def _token_beyond_loopback(cls, value: SecretStr | None, info) -> SecretStr | None:
        bind = info.data.get("web_bind", "127.0.0.1")
        if not is_loopback(bind) and (value is None or not value.get_secret_value()):
            raise ValueError(f"must be set when DRIFTWARDEN_WEB_BIND ({bind}) is beyond loopback: the sink's data "
                             "pages would be open to the network")
        return value

    @field_validator("clickhouse_database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a plain identifier (letters, digits, underscore)")
        return value

    @field_validator(
        "topic_inference", "topic_dlq", "topic_detections", "topic_events", "topic_embeddings", "topic_drift",
        "topic_alerts", "topic_retrain", "topic_retrain_status", "topic_feedback",
    )
    @classmethod
    def _topic_name(cls, value: str) -> str:
        if not _TOPIC.match(value):
            raise ValueError("a topic name is 1-249 of letters, digits, '.', '_' and '-'")
        return value

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if text and not text.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")  # the value is not echoed
        return value

    @property
    def clickhouse_url(self) -> str:
        """The DSN clickhouse-connect is given, password included: never print or log it (use
        :attr:`clickhouse_url_masked`)."""
        dsn = self.clickhouse_dsn.get_secret_value()
        if dsn:
            return dsn
        return f"chdb://{self.store_dir}"

    @property
    def clickhouse_url_masked(self) -> str:
        """The DSN for output: password and secret query values replaced by ``***``."""
        return mask_url(self.clickhouse_url)

    @property
    def store_dir(self) -> Path:
        """Directory of the embedded store (only meaningful for ``chdb://`` DSNs)."""
        dsn = self.clickhouse_dsn.get_secret_value()
        if dsn.startswith("chdb://"):
            return Path(dsn.removeprefix("chdb://"))
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
    def mlflow_tracking_uri(self) -> str:
        """Where retraining runs and model versions are recorded (MLflow): the setting, or a SQLite
        file under the data directory."""
        if self.retrain.mlflow_tracking_uri is not None:
            return self.retrain.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Where a local registry keeps its artifacts (the adapters, manifests, metrics)."""
        return (self.data_dir / "mlflow" / "artifacts").resolve()

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
        # Not chained: pydantic's error holds the input values, secrets included, and a traceback
        # would print them. The problems name each variable and what is wrong with it.
        raise SettingsError(problems) from None
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
    names = [*type(model).model_fields, *(model.__pydantic_extra__ or {})]  # extras: each detector's config
    for name in names:
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


def setting_text(value: object) -> str:
    """A setting's value as its environment variable's text (secrets revealed)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        return json.dumps(_revealed(value))
    if isinstance(value, dict):
        return json.dumps({k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in value.items()})
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


#: Settings a score worker never reads: the sink's store and the alert and Grafana secrets.
SINK_ONLY_SETTINGS = ("clickhouse_dsn", "grafana_token", "alerts")


def child_environment(settings: Settings, omit: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment for a child process (sink, worker) that must see exactly these settings.

    The parent's environment, with every ``DRIFTWARDEN_*`` variable replaced by the value this
    settings object holds (so overrides made in code reach the child too), except the settings
    named in ``omit`` (workers get ``omit=SINK_ONLY_SETTINGS``). It holds every other secret:
    only for driftwarden's own services; jobs get :func:`job_environment`.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None or name in omit:
            continue
        env[ENV_PREFIX + name.upper()] = setting_text(value)
    return env


#: Variables of the parent's environment that a job (fine-tuning) may see, by exact name ...
JOB_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "PYTHONPATH",
    "PYTHONHASHSEED", "PYTHONUNBUFFERED", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
    "PYTORCH_CUDA_ALLOC_CONF", "TOKENIZERS_PARALLELISM", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
})
#: ... and by prefix (locale, Hugging Face cache and offline flags, thread counts) ...
JOB_ENV_PREFIXES = ("LC_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_")
#: ... never a name that looks like a secret (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, ...).
_SECRET_ENV_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH", re.IGNORECASE)


def setting_variables(settings: Settings, names: tuple[str, ...] | list[str]) -> dict[str, object]:
    """``{"DRIFTWARDEN_<FIELD>": value}`` for the named settings; ``"retrain.max_steps"`` names a
    nested field (``DRIFTWARDEN_RETRAIN__MAX_STEPS``). Unset (None) settings are left out; values
    are as held (a :class:`SecretStr` stays one, so callers decide how a secret travels)."""
    out: dict[str, object] = {}
    for name in names:
        value: object = settings
        for part in name.split("."):
            value = getattr(value, part)
        if value is not None:
            out[ENV_PREFIX + name.replace(".", "__").upper()] = value
    return out


def job_environment(settings: Settings, names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The environment of a job process: an allow-list of the parent's environment (path,
    locale, temporary directory, Python path, Hugging Face offline flags and cache, thread counts,
    visible GPUs; nothing named like a secret) and only the named settings (see
    :func:`setting_variables`). No other ``DRIFTWARDEN_*`` variable, so no secret of the
    parent (Kafka password, Grafana token, alert receivers, the store's DSN) reaches the job."""
    env = {k: v for k, v in os.environ.items()
           if (k in JOB_ENV_NAMES or k.startswith(JOB_ENV_PREFIXES)) and not _SECRET_ENV_NAME.search(k)}
    env.update({k: setting_text(v) for k, v in setting_variables(settings, names).items()})
    return env
