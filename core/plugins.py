"""Plug-ins found through entry points: every detector (built-in or from another package) is a
module named in the ``driftwarden.detectors`` entry-point group, loaded once; loading it runs its
registration (``detectors/registry.py``). Core names no detector."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from driftwarden.core.errors import DetectorError

log = logging.getLogger(__name__)

DETECTOR_GROUP = "driftwarden.detectors"
_state = {"loaded": False, "loading": False}


def load_detector_plugins() -> None:
    """Import every module of the ``driftwarden.detectors`` entry-point group (once per process).
    A plug-in that fails to import, or an install whose metadata lists none (a checkout that was
    never installed), is an error that says so: a detector that silently went missing would stop
    scoring without anyone noticing. A call made while the plug-ins load (a plug-in that reads the
    settings as it imports) returns at once; the outer call finishes the loading."""
    if _state["loaded"] or _state["loading"]:
        return
    _state["loading"] = True
    try:
        points = sorted(entry_points(group=DETECTOR_GROUP), key=lambda p: p.name)
        if not points:
            raise DetectorError("plug-ins", f"no {DETECTOR_GROUP} entry points are installed: install the package "
                                            f"(pip install -e . in a checkout) so that its detectors are found")
        for point in points:
            try:
                point.load()
            except Exception as exc:
                raise DetectorError(point.name, f"the plug-in {point.value!r} (entry point {DETECTOR_GROUP}) failed "
                                                f"to import: {type(exc).__name__}: {exc}") from exc
        _state["loaded"] = True
    finally:
        _state["loading"] = False
