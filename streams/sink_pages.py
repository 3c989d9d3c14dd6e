"""The sink's HTTP pages, read from other processes (the CLI, the local stack, the demo, benchmarks).

While a sink owns the embedded store no other process may open it, so counts and the report come
from the sink's ``/stats/``, ``/progress/`` and ``/report/`` pages (``sink_agent.py`` serves
them); with no sink running, the store is opened here directly.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from driftwarden.core.errors import StorageError
from driftwarden.core.settings import Settings
from driftwarden.core.storage.client import open_store, read_owner


def read_stats(settings: Settings, *, require_owner: bool = False, timeout_s: float = 10.0) -> dict:
    """Counts from wherever they can be read right now: the sink's ``/stats/`` page while a sink
    owns the store, otherwise the store itself. With ``require_owner`` only the sink's page is
    asked (used to wait for the sink to be ready)."""
    owner = read_owner(settings)
    if owner.get("port"):
        return sink_page(owner["port"], "stats", timeout_s, token=settings.web_token)
    if require_owner:
        raise StorageError("read counts from the sink", RuntimeError("no sink owns the store yet"))
    store = open_store(settings)
    try:
        return store.stats(settings.drift.alpha)
    finally:
        store.close()


def read_progress(settings: Settings, *, timeout_s: float = 10.0) -> dict:
    """The running sink's counters: rows ClickHouse acknowledged since it started, per table and
    per detector (``rows_written``). No query runs, so this can be polled often; the counts
    include rows that a later merge deduplicates (use :func:`read_stats` for exact counts)."""
    port = read_owner(settings).get("port")
    if not port:
        raise StorageError("read progress from the sink", RuntimeError("no sink with a web page is running"))
    return sink_page(port, "progress", timeout_s, token=settings.web_token)


def read_report(settings: Settings, *, timeout_s: float = 300.0) -> str:
    """The HTML report: from the running sink's ``/report/`` page while it owns the embedded
    store, otherwise rendered here from the store."""
    owner = read_owner(settings)
    if owner.get("port"):
        return sink_page(owner["port"], "report", timeout_s, as_json=False, token=settings.web_token)
    from driftwarden.dashboards.report import build_report

    store = open_store(settings)
    try:
        return build_report(store, settings)
    finally:
        store.close()


def purge(settings: Settings, body: dict, *, timeout_s: float = 3600.0) -> dict:
    """Erase what ``body`` names (``{"app", "user_id"?, "before"?, "dry_run"}``): through the running
    sink's ``/purge/`` page while it owns the embedded store, otherwise on the store directly."""
    from driftwarden.retrain_trigger.retraining.erasure import erase, target_from

    target = target_from(body)  # a bad value is refused here, before anything is asked
    owner = read_owner(settings)
    if owner.get("port"):
        return sink_page(owner["port"], "purge", timeout_s, token=settings.web_token, post=body)
    store = open_store(settings)
    try:
        return erase(store, settings.datasets_dir, target, dry_run=body.get("dry_run", True) is not False).as_dict()
    finally:
        store.close()


def sink_page(port: int, page: str, timeout_s: float, *, as_json: bool = True, token=None, post: dict | None = None):
    """GET one of the sink's pages on this machine; ``token`` (a SecretStr) is sent as a bearer
    token (the pages need it when the sink listens beyond loopback)."""
    url = f"http://127.0.0.1:{port}/{page}/"
    data = json.dumps(post).encode() if post is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    if token is not None and token.get_secret_value():
        request.add_header("Authorization", f"Bearer {token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            body = resp.read()
            return json.loads(body) if as_json else body.decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise StorageError(f"read {page} from the sink at {url}", exc) from exc
