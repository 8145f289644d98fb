#!/usr/bin/env bash
# The test command: installs what it needs (virtualenv, Redis), lints, runs the whole suite.
set -euo pipefail
export KISGW_WITH_CHECKOV=1
source "$(dirname "$0")/bootstrap.sh"
ruff check .
exec python -m pytest -q "$@"
