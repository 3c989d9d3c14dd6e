"""Name registry of detectors, and the factory that builds the enabled ones from settings."""

from __future__ import annotations

from collections.abc import Callable

from driftwarden.core.errors import DetectorError
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector

#: name -> factory taking the settings and returning a ready detector.
_REGISTRY: dict[str, Callable[[Settings], BaseDetector]] = {}


def register(name: str) -> Callable[[Callable[[Settings], BaseDetector]], Callable[[Settings], BaseDetector]]:
    """Decorator: make a detector factory available under ``name``."""

    def wrap(factory: Callable[[Settings], BaseDetector]) -> Callable[[Settings], BaseDetector]:
        if name in _REGISTRY:
            raise DetectorError(name, "registered twice")
        _REGISTRY[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build(name: str, settings: Settings) -> BaseDetector:
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise DetectorError(name, f"unknown; known detectors: {', '.join(sorted(_REGISTRY))}") from None
    return factory(settings)


def build_enabled(settings: Settings) -> list[BaseDetector]:
    """Every registered detector whose config says it is enabled, in name order."""
    detectors = [build(name, settings) for name in names()]
    return [d for d in detectors if d.config.enabled]


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    from driftwarden.detectors import operational  # noqa: F401
