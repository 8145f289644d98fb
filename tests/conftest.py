"""Shared fixtures: the real local Redis (a unique key prefix per run), free ports, the KIS simulator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from shared.localstack import free_port

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # the test command starts one; say so when run bare
        pytest.exit(f"no Redis at {REDIS_URL}: run the tests with scripts/test.sh ({exc})", returncode=2)
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix owned by this test; every key under it is deleted afterwards."""
    prefix = f"test:{RUN_ID}:{uuid.uuid4().hex[:6]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def firestore_host() -> Iterator[str]:
    """The Google Cloud SDK's Firestore emulator for this run (reused when FIRESTORE_EMULATOR_HOST is set);
    tests that need it are skipped, with the reason, on machines without the SDK."""
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        yield os.environ["FIRESTORE_EMULATOR_HOST"]
        return
    from shared.cloud.local_firestore import FirestoreEmulator

    reason = FirestoreEmulator.missing()
    if reason:
        pytest.skip(f"Firestore emulator tests need the Google Cloud SDK: {reason}")
    emulator = FirestoreEmulator()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.start()
    try:
        yield emulator.host
    finally:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        emulator.stop()


@pytest.fixture
def firestore_client(firestore_host: str):
    """A real Firestore client on the emulator, in a project of its own (nothing shared between tests)."""
    from google.cloud import firestore

    # The client reads the emulator's address from the environment: this run's emulator, whatever another
    # test (a local stack of its own) left there.
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
    client = firestore.Client(project=f"test-{uuid.uuid4().hex[:10]}")
    yield client
    client.close()


class OffsetClock:
    """Real time plus an adjustable offset: lets a test jump the simulator past its 60 s / 6 h rules."""

    def __init__(self) -> None:
        import time as _t

        self._t = _t
        self.offset = 0.0

    def time(self) -> float:
        return self._t.time() + self.offset

    def monotonic(self) -> float:
        return self._t.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._t.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def sim_clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
def sim(sim_clock):
    """A KIS simulator (real environment, default limits) on a free loopback port."""
    from shared.sim import SimConfig, SimServer

    server = SimServer(SimConfig(env="real", seed=7), port=0, clock=sim_clock).start()
    yield server
    server.stop()


@pytest.fixture
def make_gateway(redis_url, redis_prefix, sim):
    """Builds a full in-process gateway against the simulator; closes them all after the test."""
    from shared.config import load_settings
    from shared.gateway import build_gateway

    built = []

    def make(load_symbol_master: bool = True, **env: str):
        base = {
            "KIS_BASE_URL": sim.base_url, "KIS_APP_KEY": f"PStest{redis_prefix[-6:]}", "KIS_APP_SECRET": "s3cret-value",
            "KIS_ACCOUNT_NO": "50123456-01", "REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix,
            "TASK_QUEUE": "local://", "BREAKER_STORE": "redis://", "TOKEN_STORE": "redis://",
            "MARKET_HOURS_AWARE": "false", "KIS_HTTP_TIMEOUT_S": "2", "GATEWAY_COLLECT_WINDOW_MS": "50",
        }
        base.update(env)
        gw = build_gateway(load_settings(base))
        gw.limiter.start_fresh()  # a new test prefix: no call was ever made (else the first window is held back)
        built.append(gw)
        if load_symbol_master:  # as the local stack does at start: the unknown-code check is live
            from shared.market.symbol_master import refresh_from_settings

            assert refresh_from_settings(gw.symbols, gw.settings)["loaded"]
        return gw

    yield make
    for gw in built:
        gw.close()
