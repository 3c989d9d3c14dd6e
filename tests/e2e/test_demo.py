"""The README's main job, as a user runs it: `driftwarden demo` on a fresh data directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from driftwarden.deploy.local.broker import free_port

pytestmark = pytest.mark.integration


def test_the_demo_starts_the_stack_replays_real_traffic_and_reports_what_was_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTWARDEN_LOCAL_BROKER_PORT", str(free_port()))
    monkeypatch.setenv("DRIFTWARDEN_SINK_WEB_PORT", str(free_port()))
    out = subprocess.run(
        [sys.executable, "-m", "driftwarden", "demo", "--limit", "400", "--data-dir", str(tmp_path / "dw")],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("\n{") + 1:])
    assert summary["replayed"] == {"rows": 400, "published": 400, "refused": 0}
    assert summary["events"] == summary["events_distinct_ids"] == 400
    assert summary["detections_by_detector"]["operational"]["results"] == 400
    assert summary["dead_letters"] == 0
    assert "stored 400/400" in out.stdout
