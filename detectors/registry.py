"""Name registry of detectors, and the factory that builds the enabled ones from settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from driftwarden.core.errors import DetectorError
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector

#: name -> factory taking the settings and returning a ready detector.
_REGISTRY: dict[str, Callable[..., BaseDetector]] = {}


def register(name: str) -> Callable[[Callable[..., BaseDetector]], Callable[..., BaseDetector]]:
    """Decorator: make a detector factory ``(settings, encoder=None) -> detector`` available under ``name``."""

    def wrap(factory: Callable[..., BaseDetector]) -> Callable[..., BaseDetector]:
        if name in _REGISTRY:
            raise DetectorError(name, "registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build(name: str, settings: Settings, encoder: Any = None) -> BaseDetector:
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise DetectorError(name, f"unknown; known detectors: {', '.join(sorted(_REGISTRY))}") from None
    return factory(settings, encoder=encoder)


def enabled_names(settings: Settings) -> list[str]:
    """Names of the registered detectors whose config says they are enabled."""
    return [name for name in names() if config_of(name, settings).enabled]


def config_of(name: str, settings: Settings):
    """The config of detector ``name`` from the settings (operational is built from top-level fields)."""
    if name == "operational":
        from driftwarden.detectors.operational import operational_config

        return operational_config(settings)
    return getattr(settings.detectors, name)


def build_enabled(settings: Settings, encoder: Any = None) -> list[BaseDetector]:
    """Every registered detector whose config says it is enabled, in name order."""
    return [build(name, settings, encoder) for name in enabled_names(settings)]


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from driftwarden.detectors import (  # noqa: F401
        hallucination,
        operational,
        pii,
        prompt_injection,
        toxicity,
    )
