#!/usr/bin/env bash
# The README's main job: install, start the local stack, replay real traffic, print what was stored.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/install.sh
exec .venv/bin/driftwarden demo "$@"
