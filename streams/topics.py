"""Topic names (from the settings) and their creation on the broker."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from driftwarden.core.errors import BrokerError
from driftwarden.core.settings import Settings

log = logging.getLogger(__name__)

# Kafka headers on a dead letter (the value is the original bytes, untouched).
H_REASON = "dw.reason"
H_STAGE = "dw.stage"
H_SOURCE_TOPIC = "dw.source.topic"
H_SOURCE_PARTITION = "dw.source.partition"
H_SOURCE_OFFSET = "dw.source.offset"


@dataclass(frozen=True)
class TopicNames:
    inference: str
    dlq: str
    detections: str
    events: str
    embeddings: str
    drift: str
    alerts: str
    retrain: str
    retrain_status: str
    feedback: str

    @classmethod
    def from_settings(cls, s: Settings) -> TopicNames:
        return cls(
            inference=s.topic_inference, dlq=s.topic_dlq, detections=s.topic_detections,
            events=s.topic_events, embeddings=s.topic_embeddings, drift=s.topic_drift, alerts=s.topic_alerts, retrain=s.topic_retrain,
            retrain_status=s.topic_retrain_status, feedback=s.topic_feedback,
        )

    def all(self) -> list[str]:
        return [self.inference, self.dlq, self.detections, self.events, self.embeddings, self.drift, self.alerts,
                self.retrain, self.retrain_status, self.feedback]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client and aiokafka) puts ``key`` in."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def bootstrap_servers(settings: Settings, bootstrap: str | None = None) -> list[str]:
    value = settings.kafka_bootstrap if bootstrap is None else bootstrap
    if not value:
        value = f"127.0.0.1:{settings.local_broker_port}"
    return [part.strip() for part in value.split(",") if part.strip()]


def ensure_topics(settings: Settings, bootstrap: str | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create driftwarden's topics that do not exist yet; returns the ones it created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    servers = bootstrap_servers(settings, bootstrap)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=servers, request_timeout_ms=int(timeout_s * 1000),
            client_id="driftwarden-admin", **settings.kafka_client_config(),
        )
    except KafkaError as exc:
        raise BrokerError(",".join(servers), f"cannot connect ({exc})") from exc
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in TopicNames.from_settings(settings).all() if t not in existing]
        created = []
        for name in wanted:
            try:
                admin.create_topics(
                    [NewTopic(name, settings.topic_partitions, settings.topic_replication)],
                    timeout_ms=int(timeout_s * 1000),
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics %s with %d partitions", ", ".join(created), settings.topic_partitions)
        return created
    finally:
        admin.close()
