"""TokenStore: one behaviour suite for memory, Redis and Secret Manager; the token never shows itself."""

from __future__ import annotations

import logging
import threading

import pytest

from shared.backends import token_store_from_settings
from shared.cloud.secret_manager import SecretManagerTokenStore, insecure_client
from shared.cloud.secret_manager_server import LocalSecretManager
from shared.cloud.token_store import MemoryTokenStore, RedisTokenStore, StoredToken
from shared.config import load_settings

SECRET = "eyJhbGciOiJIUzUxMiJ9.very-secret-access-token"


def token(n: int, *, expires_at: float | None = None) -> StoredToken:
    return StoredToken(f"{SECRET}-{n}", expires_at=expires_at or 1_800_086_400.0 + n, issued_at=1_800_000_000.0 + n)


@pytest.fixture
def secret_manager():
    manager = LocalSecretManager()
    manager.start()
    yield manager
    manager.stop()


@pytest.fixture(params=["memory", "redis", "secretmanager"])
def make_store(request):
    """A factory of stores that share one token, as separate instances would."""
    if request.param == "memory":
        shared = MemoryTokenStore()
        return lambda: shared
    if request.param == "redis":
        client = request.getfixturevalue("redis_client")
        prefix = request.getfixturevalue("redis_prefix")
        return lambda: RedisTokenStore(client, prefix)
    address = request.getfixturevalue("secret_manager").address
    return lambda: SecretManagerTokenStore(insecure_client(address), "kisgw-test", "kis-access-token")


def test_empty_store_reads_none(make_store):
    assert make_store().read() is None


def test_written_token_is_read_by_another_instance(make_store):
    make_store().write(token(1))
    assert make_store().read() == token(1)
    assert make_store().read().access_token == f"{SECRET}-1"


def test_newer_token_replaces_the_old(make_store):
    writer, reader = make_store(), make_store()
    writer.write(token(1))
    writer.write(token(2))
    assert reader.read() == token(2)
    reader.write(token(3))
    assert writer.read() == token(3)


def test_concurrent_writers_leave_one_readable_token(make_store):
    tokens = [token(i) for i in range(6)]
    threads = [threading.Thread(target=lambda t=t: make_store().write(t)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert make_store().read() in tokens


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_token_expiring_earlier_does_not_replace_a_later_one(kind, request):
    if kind == "memory":
        store = MemoryTokenStore()
    else:
        store = RedisTokenStore(request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix"))
    store.write(token(2))
    store.write(token(1))  # a slow refresher finishing late
    assert store.read() == token(2)
    same_expiry = StoredToken("reissued-same", expires_at=token(2).expires_at, issued_at=1_800_000_500.0)
    store.write(same_expiry)
    assert store.read() == same_expiry


def test_stored_token_hides_the_token():
    t = token(1)
    for text in (repr(t), str(t), f"{t}", repr([t]), repr(MemoryTokenStore())):
        assert SECRET not in text
    assert "***" in repr(t)
    assert StoredToken.from_json(t.to_json()) == t
    with pytest.raises(ValueError) as info:
        StoredToken.from_json(f'{{"access_token": "{SECRET}"}}')
    assert SECRET not in str(info.value)


def test_usable_and_expires_in():
    t = StoredToken("x", expires_at=1000.0, issued_at=0.0)
    assert t.expires_in(400.0) == 600.0
    assert t.usable(400.0, margin_s=300)
    assert not t.usable(800.0, margin_s=300)
    assert not StoredToken("", expires_at=1000.0, issued_at=0.0).usable(0.0)


def test_redis_garbage_reads_as_none_without_leaking(redis_client, redis_prefix, caplog):
    store = RedisTokenStore(redis_client, redis_prefix)
    redis_client.hset(store.key, "record", f"garbage {SECRET}")
    with caplog.at_level(logging.DEBUG):
        assert store.read() is None
    assert SECRET not in caplog.text
    assert store.key == f"{redis_prefix}:kis:token"


def test_token_store_from_settings(redis_client, redis_prefix):
    assert isinstance(token_store_from_settings(load_settings({}, token_store="memory://")), MemoryTokenStore)
    store = token_store_from_settings(load_settings({}, token_store="redis://", redis_prefix=redis_prefix),
                                      redis=redis_client)
    assert isinstance(store, RedisTokenStore)
    store.write(token(1))
    assert RedisTokenStore(redis_client, redis_prefix).read() == token(1)
    from shared.config import Settings

    with pytest.raises(ValueError, match="TOKEN_STORE"):
        token_store_from_settings(Settings(token_store="vault://x"))
