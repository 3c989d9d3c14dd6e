"""The detector registry: each detector module registers its class, its config and what it can do.

Adding a detector is one module (and its test): a :class:`~driftwarden.detectors.base.BaseDetector`
subclass decorated with :func:`register`, with its config class beside it, and a line in the
``driftwarden.detectors`` entry points (``pyproject.toml``; another package's own entry points work
the same way). The settings find its config (``DRIFTWARDEN_DETECTORS__<NAME>__<FIELD>``), the
stream's pipeline builds it when enabled, ``driftwarden score`` scores files with it, the policy
accepts rules on it and the report and dashboards show what it flags, without another edit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftwarden.core.detector_configs import DETECTOR_CONFIGS, DetectorConfig, register_config
from driftwarden.core.errors import DetectorError
from driftwarden.core.plugins import load_detector_plugins
from driftwarden.core.settings import Settings
from driftwarden.detectors.base import BaseDetector


@dataclass(frozen=True)
class Registration:
    name: str
    detector: type[BaseDetector]
    """Built as ``detector(config, encoder=encoder)``."""
    config: type[DetectorConfig] | None
    """Its config class, found under ``settings.detectors.<name>`` (None: ``config_from`` builds it)."""
    config_from: Callable[[Settings], DetectorConfig] | None = None
    """For a detector configured by top-level settings (``operational``: the latency SLO, prices)."""
    offline: bool = True
    """Whether ``driftwarden score`` can score a file's rows with it (a text per row)."""
    reads_context: bool = False
    """Whether it reads an event's ``context`` (the grounding, retrieved documents): ``--context-field``."""
    needs_context: bool = False
    """Whether it cannot judge a row without its context (``--context-field`` required)."""
    scores_response: bool = False
    """Whether a file row's text is the response it judges (with ``--prompt-field`` as its question)."""
    offline_update: Mapping[str, Any] = field(default_factory=dict)
    """Config changes for scoring a file (a row has one text: ``{"fields": ("prompt",)}``; no sampling)."""


_REGISTRY: dict[str, Registration] = {}


def register(name: str, *, config: type[DetectorConfig] | None = None,
             config_from: Callable[[Settings], DetectorConfig] | None = None, offline: bool = True,
             reads_context: bool = False, needs_context: bool = False, scores_response: bool = False,
             offline_update: Mapping[str, Any] | None = None):
    """Class decorator: make the detector class available under ``name``."""
    if (config is None) == (config_from is None):
        raise DetectorError(name, "register it with exactly one of config= (a settings section) or config_from=")

    def wrap(cls: type[BaseDetector]) -> type[BaseDetector]:
        if name in _REGISTRY and _REGISTRY[name].detector is not cls:
            raise DetectorError(name, "registered twice")
        if config is not None:
            register_config(name, config)
        _REGISTRY[name] = Registration(name, cls, config, config_from, offline, reads_context or needs_context, needs_context,
                                       scores_response,
                                       dict(offline_update or {}))
        return cls

    return wrap


def unregister(name: str) -> None:
    """Remove a registration (tests that register a detector of their own clean up with it)."""
    _REGISTRY.pop(name, None)
    DETECTOR_CONFIGS.pop(name, None)


def registrations() -> dict[str, Registration]:
    load_detector_plugins()
    return dict(sorted(_REGISTRY.items()))


def registration(name: str) -> Registration:
    found = registrations().get(name)
    if found is None:
        raise DetectorError(name, f"unknown; known detectors: {', '.join(registrations())}")
    return found


def names() -> list[str]:
    return list(registrations())


def offline_names() -> list[str]:
    """Detectors that can score a file's rows (``driftwarden score``)."""
    return [n for n, r in registrations().items() if r.offline]


def config_of(name: str, settings: Settings) -> DetectorConfig:
    """The config of detector ``name`` from the settings."""
    r = registration(name)
    return r.config_from(settings) if r.config_from is not None else settings.detectors.config(name)


def build(name: str, settings: Settings, encoder: Any = None, config: DetectorConfig | None = None) -> BaseDetector:
    """Detector ``name`` with its config from the settings (or ``config``)."""
    r = registration(name)
    return r.detector(config if config is not None else config_of(name, settings), encoder=encoder)


def enabled_names(settings: Settings) -> list[str]:
    """Names of the registered detectors whose config says they are enabled."""
    return [name for name in names() if config_of(name, settings).enabled]


def unsampled_names(settings: Settings) -> list[str]:
    """Enabled detectors that score every event (``sample_rate`` 1): once each has as many
    results stored as there are events, every event is fully scored (a sampled detector's
    results travel with theirs, and it has fewer)."""
    return [name for name in enabled_names(settings) if config_of(name, settings).sample_rate >= 1.0]


def build_enabled(settings: Settings, encoder: Any = None) -> list[BaseDetector]:
    """Every registered detector whose config says it is enabled, in name order."""
    return [build(name, settings, encoder) for name in enabled_names(settings)]
