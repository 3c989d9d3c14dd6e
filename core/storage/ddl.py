"""Versioned, idempotent ClickHouse DDL. Each migration runs once; ``schema_version`` records it.

Tables are ``ReplacingMergeTree`` keyed on ``event_id`` (plus ``detector`` for detections), so a
redelivered event collapses to one row; read with ``FINAL`` for exact counts. Inserts carry an
``insert_deduplication_token`` so a retried batch is not inserted twice at all, which on a
non-replicated table needs ``non_replicated_deduplication_window``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

DEDUP_WINDOW = 10_000
_TABLE_SETTINGS = f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "inference events, detections, dead letters",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.inference_events (
                event_id      String,
                ts            DateTime64(3, 'UTC'),
                app           LowCardinality(String),
                model         LowCardinality(String),
                model_version LowCardinality(String),
                prompt        String,
                response      String,
                context       Array(String),
                latency_ms    Float64,
                tokens_in     UInt32,
                tokens_out    UInt32,
                cost_usd      Nullable(Float64),
                status        LowCardinality(String),
                error         Nullable(String),
                user_id       Nullable(String),
                session_id    Nullable(String),
                feedback      Nullable(Float32),
                metadata      Map(String, String),
                redacted      UInt8,
                ingested_at   DateTime64(3, 'UTC'),
                INDEX ts_idx ts TYPE minmax GRANULARITY 4
            ) ENGINE = ReplacingMergeTree(ingested_at)
            ORDER BY event_id
            {_TABLE_SETTINGS}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.detections (
                event_id           String,
                detector           LowCardinality(String),
                detector_version   LowCardinality(String),
                config_fingerprint LowCardinality(String),
                app                LowCardinality(String),
                model_version      LowCardinality(String),
                event_ts           DateTime64(3, 'UTC'),
                scored_at          DateTime64(3, 'UTC'),
                score              Nullable(Float64),
                label              Nullable(UInt8),
                scores             Map(String, Float64),
                spans              String,
                evidence           Nullable(String),
                error              Nullable(String),
                INDEX ts_idx event_ts TYPE minmax GRANULARITY 4
            ) ENGINE = ReplacingMergeTree(scored_at)
            ORDER BY (event_id, detector)
            {_TABLE_SETTINGS}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.dead_letters (
                dlq_id           String,
                received_at      DateTime64(3, 'UTC'),
                source_topic     LowCardinality(String),
                source_partition Int32,
                source_offset    Int64,
                stage            LowCardinality(String),
                reason           String,
                message_key      String,
                raw              String
            ) ENGINE = ReplacingMergeTree
            ORDER BY dlq_id
            {_TABLE_SETTINGS}
            """,
        ),
    ),
)

