"""The image's HEALTHCHECK: healthy when the driftwarden process of this container answers
``/healthz`` on its port (the sink 6066, a worker 6067 as the chart sets it, the OTLP receiver 4318).
Kubernetes uses the chart's probes instead; this serves podman and docker."""

import sys
import urllib.request

for port in (6066, 6067, 4318):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        continue
sys.exit(1)
