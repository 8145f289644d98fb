"""API key stores (memory, Redis, Firestore emulator) and the `kisgw keys` command."""

from __future__ import annotations

import io

import pytest

from shared.backends import api_keys_from_settings
from shared.config import load_settings
from shared.keys_cli import run
from shared.orders.api_keys import (
    ApiKeys,
    MemoryApiKeyStore,
    RedisApiKeyStore,
    UnknownScopeError,
)


@pytest.fixture(params=["memory", "redis", "firestore"])
def keys(request):
    if request.param == "memory":
        return ApiKeys(MemoryApiKeyStore())
    if request.param == "redis":
        return ApiKeys(RedisApiKeyStore(request.getfixturevalue("redis_client"),
                                        prefix=request.getfixturevalue("redis_prefix")), pepper=b"pepper")
    from shared.orders.firestore_store import FirestoreApiKeyStore

    return ApiKeys(FirestoreApiKeyStore(request.getfixturevalue("firestore_client")))


def test_create_verify_list_revoke(keys):
    key, record = keys.create("market:read,orders:write", name="bot")
    assert key.startswith(f"kgw_{record.key_id}_")
    found = keys.verify(key)
    assert found is not None and found.scopes == ("market:read", "orders:write") and found.name == "bot"
    assert [r.key_id for r in keys.list()] == [record.key_id]
    assert keys.revoke(record.key_id)
    assert keys.verify(key) is None
    assert not keys.list()[0].active
    assert not keys.revoke("000000000000")


def test_wrong_secret_and_malformed_keys_fail(keys):
    key, _ = keys.create("market:read")
    assert keys.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.verify("kgw_zz_abc") is None
    assert keys.verify("") is None


def test_unknown_scope_is_refused():
    with pytest.raises(UnknownScopeError):
        ApiKeys(MemoryApiKeyStore()).create("orders:write,everything")


def test_only_a_digest_is_stored(redis_client, redis_prefix):
    keys = ApiKeys(RedisApiKeyStore(redis_client, prefix=redis_prefix), pepper=b"pepper")
    key, record = keys.create("market:read")
    secret_part = key.split("_", 2)[2]
    stored = redis_client.hgetall(f"{redis_prefix}:apikey:{record.key_id}")
    assert secret_part.encode() not in b"".join(stored.values())
    assert "kgw_" not in repr(record) and record.digest not in repr(record)
    # a different pepper cannot verify the key: the digest is keyed
    assert ApiKeys(RedisApiKeyStore(redis_client, prefix=redis_prefix), pepper=b"other").verify(key) is None


def test_keys_cli_create_list_revoke(redis_client, redis_prefix):
    settings = load_settings({}, redis_prefix=redis_prefix, api_key_pepper="test-pepper")
    out, err = io.StringIO(), io.StringIO()
    assert run(["create", "--scopes", "market:read,orders:write", "--name", "trading bot"], settings=settings,
               redis_client=redis_client, out=out, err=err) == 0
    key = out.getvalue().strip()
    keys = api_keys_from_settings(settings, redis_client=redis_client)
    record = keys.verify(key)
    assert record is not None and record.name == "trading bot"

    out = io.StringIO()
    assert run(["list"], settings=settings, redis_client=redis_client, out=out, err=err) == 0
    assert record.key_id in out.getvalue() and key not in out.getvalue() and "active" in out.getvalue()

    assert run(["revoke", record.key_id], settings=settings, redis_client=redis_client, out=io.StringIO(),
               err=err) == 0
    assert keys.verify(key) is None
    assert run(["revoke", "nosuchkey000"], settings=settings, redis_client=redis_client, out=io.StringIO(),
               err=io.StringIO()) == 1


def test_keys_cli_refuses_bad_scopes_and_memory_store(redis_client, redis_prefix):
    err = io.StringIO()
    settings = load_settings({}, redis_prefix=redis_prefix, api_key_pepper="test-pepper")
    assert run(["create", "--scopes", "root"], settings=settings, redis_client=redis_client,
               out=io.StringIO(), err=err) == 2
    assert "unknown scope" in err.getvalue()
    memory = load_settings({}, idempotency_store="memory://")
    assert run(["list"], settings=memory, out=io.StringIO(), err=io.StringIO()) == 2


def test_pepper_from_settings_is_part_of_the_digest():
    from shared.orders.api_keys import MemoryApiKeyStore

    store = MemoryApiKeyStore()
    peppered = api_keys_from_settings(load_settings({"IDEMPOTENCY_STORE": "memory://",
                                                     "GATEWAY_API_KEY_PEPPER": "pepper-one"}))
    peppered.store = store  # one store seen with two peppers
    key, _ = peppered.create("market:read")
    assert peppered.verify(key) is not None
    other = api_keys_from_settings(load_settings({"IDEMPOTENCY_STORE": "memory://",
                                                  "GATEWAY_API_KEY_PEPPER": "pepper-two"}))
    other.store = store
    same = api_keys_from_settings(load_settings({"IDEMPOTENCY_STORE": "memory://",
                                                 "GATEWAY_API_KEY_PEPPER": "pepper-one"}))
    same.store = store
    assert same.verify(key) is not None
    assert other.verify(key) is None
