#!/usr/bin/env bash
# The test command: installs what it needs (virtualenv, Redis, checkov, Chromium, the KIS client libraries
# python-kis and kis-agent in their own virtualenv, wrk for `kisgw bench`), lints (ruff, the import contracts
# of pyproject.toml), type-checks functions/ and shared/ (mypy), runs the whole suite.
set -euo pipefail
export KISGW_WITH_CHECKOV=1 KISGW_WITH_BROWSER=1 KISGW_WITH_KIS_CLIENTS=1 KISGW_WITH_WRK=1
source "$(dirname "$0")/bootstrap.sh"
ruff check .
lint-imports
mypy
exec python -m pytest -q "$@"
