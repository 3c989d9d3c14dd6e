"""One exception tree for driftwarden. Each class builds its own message from its fields."""

from __future__ import annotations


class DriftwardenError(Exception):
    """Base of every error driftwarden raises on purpose."""


class SettingsError(DriftwardenError):
    """A setting read from the environment is missing or has a bad value."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = "\n".join(f"  {var}: {msg}" for var, msg in problems)
        super().__init__(
            f"driftwarden cannot start: {len(problems)} bad setting(s)\n{lines}\n"
            "Fix the variable(s) named above (see the README's configuration table) and start again."
        )


class InvalidEventError(DriftwardenError):
    """An inference event failed validation; it goes to the dead-letter topic."""

    def __init__(self, reason: str, stage: str = "validate"):
        self.reason = reason
        self.stage = stage
        super().__init__(f"invalid inference event at stage {stage!r}: {reason}")


class StorageError(DriftwardenError):
    """ClickHouse refused or failed a statement."""

    def __init__(self, action: str, cause: BaseException):
        self.action = action
        self.cause = cause
        super().__init__(f"ClickHouse failed to {action}: {type(cause).__name__}: {cause}")


class StoreLockedError(DriftwardenError):
    """Another process owns the embedded ClickHouse directory."""

    def __init__(self, path: str, owner_pid: int | None):
        self.path = path
        self.owner_pid = owner_pid
        who = f"process {owner_pid}" if owner_pid else "another process"
        super().__init__(
            f"the embedded ClickHouse store {path} is owned by {who}; only one process may open it. "
            "Stop that process, or point DRIFTWARDEN_CLICKHOUSE_DSN at a ClickHouse server."
        )


class BrokerError(DriftwardenError):
    """The Kafka broker could not be reached or started."""

    def __init__(self, bootstrap: str, detail: str):
        self.bootstrap = bootstrap
        super().__init__(
            f"Kafka broker at {bootstrap or '(local)'} is not usable: {detail}. "
            "Check DRIFTWARDEN_KAFKA_BOOTSTRAP and that the broker is up."
        )


class PublisherClosedError(DriftwardenError):
    """publish() was called after close()."""

    def __init__(self) -> None:
        super().__init__("this Publisher is closed; create a new one to publish more events")


class DetectorError(DriftwardenError):
    """A detector is misconfigured or unknown."""

    def __init__(self, detector: str, detail: str):
        self.detector = detector
        self.detail = detail
        super().__init__(f"detector {detector!r}: {detail}")


class MissingExtraError(DriftwardenError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str):
        self.module = module
        self.extra = extra
        super().__init__(
            f"{module!r} is not installed; it comes with the {extra!r} extra: pip install 'driftwarden[{extra}]'"
        )


class OtlpDecodeError(DriftwardenError):
    """An OTLP request body cannot be read: answered 400 (413 when ``too_large``)."""

    def __init__(self, reason: str, *, too_large: bool = False):
        self.reason = reason
        self.too_large = too_large
        super().__init__(f"cannot decode the OTLP request: {reason}")


class ReplayError(DriftwardenError):
    """A file given to replay cannot be turned into events."""

    def __init__(self, path: str, line: int, detail: str):
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"cannot replay {where}: {detail}")


class PolicyError(DriftwardenError):
    """A policy file is missing, not YAML, or breaks the rule schema."""

    def __init__(self, path: str, detail: str, *, cause: BaseException | None = None):
        self.path = path
        self.cause = cause
        super().__init__(f"policy file {path}: {detail}")


class DeliveryError(DriftwardenError):
    """An alert receiver refused a notification."""

    def __init__(self, receiver: str, detail: str, *, retryable: bool):
        self.receiver = receiver
        self.retryable = retryable
        super().__init__(f"alert receiver {receiver}: {detail}" + ("" if retryable else " (not retried)"))


class RetrainError(DriftwardenError):
    """A retraining step (curation, snapshot, launch, fine-tuning) cannot go on."""

    def __init__(self, step: str, detail: str):
        self.step = step
        super().__init__(f"retraining {step}: {detail}")


class RowRejectedError(DriftwardenError):
    """ClickHouse (or its client) refused rows as data, not as an outage: retrying cannot help."""

    def __init__(self, what: str, cause: BaseException):
        self.what = what
        self.cause = cause
        from driftwarden.core.secrets import scrub

        super().__init__(f"ClickHouse rejected {what} as data: {type(cause).__name__}: {scrub(str(cause))[:300]}")


class DetectorTimeoutError(DriftwardenError):
    """A detector spent its time budget on one event (or one batch) before it was done."""

    def __init__(self, detector: str, budget_ms: float, detail: str):
        self.detector = detector
        self.budget_ms = budget_ms
        super().__init__(f"detector {detector} went over its time budget of {budget_ms:g} ms ({detail})")
