#!/usr/bin/env bash
# The run command: installs what it needs, then starts the whole gateway locally on loopback.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec kisgw dev --port "${PORT:-8080}" "$@"