MIGRATIONS += (
    Migration(
        2,
        "prompt and response embeddings",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.embeddings (
                event_id      String,
                field         LowCardinality(String),
                app           LowCardinality(String),
                model_version LowCardinality(String),
                event_ts      DateTime64(3, 'UTC'),
                encoder       LowCardinality(String),
                computed_at   DateTime64(3, 'UTC'),
                vector        Array(Float32),
                INDEX ts_idx event_ts TYPE minmax GRANULARITY 4
            ) ENGINE = ReplacingMergeTree(computed_at)
            ORDER BY (event_id, field)
            {_TABLE_SETTINGS}
            """,
        ),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "drift windows",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.drift_windows (
                window_id          String,
                app                LowCardinality(String),
                model_version      LowCardinality(String),
                field              LowCardinality(String),
                window_start       DateTime64(3, 'UTC'),
                window_end         DateTime64(3, 'UTC'),
                n_reference        UInt32,
                n_current          UInt32,
                method             LowCardinality(String),
                statistic          Float64,
                p_value            Float64,
                reference_policy   LowCardinality(String),
                reference_id       String,
                top_event_ids      Array(String),
                descriptor_p_values Map(String, Float64),
                encoder            LowCardinality(String),
                detector_version   LowCardinality(String),
                config_fingerprint LowCardinality(String),
                computed_at        DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(computed_at)
            ORDER BY window_id
            {_TABLE_SETTINGS}
            """,
        ),
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "alerts, retraining requests and jobs",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.alerts (
                alert_id           String,
                status             LowCardinality(String),
                dedupe_key         String,
                rule               LowCardinality(String),
                severity           LowCardinality(String),
                app                LowCardinality(String),
                model_version      LowCardinality(String),
                field              LowCardinality(String),
                metric             LowCardinality(String),
                detector           Nullable(String),
                value              Float64,
                threshold          Float64,
                baseline           Nullable(Float64),
                summary            String,
                example_event_ids  Array(String),
                window_id          String,
                window_start       DateTime64(3, 'UTC'),
                window_end         DateTime64(3, 'UTC'),
                labels             Map(String, String),
                dashboard_url      String,
                retrain_requested  UInt8,
                starts_at          DateTime64(3, 'UTC'),
                ends_at            Nullable(DateTime64(3, 'UTC')),
                policy_fingerprint LowCardinality(String)
            ) ENGINE = ReplacingMergeTree
            ORDER BY (alert_id, status)
            {_TABLE_SETTINGS}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.retrain_requests (
                request_id    String,
                alert_id      String,
                app           LowCardinality(String),
                model_version LowCardinality(String),
                reason        String,
                start         DateTime64(3, 'UTC'),
                end           DateTime64(3, 'UTC'),
                dataset       String,
                requested_at  DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            ORDER BY request_id
            {_TABLE_SETTINGS}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.retrain_jobs (
                job_id          String,
                request_id      String,
                app             LowCardinality(String),
                model_version   LowCardinality(String),
                status          LowCardinality(String),
                launcher        LowCardinality(String),
                dataset_version String,
                dataset_rows    UInt32,
                metrics         Map(String, Float64),
                message         String,
                output_dir      String,
                updated_at      DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY job_id
            {_TABLE_SETTINGS}
            """,
        ),
    ),
    Migration(
        5,
        "durable retry of alert deliveries",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.alert_deliveries (
                alert_id     String,
                status       LowCardinality(String),
                receiver     LowCardinality(String),
                state        LowCardinality(String),
                attempts     UInt32,
                parked_at    DateTime64(3, 'UTC'),
                next_try_at  DateTime64(3, 'UTC'),
                last_error   String,
                alert        String,
                updated_at   DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY (alert_id, status, receiver)
            {_TABLE_SETTINGS}
            """,
        ),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "drift windows say what is new: novel share, clusters, part p-values",
        (
            "ALTER TABLE {db}.drift_windows ADD COLUMN IF NOT EXISTS novel_share Float64 DEFAULT 0 AFTER descriptor_p_values",
            "ALTER TABLE {db}.drift_windows ADD COLUMN IF NOT EXISTS clusters String DEFAULT '[]' AFTER novel_share",
            "ALTER TABLE {db}.drift_windows ADD COLUMN IF NOT EXISTS part_p_values Map(String, Float64) AFTER clusters",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "feedback that arrives after its event (the last per event and source)",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.feedback (
                event_id    String,
                source      LowCardinality(String),
                score       Float64,
                comment     String,
                given_at    DateTime64(3, 'UTC'),
                received_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(received_at)
            ORDER BY (event_id, source)
            {_TABLE_SETTINGS}
            """,
        ),
    ),
)

MIGRATIONS += (
    Migration(
        8,
        "the retention each table has (TTL days, applied by core/storage/retention.py)",
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.retention (
                table      String,
                days       UInt32,
                applied_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(applied_at)
            ORDER BY table
            """,
        ),
    ),
)

MIGRATIONS += (
    Migration(
        9,
        "durable stream state: segment heads (drift windows, rule states) and drift window members",
        (
            """
            CREATE TABLE IF NOT EXISTS {db}.segment_state (
                kind       LowCardinality(String),
                key        String,
                app        String,
                state      String,
                updated_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY (kind, key)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {{db}}.drift_members (
                segment     String,
                app         String,
                window      UInt64,
                position    UInt32,
                event_id    String,
                event_ts    DateTime64(3, 'UTC'),
                descriptors Map(String, Float64),
                added_at    DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree(added_at)
            ORDER BY (segment, window, position)
            {_TABLE_SETTINGS}
            """,
        ),
    ),
)

MIGRATIONS += (
    Migration(
        10,
        "retraining decisions: the promotion policy's (or a person's) decision and the registry version",
        (
            "ALTER TABLE {db}.retrain_jobs ADD COLUMN IF NOT EXISTS decision LowCardinality(String) DEFAULT '' "
            "AFTER updated_at",
            "ALTER TABLE {db}.retrain_jobs ADD COLUMN IF NOT EXISTS decision_reasons Array(String) AFTER decision",
            "ALTER TABLE {db}.retrain_jobs ADD COLUMN IF NOT EXISTS registered_model String DEFAULT '' "
            "AFTER decision_reasons",
            "ALTER TABLE {db}.retrain_jobs ADD COLUMN IF NOT EXISTS registered_version String DEFAULT '' "
            "AFTER registered_model",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version


def migrate(client, database: str) -> int:
    """Bring ``database`` up to the newest schema; returns the version it is at."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"""CREATE TABLE IF NOT EXISTS {database}.schema_version (
                version UInt32, description String, applied_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree ORDER BY version"""
    )
    current = int(client.command(f"SELECT max(version) FROM {database}.schema_version") or 0)
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        log.info("applying ClickHouse migration %d: %s", migration.version, migration.description)
        for statement in migration.statements:
            client.command(statement.format(db=database))
        client.insert(
            f"{database}.schema_version",
            [[migration.version, migration.description, datetime.now(UTC)]],
            column_names=["version", "description", "applied_at"],
        )
        current = migration.version
    return current
