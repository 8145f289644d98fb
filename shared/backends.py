"""Backends chosen by URI: a setting's scheme picks the adapter of the breaker, the idempotency records
and the API keys.

Ports live beside the services (`market.breaker_storage`, `market.ports`, `orders.idempotency`,
`orders.api_keys`); their adapters live in `shared/cloud` and `shared/orders/*_store`. A port never
imports its adapters: the choice is made here, from settings, and the composition root (`gateway`)
or an entry point hands the result in. An unknown scheme stops with a message naming the setting.
(The token store and the drain trigger choose among the adapters of their own modules:
`cloud.token_store.token_store_from_settings`, `cloud.tasks.trigger_from_settings`.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings, SettingsError
from shared.market import redis_keys
from shared.market.breaker import SharedBreaker, StateListener
from shared.market.breaker_storage import BreakerStorage, MemoryBreakerStorage, RedisBreakerStorage
from shared.orders.api_keys import ApiKeys, ApiKeyStore, MemoryApiKeyStore, RedisApiKeyStore
from shared.orders.idempotency import (
    DEFAULT_COLLECTION,
    IdempotencyStore,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
)

log = logging.getLogger(__name__)


def firestore_client_for(project: str) -> Any:
    """The real client; FIRESTORE_EMULATOR_HOST points it at the emulator."""
    from google.cloud import firestore

    return firestore.Client(project=project or None)


def breaker_from_settings(
    settings: Settings,
    redis: redis.Redis | None = None,
    firestore_client: Any = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    name: str = "kis",
    listeners: Iterable[StateListener] = (),
) -> SharedBreaker:
    """Build the breaker whose storage `settings.breaker_store` names: redis://, firestore://[collection],
    memory://. A bare `redis://` uses settings.redis_url; `redis` / `firestore_client` are injected clients."""
    uri = settings.breaker_store
    scheme, _, rest = uri.partition("://")
    storage: BreakerStorage
    if scheme == "memory":
        storage = MemoryBreakerStorage(name)
    elif scheme == "redis":
        storage = RedisBreakerStorage(_redis_client(redis, uri, rest, settings), settings.redis_prefix, name)
    elif scheme == "firestore":
        from shared.cloud.firestore_breaker import FirestoreBreakerStorage

        counter_redis = redis  # an injected Redis makes the failure run fleet-wide rather than per instance
        storage = FirestoreBreakerStorage(
            firestore_client or firestore_client_for(settings.gcp_project),
            collection=rest.strip("/") or "breakers", name=name, clock=clock,
            redis=counter_redis, redis_prefix=settings.redis_prefix)
    else:
        raise ValueError(f"BREAKER_STORE={uri!r}: use redis://, firestore://[collection] or memory://")
    return SharedBreaker(storage, fail_max=settings.breaker_fail_max, reset_timeout_s=settings.breaker_reset_timeout_s,
                         name=name, clock=clock, listeners=listeners)


def _redis_client(client: redis.Redis | None, uri: str, rest: str, settings: Settings) -> redis.Redis:
    if client is not None:
        return client
    return redis.Redis.from_url(uri if rest.strip("/") else settings.redis_url.get())


def idempotency_store_from_settings(settings: Settings, *, redis_client: redis.Redis | None = None,
                                    firestore_client: Any = None, clock: Clock = SYSTEM_CLOCK) -> IdempotencyStore:
    """The backend named by IDEMPOTENCY_STORE (redis://, firestore://[collection], memory://)."""
    uri = settings.idempotency_store
    scheme, _, rest = uri.partition("://")
    if scheme == "memory":
        return MemoryIdempotencyStore(clock)
    if scheme == "redis":
        client = redis_client or redis.Redis.from_url(settings.redis_url.get())
        return RedisIdempotencyStore(client, prefix=settings.redis_prefix, clock=clock)
    if scheme == "firestore":
        from shared.orders.firestore_store import FirestoreIdempotencyStore

        fs_client = firestore_client or firestore_client_for(settings.gcp_project)
        return FirestoreIdempotencyStore(fs_client, collection=rest.strip("/") or DEFAULT_COLLECTION, clock=clock)
    raise ValueError(f"IDEMPOTENCY_STORE={uri!r} has an unknown scheme")


def api_keys_from_settings(settings: Settings, *, redis_client: redis.Redis | None = None,
                           firestore_client: Any = None, clock: Clock = SYSTEM_CLOCK) -> ApiKeys:
    """Keys stored where IDEMPOTENCY_STORE points (the gateway's one place for records of its callers)."""
    scheme = settings.idempotency_store.partition("://")[0]
    store: ApiKeyStore
    if scheme == "memory":
        store = MemoryApiKeyStore()
    elif scheme == "firestore":
        from shared.orders.firestore_store import FirestoreApiKeyStore

        store = FirestoreApiKeyStore(firestore_client or firestore_client_for(settings.gcp_project))
    else:
        store = RedisApiKeyStore(redis_client or redis.Redis.from_url(settings.redis_url.get()),
                                 prefix=settings.redis_prefix)
    # The pepper (GATEWAY_API_KEY_PEPPER, from Secret Manager in the cloud) keeps a copied key store useless on its
    # own. Locally it may be empty (HMAC with an empty key); in the cloud an empty pepper is a deployment mistake.
    if settings.gateway_mode == "cloud" and not settings.api_key_pepper:
        raise SettingsError("GATEWAY_API_KEY_PEPPER is empty: with GATEWAY_MODE=cloud API key digests need a pepper "
                            "kept apart from the key store (Secret Manager)")
    return ApiKeys(store, pepper=settings.api_key_pepper.get().encode(), clock=clock,
                   on_revoke=_revocation_publisher(settings, redis_client))


def _revocation_publisher(settings: Settings, client: redis.Redis | None) -> Callable[[str], None]:
    """Announces a revocation on Redis; instances that cache verified keys drop it within moments. Where Redis
    cannot be reached, the caches' own expiry (a few seconds) still ends the key's use."""
    channel = redis_keys.api_key_revocations(settings.redis_prefix)

    def publish(key_id: str) -> None:
        try:
            (client or redis.Redis.from_url(settings.redis_url.get(), socket_timeout=5)).publish(channel, key_id)
        except redis.RedisError as exc:
            log.warning("revocation notice not published (%s); caches expire it on their own", type(exc).__name__)

    return publish
