"""The image's HEALTHCHECK: healthy when the driftwarden process of this container answers
``/healthz`` on its port, read from the same settings the process reads (the sink's
``DRIFTWARDEN_SINK_WEB_PORT``, a worker's ``DRIFTWARDEN_WORKER_WEB_PORT``, the receiver's
``DRIFTWARDEN_OTLP__PORT``). Kubernetes uses the chart's probes instead; this serves podman and
docker."""

import sys
import urllib.request

from driftwarden.core.settings import load_settings

settings = load_settings()
for port in (settings.sink_web_port, settings.worker_web_port, settings.otlp.port):
    if not port:
        continue
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        continue
sys.exit(1)
