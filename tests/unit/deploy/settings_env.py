"""Runs the real settings over a rendered environment (the chart's, the compose file's)."""

from __future__ import annotations

import os
import subprocess
import sys


def load_settings_with(env: dict[str, str]) -> subprocess.CompletedProcess:
    """``load_settings()`` in a process whose environment is exactly ``env`` (plus PATH)."""
    return subprocess.run([sys.executable, "-c", "from driftwarden.core.settings import load_settings; load_settings()"],
                          env={"PATH": os.environ.get("PATH", ""), **env}, capture_output=True, text=True, timeout=60)
