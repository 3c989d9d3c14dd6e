"""The HTML report opens in a real browser (headless Chromium) without console errors, and
its screenshot is kept in ``artifacts/report.png``."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from driftwarden.core.settings import load_settings
from driftwarden.dashboards.report import build_report
from driftwarden.tests.seeded import seed

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CONSOLE = re.compile(r":CONSOLE[:(]")


def test_the_report_is_self_contained_and_renders_without_console_errors(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "headless Chromium is needed (apt-get install chromium; deploy/local/install.sh does it)"
    settings = load_settings(data_dir=tmp_path / "dw")
    store = seed(settings)
    try:
        text = build_report(store, settings)
    finally:
        store.close()
    fetched = re.findall(r"""<(?:script|link|img|iframe|source)\b[^>]*(?:src|href)=["']?(?:https?:)?//""", text)
    assert not fetched, f"the report must not fetch anything: {fetched}"
    assert "prompt-drift" in text and "job-1" in text and "20260101T000000-abc" in text
    assert "What is new in chat/v1/prompt/4" in text and "seed-42" in text  # the drifted window's new group
    page = tmp_path / "report.html"
    page.write_text(text, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,3200", "--virtual-time-budget=5000",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    console = [line for line in done.stderr.splitlines() if CONSOLE.search(line)]
    assert done.returncode == 0, done.stderr[-2000:]
    assert console == [], console
    assert shot.is_file() and shot.stat().st_size > 50_000, "the screenshot is blank"
