"""A real local HTTP server that records what it receives (stands in for Alertmanager,
PagerDuty and Slack, which cannot run here) and answers with scripted status codes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: dict[str, list[int]] = {}
        """Per path, status codes to answer in turn (then 200)."""
        self.replies: dict[tuple[str, str], list[tuple[int, object]]] = {}
        """Per (method, path), (status, JSON body) to answer in turn (then 200 and ``{}``)."""
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    codes = outer.script.get(self.path, [])
                    replies = outer.replies.get((method, self.path), [])
                    if replies:
                        code, payload = replies.pop(0)
                    else:
                        code = codes.pop(0) if codes else 200
                        payload = {"status": "ok"} if code < 300 else {"message": "scripted failure"}
                    outer.requests.append({"method": method, "path": self.path, "status": code,
                                           "headers": dict(self.headers), "json": json.loads(body) if body else None})
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - http.server's naming
                self._answer("POST")

            def do_GET(self):  # noqa: N802
                self._answer("GET")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path and r["status"] < 300]

    def __enter__(self) -> RecordingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
