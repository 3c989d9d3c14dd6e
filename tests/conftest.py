"""Fixtures shared by every test folder (the real stack lives in :mod:`driftwarden.tests.realstack`).

Every encoder built from the settings in a test process (and in the stack processes they start)
uses one folder for the embedding model's ONNX export, so the export is made once per machine
rather than once per data directory.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DRIFTWARDEN_DETECTORS__EMBEDDINGS__EXPORT_DIR",
                      str(Path(tempfile.gettempdir()) / f"driftwarden-test-encoders-{os.getuid()}"))

from driftwarden.tests.realstack import stack, stack_env, stack_settings  # noqa: F401  (fixtures)
