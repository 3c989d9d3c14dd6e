"""A local alert receiver for the demo: speaks Alertmanager's ``POST /api/v2/alerts``, keeps
what it receives in a JSONL file and says it on the console. It stands in for the on-call
side (Alertmanager, PagerDuty, Slack) on a machine where none runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


MAX_BODY = 1_000_000
"""Largest request body accepted (bytes)."""


def episode_key(alert: object) -> str:
    """What tells one alert (in one state) from another: its labels, when it started, and whether
    it has ended; a re-send of the same alert has the same key."""
    if not isinstance(alert, dict):
        return json.dumps(alert, sort_keys=True, default=str)
    return json.dumps([alert.get("labels"), alert.get("startsAt"), bool(alert.get("endsAt"))],
                      sort_keys=True, default=str)


class AlertReceiver:
    def __init__(self, log_file: Path, on_alert: Callable[[dict], None] | None = None, port: int = 0,
                 avoid: Collection[int] = ()):
        """Listens on ``port``, or (0) on a free port that is not in ``avoid``: ports the stack is
        configured to bind later, which the system may hand out while nothing listens on them yet.
        ``on_alert`` hears each alert once per state: Alertmanager's clients send a firing alert
        again every resend interval (a minute), which the log file keeps and the console need not."""
        self.log_file = log_file
        self.received: list[dict] = []
        """Every alert posted, re-sends included."""
        self.distinct: dict[str, dict] = {}
        """Each alert once per state (firing, resolved): its labels, start and whether it has ended."""
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:  # a local stand-in: it takes what driftwarden sends, no more
                    self.send_response(413)
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                try:
                    alerts = json.loads(body)
                    assert isinstance(alerts, list)
                except (ValueError, AssertionError):
                    self.send_response(400)
                    self.end_headers()
                    return
                new = []
                with lock:
                    outer.received.extend(alerts)
                    with outer.log_file.open("a", encoding="utf-8") as fh:
                        for alert in alerts:
                            fh.write(json.dumps(alert) + "\n")
                            key = episode_key(alert)
                            if key not in outer.distinct:
                                outer.distinct[key] = alert
                                new.append(alert)
                self.send_response(200)
                self.end_headers()
                for alert in new:
                    if on_alert is not None:
                        on_alert(alert)

            def log_message(self, *args):
                pass

        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        for _ in range(100):
            if port or self.server.server_address[1] not in avoid:
                break
            taken = self.server
            self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # a new port before letting the other go
            taken.server_close()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="alert-receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> AlertReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
