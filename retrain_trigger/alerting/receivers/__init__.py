"""Alert receivers: one module per channel, each a payload builder (tested against the service's
documented format, every field bounded to what the service accepts) and a factory that builds its
:class:`Receiver` from the settings, registered with :func:`channel`.

Adding a channel is one module here with a ``@channel("name")`` factory (and its test); the
dispatcher (``dispatch.py``) delivers to whatever the factories return.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from driftwarden.core.loop_configs import AlertsConfig
from driftwarden.core.secrets import mask_url, scrub

MAX_EXAMPLES = 20
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Receiver:
    name: str
    url: str
    """Where to POST (secret for Slack: never logged)."""
    build: Any
    """AlertEvent -> JSON body."""
    ok_statuses: tuple[int, ...] = (200, 201, 202, 204)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values that must never reach a log line or an error message (the webhook URL, the routing key)."""
    setting: str = ""
    """The variable that configures it, for messages that say what to fix."""
    resend: bool = False
    """The service expects firing alerts to be sent again (Alertmanager resolves an alert that was
    not re-sent within its ``resolve_timeout``): the dispatcher re-sends them every
    ``resend_interval_s``."""

    def __repr__(self) -> str:
        return f"Receiver({self.name!r}, {self.shown!r})"

    @property
    def shown(self) -> str:
        """The URL for output: hidden whole when it is a secret, else masked."""
        return "(URL hidden: a secret)" if self.url in self.secrets else mask_url(self.url)

    def scrub(self, text: object) -> str:
        return scrub(str(text), [*self.secrets, self.url])


_CHANNELS: dict[str, Callable[[AlertsConfig], Receiver | None]] = {}


def channel(name: str):
    """Decorator: register ``factory(config) -> Receiver | None`` (None: the channel is not configured)."""

    def wrap(factory: Callable[[AlertsConfig], Receiver | None]):
        if name in _CHANNELS:
            raise ValueError(f"alert channel {name!r} registered twice")
        _CHANNELS[name] = factory
        return factory

    return wrap


def channels() -> dict[str, Callable[[AlertsConfig], Receiver | None]]:
    """Every registered channel (the modules of this package are imported once, first)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(_CHANNELS)


def receivers_from(config: AlertsConfig) -> list[Receiver]:
    """The receivers the settings turn on, in channel-name order."""
    return [r for name, factory in sorted(channels().items()) if (r := factory(config)) is not None]


def iso_time(dt) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clip(text: object, limit: int) -> str:
    """``text`` as a string without control characters (newlines and tabs stay), at most ``limit`` long."""
    text = _CONTROL.sub(" ", str(text))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def bounded_key(text: str, limit: int) -> str:
    """A key within ``limit`` characters that stays unique and stable (trigger and resolve agree)."""
    if len(text) <= limit:
        return text
    return text[:limit - 17] + "~" + hashlib.sha256(text.encode()).hexdigest()[:16]


def json_number(value: float | None) -> float | str | None:
    """JSON has no inf or NaN: those travel as text."""
    return value if value is None or math.isfinite(value) else str(value)


def http_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL with a host (a link a receiver may show), else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or _CONTROL.search(url) or " " in url:
        return None
    return url
