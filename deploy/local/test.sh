#!/usr/bin/env bash
# The README's test command: install, then run every test (unit, integration with the real
# broker and the embedded ClickHouse engine that the tests start themselves, and e2e).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/local/install.sh
exec .venv/bin/python -m pytest "$@"
