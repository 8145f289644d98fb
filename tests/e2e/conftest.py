"""One running local stack in the production shape (one functions-framework process per deployed function,
the front, the simulator, the local issuer, Cloud Tasks, Secret Manager, scheduler and, where the Cloud SDK is
installed, the Firestore emulator), started once per session for the e2e tests."""

import uuid

import pytest

from shared.localstack import free_port


@pytest.fixture(scope="session")
def stack(redis_url):
    from shared.localstack import LocalStack

    prefix = f"test:e2e:{uuid.uuid4().hex[:8]}"
    s = LocalStack(port=free_port(), quiet=True, threads=64, env={
        "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "MARKET_HOURS_AWARE": "false",
        "BREAKER_RESET_TIMEOUT_S": "2", "BREAKER_FAIL_MAX": "5", "RETRY_ATTEMPTS": "2", "KIS_HTTP_TIMEOUT_S": "2",
        "KIS_APP_KEY": "", "KIS_APP_SECRET": "", "INBOUND_RATE_PER_KEY": "100000"})
    s.start()
    yield s
    s.stop()
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
