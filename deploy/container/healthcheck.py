"""The image's HEALTHCHECK: healthy when this container's driftwarden process answers
``/healthz`` on its own port. The role and any port flag come from the process's command line
(PID 1: ``driftwarden sink``, ``driftwarden worker [--web-port N]``, ``driftwarden otlp
[--port N]``), the default ports from the same settings the process reads. Kubernetes uses the
chart's probes instead; this serves podman and docker."""

import sys
import urllib.request
from pathlib import Path

from driftwarden.core.settings import load_settings


def port_of(args: list[str]) -> int:
    """The web port of the driftwarden process started with ``args`` (0: none, or a port flag
    that is not a number)."""
    role = next((a for a in args if a in ("sink", "worker", "otlp")), "")
    flag = {"worker": "--web-port", "otlp": "--port"}.get(role)
    if flag in args[:-1]:
        value = args[args.index(flag) + 1]
        return int(value) if value.isdigit() else 0
    if not role:
        return 0
    settings = load_settings()
    return {"sink": settings.sink_web_port, "worker": settings.worker_web_port, "otlp": settings.otlp.port}[role]


def main() -> int:
    args = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    port = port_of(args)
    if not port:
        print(f"no web port for {' '.join(args)!r}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"/healthz on {port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
