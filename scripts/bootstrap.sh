#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/dev.sh: a virtualenv with the project installed,
# and a Redis server answering on REDIS_URL (installed with apt and started when nothing answers).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

venv=${KISGW_VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e ".[dev]"
  touch "$stamp"
fi

# Bytecode of the project's own modules, as the deployed bundle carries it (scripts/build_bundle.py). Where
# PYTHONDONTWRITEBYTECODE is set nothing writes it, and every function the local stack starts would compile
# every module it imports again. Up-to-date files are skipped.
"$venv/bin/python" -m compileall -q functions shared >/dev/null

# checkov (Terraform policy checks, tests only) gets its own virtualenv: it depends on a fork of the hcl2
# parser that installs under the same module name as python-hcl2.
if [ "${KISGW_WITH_CHECKOV:-0}" = 1 ] && [ ! -x "$root/.tools/checkov/bin/checkov" ]; then
  python3 -m venv "$root/.tools/checkov"
  "$root/.tools/checkov/bin/pip" install -q "checkov>=3.2,<4" 2>/dev/null || echo "checkov could not be installed; its test will be skipped" >&2
fi

# The Google provider's schema for the Terraform schema test (tests only): its prebuilt CDKTF bindings, one
# generated module per resource type. Only the wheel is downloaded; the test reads the modules it needs out of
# it and never installs or imports it. Major 16 of the bindings is provider 6.x, the major terraform/versions.tf
# pins. Without it that test is skipped with the reason.
cdktf_google_version=16.12.1
if [ "${KISGW_WITH_CHECKOV:-0}" = 1 ] \
    && [ ! -f "$root/.tools/cdktf-google/cdktf_cdktf_provider_google-$cdktf_google_version-py3-none-any.whl" ]; then
  rm -rf "$root/.tools/cdktf-google"
  "$venv/bin/pip" download -q --no-deps --only-binary=:all: -d "$root/.tools/cdktf-google" \
      "cdktf-cdktf-provider-google==$cdktf_google_version" >/dev/null 2>&1 \
    || echo "the Google provider's CDKTF bindings could not be downloaded; the Terraform schema test will be skipped" >&2
fi

# KIS client libraries from PyPI (tests only: they run their price call against the simulator), in their own
# virtualenv so they never mix with the gateway's dependencies. python-kis imports typing_extensions without
# declaring it. Each installs on its own; a test whose library is missing is skipped with the reason.
if [ "${KISGW_WITH_KIS_CLIENTS:-0}" = 1 ]; then
  tools="$root/.tools/kis-clients"
  [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
  "$tools/bin/python" -c "import pykis" 2>/dev/null \
    || "$tools/bin/pip" install -q "python-kis>=2.1,<3" typing_extensions 2>/dev/null \
    || echo "python-kis could not be installed; its test will be skipped" >&2
  "$tools/bin/python" -c "import kis_agent" 2>/dev/null \
    || "$tools/bin/pip" install -q "kis-agent>=1.6,<2" 2>/dev/null \
    || echo "kis-agent could not be installed; its test will be skipped" >&2
fi

# Headless Chromium for the dashboard test (tests only); without it that test is skipped with the reason.
if [ "${KISGW_WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (apt) for the dashboard test..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "chromium could not be installed; the dashboard browser test will be skipped" >&2
fi

# wrk, the load generator `kisgw bench` prefers (it falls back to an asyncio client in a process of its own).
if [ "${KISGW_WITH_WRK:-0}" = 1 ] && ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (apt) for the benchmark..." >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk; } >/dev/null 2>&1 \
    || echo "wrk could not be installed; the benchmark will drive load from its asyncio client" >&2
fi

redis_port=${KISGW_REDIS_PORT:-6379}
if ! (exec 3<>/dev/tcp/127.0.0.1/"$redis_port") 2>/dev/null; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server (apt)..." >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  fi
  echo "starting redis-server on 127.0.0.1:$redis_port" >&2
  redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
    --logfile "${TMPDIR:-/tmp}/kisgw-redis-$redis_port.log" >/dev/null
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/"$redis_port") 2>/dev/null && break
    sleep 0.1
  done
fi
export PATH="$venv/bin:$PATH"
