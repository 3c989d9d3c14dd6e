"""How long each table keeps its rows: ClickHouse ``TTL`` clauses kept in step with the settings.

Rows expire by the time they were stored (``ingested_at``, ``scored_at``, ``computed_at``, ...),
not by the event's own timestamp, which any app may set: an event stamped years ago is kept as
long as one stamped now. :func:`apply_retention` runs after the versioned migrations; it records
what it applied in the ``retention`` table, so a changed setting becomes one ``ALTER TABLE ...
MODIFY TTL`` (or ``REMOVE TTL`` for 0) at the next start, and an unchanged one nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class RetentionConfig(BaseModel):
    """Days each table keeps a row after it was stored; 0 keeps rows for ever."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    events_days: int = Field(90, ge=0, le=36_500)
    """``inference_events``: prompts, responses and context (redacted when redaction is on)."""
    detections_days: int = Field(90, ge=0, le=36_500)
    """``detections``: one row per event and detector."""
    embeddings_days: int = Field(30, ge=0, le=36_500)
    """``embeddings``: the largest table per event (two 384-float vectors); drift references are
    read from the last ``baseline_size`` events, so a month is plenty."""
    feedback_days: int = Field(90, ge=0, le=36_500)
    """``feedback``."""
    dead_letters_days: int = Field(30, ge=0, le=36_500)
    """``dead_letters``: raw bytes of what could not be taken."""
    drift_windows_days: int = Field(365, ge=0, le=36_500)
    """``drift_windows``: one row per window, small."""
    alerts_days: int = Field(365, ge=0, le=36_500)
    """``alerts`` and ``alert_deliveries``."""
    retrain_days: int = Field(365, ge=0, le=36_500)
    """``retrain_requests`` and ``retrain_jobs`` (snapshots and adapters on disk are not touched)."""


#: table -> (the RetentionConfig field, the column its rows expire by)
TABLES: dict[str, tuple[str, str]] = {
    "inference_events": ("events_days", "ingested_at"),
    "detections": ("detections_days", "scored_at"),
    "embeddings": ("embeddings_days", "computed_at"),
    "feedback": ("feedback_days", "received_at"),
    "dead_letters": ("dead_letters_days", "received_at"),
    "drift_windows": ("drift_windows_days", "computed_at"),
    "alerts": ("alerts_days", "starts_at"),
    "alert_deliveries": ("alerts_days", "updated_at"),
    "retrain_requests": ("retrain_days", "requested_at"),
    "retrain_jobs": ("retrain_days", "updated_at"),
    "drift_members": ("embeddings_days", "added_at"),
}


def ttl_clause(column: str, days: int) -> str:
    return f"toDateTime({column}) + INTERVAL {int(days)} DAY"


def apply_retention(client, database: str, config: RetentionConfig) -> dict[str, int]:
    """Make each table's TTL match ``config``; returns ``{table: days}`` of what changed."""
    applied = dict(client.query(f"SELECT table, days FROM {database}.retention FINAL").result_rows)
    changed: dict[str, int] = {}
    for table, (field, column) in TABLES.items():
        days = int(getattr(config, field))
        before = applied.get(table)
        if before is not None and int(before) == days or before is None and days == 0:
            continue
        if days:
            client.command(f"ALTER TABLE {database}.{table} MODIFY TTL {ttl_clause(column, days)}")
        else:
            client.command(f"ALTER TABLE {database}.{table} REMOVE TTL")
        client.insert(f"{database}.retention", [[table, days, datetime.now(UTC)]],
                      column_names=["table", "days", "applied_at"])
        log.info("retention of %s.%s: %s (was %s)", database, table, f"{days} days" if days else "for ever",
                 "for ever" if not before else f"{before} days")
        changed[table] = days
    return changed
