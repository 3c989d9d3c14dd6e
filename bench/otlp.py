"""OTLP receiver benchmark: spans/s one receiver process accepts and hands to the broker.

Starts the local broker and one ``driftwarden otlp`` process on free ports, builds export requests
of ``--batch`` (512, the OTel SDK's batch) OTel GenAI chat spans whose prompts and responses are
real (HaluEval's general queries and ChatGPT answers), and sends them as protobuf from
``--clients`` threads, each on one kept-alive connection. Prints:

- spans/s accepted over HTTP (first request sent to last answered), and spans/s handed to the
  broker and acknowledged (until the receiver's producer reports every event sent);
- p50 and p99 milliseconds of one export request;
- the ratio of delivered spans/s to one score worker's events/s (``--worker-events-per-s``, the
  README's measured 24.6 on 2 cores with the default detectors): the goal is 20 or more, so the
  receiver is never the bottleneck in front of a worker.

The clients share the machine's two cores with the receiver and the broker, as they would not in
production. Last line: ``key=value`` pairs. Run: ``.venv/bin/python bench/otlp.py [--requests N]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from driftwarden.core.settings import load_settings
from driftwarden.deploy.local.broker import LocalBroker, free_port
from driftwarden.pkg_data import rows
from driftwarden.streams.topics import ensure_topics
from driftwarden.tests.otlp_cases import genai_latest, span, traces_request


def bodies(n_requests: int, batch: int) -> list[bytes]:
    data = [r for r in rows("halueval_general") if r.get("user_query") or r.get("prompt")]
    out, k = [], 0
    for _ in range(n_requests):
        spans = []
        for _ in range(batch):
            r = data[k % len(data)]
            k += 1
            spans.append(span(genai_latest(prompt=str(r.get("user_query") or r.get("prompt")),
                                           response=str(r.get("chatgpt_response") or r.get("response") or "ok"))))
        out.append(traces_request(spans).SerializeToString())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--worker-events-per-s", type=float, default=24.6)
    args = parser.parse_args()
    payloads = bodies(args.requests, args.batch)
    total = args.requests * args.batch
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalBroker(free_port(), log_file=Path(tmp) / "broker.log").start()
        port = free_port()
        receiver = None
        try:
            settings = load_settings(data_dir=Path(tmp), kafka_bootstrap=broker.bootstrap)
            ensure_topics(settings)
            receiver = subprocess.Popen(
                [sys.executable, "-m", "driftwarden", "otlp", "--port", str(port), "--bootstrap", broker.bootstrap],
                stdout=(Path(tmp) / "otlp.log").open("ab"), stderr=subprocess.STDOUT,
                env={**os.environ, "DRIFTWARDEN_DATA_DIR": tmp, "DRIFTWARDEN_LOG_LEVEL": "WARNING"})
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            latencies: list[float] = []
            statuses: list[int] = []
            lock = threading.Lock()

            def client(share: list[bytes]) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                for body in share:
                    started = time.perf_counter()
                    while True:
                        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                        response = conn.getresponse()
                        response.read()
                        if response.status not in (429, 503):
                            break
                        time.sleep(float(response.getheader("Retry-After") or 1))
                    with lock:
                        latencies.append((time.perf_counter() - started) * 1000)
                        statuses.append(response.status)
                conn.close()

            threads = [threading.Thread(target=client, args=(payloads[i::args.clients],)) for i in range(args.clients)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted_s = time.perf_counter() - started
            sent = 0
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                stats = json.loads(urllib.request.urlopen(url + "/stats", timeout=10).read())
                sent = stats["publisher"]["sent"]
                if sent >= total:
                    break
                time.sleep(0.05)
            delivered_s = time.perf_counter() - started
        finally:
            if receiver is not None:
                receiver.terminate()
                receiver.wait(60)
            broker.stop()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    delivered = sent / delivered_s
    print(f"{total} spans in {args.requests} requests of {args.batch}, {args.clients} client(s): "
          f"accepted {total / accepted_s:,.0f} spans/s, delivered to the broker {delivered:,.0f} spans/s; "
          f"request p50 {statistics.median(ordered):.0f} ms, p99 {p99:.0f} ms; "
          f"{delivered / args.worker_events_per_s:.0f}x one score worker ({args.worker_events_per_s} events/s)")
    print(f"spans={total} accepted_spans_per_s={total / accepted_s:.0f} delivered_spans_per_s={delivered:.0f} "
          f"request_p50_ms={statistics.median(ordered):.1f} request_p99_ms={p99:.1f} "
          f"worker_ratio={delivered / args.worker_events_per_s:.1f} non_200={sum(s != 200 for s in statuses)}")


if __name__ == "__main__":
    main()
