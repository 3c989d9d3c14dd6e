"""`driftwarden purge` against the running stack: one user's events and what derives from them go,
everything else stays; a dry run erases nothing; bad input is refused before anything is asked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from driftwarden.tests.cases import encode, valid_event
from driftwarden.tests.realstack import all_scored, producer, wait_for

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driftwarden", *args], capture_output=True, text=True, timeout=300)


def test_purging_a_user_erases_their_events_and_derived_rows_and_keeps_the_rest(stack, stack_settings):
    settings = stack_settings
    with producer(stack.bootstrap) as p:
        for i in range(12):
            user = "gone-user" if i % 3 == 0 else "kept-user"
            p.send(settings.topic_inference, encode(valid_event(f"purge-{i}", app="purge-app", user_id=user)))
        for i in range(4):
            p.send(settings.topic_inference, encode(valid_event(f"other-{i}", app="other-app", user_id="gone-user")))
        p.flush()
    before = wait_for(settings, all_scored(settings, 16), stack=stack)
    dry = cli("purge", "--app", "purge-app", "--user-id", "gone-user", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would erase (app 'purge-app', user 'gone-user')" in dry.stdout
    assert "inference_events   4 rows" in dry.stdout and "detections         20 rows" in dry.stdout
    assert json.loads(cli("stats", "--json").stdout)["events"] == before["events"]  # nothing erased yet
    done = cli("purge", "--app", "purge-app", "--user-id", "gone-user", "--yes")
    assert done.returncode == 0, done.stderr
    assert "erased (app 'purge-app', user 'gone-user')" in done.stdout and "inference_events   4 rows" in done.stdout
    after = json.loads(cli("stats", "--json").stdout)
    assert after["events"] == before["events"] - 4
    assert after["detections"] == before["detections"] - 20
    again = cli("purge", "--app", "purge-app", "--user-id", "gone-user", "--yes")
    assert "nothing to erase" in again.stdout  # the other app's events of the same user stay
    assert "inference_events   4 rows" in cli("purge", "--app", "other-app", "--dry-run").stdout


def test_a_bad_time_is_refused_with_what_to_write():
    out = cli("purge", "--app", "x", "--before", "yesterday", "--dry-run")
    assert out.returncode == 2 and "ISO 8601" in out.stderr


def test_hostile_purge_requests_are_refused_and_the_sink_goes_on(stack, stack_settings):
    import urllib.error
    import urllib.request

    from driftwarden.core.storage.client import read_owner

    port = read_owner(stack_settings)["port"]

    def post(body: bytes, headers: dict) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/purge/", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    as_json = {"Content-Type": "application/json"}
    assert post(b'{"app": "x", "dry_run": false}', {"Content-Type": "text/plain"}) == 415  # a no-cors web page
    assert post(b'{"app": "x", "dry_run": false}', {**as_json, "Origin": "http://evil.example"}) == 403
    for body in (b"[1, 2]", b"{not json", b'{"app": ""}', b'{"app": 7}', b'{"app": "x", "user_id": ""}',
                 json.dumps({"app": "x" * 5000}).encode(), b'{"app": "x", "before": "soon"}', b"\xff\xfe"):
        assert post(body, as_json) == 400, body
    assert json.loads(cli("stats", "--json").stdout)["events"] >= 0  # the sink still answers
