"""Logging set-up shared by every process driftwarden starts."""

from __future__ import annotations

import logging

_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once; later calls only change the level."""
    root = logging.getLogger()
    if not getattr(root, "_driftwarden", False):
        logging.basicConfig(level=level.upper(), format=_FORMAT)
        root._driftwarden = True  # type: ignore[attr-defined]
    root.setLevel(level.upper())
    # aiokafka and kafka-python are chatty at INFO during rebalances.
    for noisy in ("aiokafka", "kafka", "faust.transport", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
