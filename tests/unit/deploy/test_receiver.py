"""The demo's local alert receiver (a real HTTP server on the loopback)."""

from __future__ import annotations

import json
import urllib.request

from driftwarden.deploy.local import receiver as receiver_module
from driftwarden.deploy.local.receiver import AlertReceiver


def test_a_port_the_stack_will_bind_is_never_taken_by_the_receiver(tmp_path, monkeypatch):
    handed_out = iter([41001, 41002])
    closed: list[int] = []

    class Server:
        """The system's port choice, made predictable: it hands out a port the stack is configured for first."""

        def __init__(self, address, handler):
            self.server_address = (address[0], address[1] or next(handed_out))

        def server_close(self):
            closed.append(self.server_address[1])

        def serve_forever(self):  # never started here
            raise AssertionError("not started in this test")

    monkeypatch.setattr(receiver_module, "ThreadingHTTPServer", Server)
    got = AlertReceiver(tmp_path / "alerts.jsonl", avoid={41001, 6066})
    assert got.url == "http://127.0.0.1:41002" and closed == [41001]


def test_an_alert_posted_to_the_receiver_is_kept_and_logged(tmp_path):
    seen: list[dict] = []
    with AlertReceiver(tmp_path / "alerts.jsonl", seen.append) as receiver:
        body = json.dumps([{"labels": {"alertname": "prompt-drift"}, "annotations": {"summary": "s"}}]).encode()
        request = urllib.request.Request(receiver.url + "/api/v2/alerts", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    assert [a["labels"]["alertname"] for a in seen] == ["prompt-drift"]
    assert "prompt-drift" in (tmp_path / "alerts.jsonl").read_text()


def test_an_alert_sent_again_is_logged_each_time_but_heard_once_per_state(tmp_path):
    seen: list[dict] = []
    firing = {"labels": {"alertname": "prompt-drift", "app": "a"}, "startsAt": "2026-01-01T00:00:00Z"}
    resolved = {**firing, "endsAt": "2026-01-01T00:05:00Z"}
    other = {**firing, "labels": {"alertname": "prompt-drift", "app": "b"}}

    def post(url: str, alerts: list) -> None:
        request = urllib.request.Request(url + "/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    with AlertReceiver(tmp_path / "alerts.jsonl", seen.append) as receiver:
        for alerts in ([firing], [firing, other], [firing], [resolved], [resolved, "not an alert"]):
            post(receiver.url, alerts)
    assert seen == [firing, other, resolved, "not an alert"]
    assert len(receiver.received) == 7 and len(receiver.distinct) == 4
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 7
