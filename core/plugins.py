"""Plug-ins found through entry points: every detector (built-in or from another package) is a
module named in the ``driftwarden.detectors`` entry-point group, loaded once; loading it runs its
registration (``detectors/registry.py``). Core names no detector."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from driftwarden.core.errors import DetectorError

log = logging.getLogger(__name__)

DETECTOR_GROUP = "driftwarden.detectors"
_loaded = False


def load_detector_plugins() -> None:
    """Import every module of the ``driftwarden.detectors`` entry-point group (once per process).
    A plug-in that fails to import is an error naming it: a detector that silently went missing
    would stop scoring without anyone noticing."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for point in sorted(entry_points(group=DETECTOR_GROUP), key=lambda p: p.name):
        try:
            point.load()
        except Exception as exc:
            _loaded = False
            raise DetectorError(point.name, f"the plug-in {point.value!r} (entry point {DETECTOR_GROUP}) failed to "
                                            f"import: {type(exc).__name__}: {exc}") from exc
