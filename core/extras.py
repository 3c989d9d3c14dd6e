"""The one import helper for optional packages: its error names the extra that installs them."""

from __future__ import annotations

import importlib
from typing import Any

from driftwarden.core.errors import MissingExtraError


def require(module: str, extra: str = "ml") -> Any:
    """Import ``module`` or raise MissingExtraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra) from exc
