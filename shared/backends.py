"""The one registry of backends chosen by URI: a setting's scheme picks the adapter of a port.

In the style of the `limits` library's storage registry (a scheme names a storage class, `storage_from_string`
builds it), except that the adapters are listed in one table (`shared.schemes`, which the settings parser
reads too) rather than registering themselves on import:
an adapter's module (and the client library it needs: gRPC, Cloud Tasks, Firestore, Secret Manager) is imported
only when its scheme is chosen, so a function that does not use it never loads it.

| setting           | port                                    | schemes                                          |
|-------------------|-----------------------------------------|--------------------------------------------------|
| TOKEN_STORE       | `market.ports.TokenStore`               | redis://, secretmanager://SECRET_ID, memory://   |
| BREAKER_STORE     | `market.breaker_storage.BreakerStorage` | redis://, firestore://[collection], memory://    |
| TASK_QUEUE        | `market.ports.DrainTrigger`             | cloudtasks://[host:port], local://, inline://    |
| TASK_QUEUE        | the token refresh requests              | cloudtasks:// (local://, inline://: none)        |
| IDEMPOTENCY_STORE | `orders.idempotency.IdempotencyStore`   | redis://, firestore://[collection], memory://    |
| IDEMPOTENCY_STORE | `orders.api_keys.ApiKeyStore`           | redis://, firestore://, memory:// (the same place) |

Ports live beside the services that use them; their adapters (`shared/cloud`, `shared/orders/firestore_store`)
import the ports, never the reverse. `check(settings)` runs at start-up (the composition root): an unknown
scheme stops it with a message naming the setting.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings, SettingsError
from shared.lazy import lazy_object
from shared.market import redis_keys
from shared.market.breaker import SharedBreaker, StateListener
from shared.market.breaker_storage import BreakerStorage
from shared.market.ports import DrainCallback, DrainTrigger, TokenStore
from shared.orders.api_keys import ApiKeys, ApiKeyStore
from shared.orders.idempotency import IdempotencyStore
from shared.schemes import PORTS

log = logging.getLogger(__name__)

NO_PEPPER = ("GATEWAY_API_KEY_PEPPER is empty: with GATEWAY_MODE=cloud API key digests need a pepper kept apart "
             "from the key store (Secret Manager)")


@dataclass(frozen=True)
class Clients:
    """Clients an adapter may be handed instead of building its own (the composition root's, or a test's)."""

    redis: redis.Redis | None = None
    firestore: Any = None
    secret_manager: Any = None
    cloud_tasks: Any = None
    clock: Clock = SYSTEM_CLOCK
    drain: DrainCallback | None = None  # what an in-process drain trigger runs
    name: str = "kis"  # the breaker's name


def scheme_of(port: str, settings: Settings) -> tuple[str, str]:
    """(scheme, rest of the URI) of the setting that chooses `port`'s adapter; SettingsError for an unknown one."""
    spec = PORTS[port]
    uri = getattr(settings, spec.field)
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in spec.adapters:
        allowed = ", ".join(f"{s}://" for s in spec.adapters)
        raise SettingsError(f"{spec.setting}={uri!r} has an unknown scheme; use one of: {allowed}")
    return scheme, rest


def check(settings: Settings) -> None:
    """Every backend setting names a known scheme (imports no adapter)."""
    for port in PORTS:
        scheme_of(port, settings)


def build(port: str, settings: Settings, clients: Clients = Clients()) -> Any:
    """The adapter `settings` chooses for `port`, its module imported now (and only now)."""
    scheme, rest = scheme_of(port, settings)
    module, _, name = PORTS[port].adapters[scheme].partition(":")
    factory: Callable[[Settings, str, Clients], Any] = getattr(importlib.import_module(module), name)
    return factory(settings, rest, clients)


# ---- typed entry points ---------------------------------------------------------------------------

def token_store_from_settings(settings: Settings, redis: redis.Redis | None = None,
                              secret_client: Any = None) -> TokenStore:
    """The store TOKEN_STORE names: redis:// (bare: REDIS_URL), secretmanager://SECRET_ID (in GCP_PROJECT;
    default id kis-access-token), memory://."""
    store: TokenStore = build("token_store", settings, Clients(redis=redis, secret_manager=secret_client))
    return store


def breaker_from_settings(
    settings: Settings,
    redis: redis.Redis | None = None,
    firestore_client: Any = None,
    *,
    clock: Clock = SYSTEM_CLOCK,
    name: str = "kis",
    listeners: Iterable[StateListener] = (),
) -> SharedBreaker:
    """The breaker whose storage BREAKER_STORE names: redis://, firestore://[collection], memory://. A bare
    `redis://` uses REDIS_URL; `redis` / `firestore_client` are injected clients."""
    storage: BreakerStorage = build("breaker", settings, Clients(redis=redis, firestore=firestore_client,
                                                                 clock=clock, name=name))
    return SharedBreaker(storage, fail_max=settings.breaker_fail_max, reset_timeout_s=settings.breaker_reset_timeout_s,
                         name=name, clock=clock, listeners=listeners)


def trigger_from_settings(settings: Settings, *, client: Any = None,
                          inline: DrainCallback | None = None) -> DrainTrigger:
    """The trigger TASK_QUEUE names: `cloudtasks://` (ADC), `cloudtasks://host:port` (a local server),
    `local://` or `inline://` (in-process: `inline` is the drain it runs)."""
    trigger: DrainTrigger = build("drain_trigger", settings, Clients(cloud_tasks=client, drain=inline))
    return trigger


def idempotency_store_from_settings(settings: Settings, *, redis_client: redis.Redis | None = None,
                                    firestore_client: Any = None, clock: Clock = SYSTEM_CLOCK) -> IdempotencyStore:
    """The backend named by IDEMPOTENCY_STORE (redis://, firestore://[collection], memory://)."""
    store: IdempotencyStore = build("idempotency", settings,
                                    Clients(redis=redis_client, firestore=firestore_client, clock=clock))
    return store


def api_keys_from_settings(settings: Settings, *, redis_client: redis.Redis | None = None,
                           firestore_client: Any = None, clock: Clock = SYSTEM_CLOCK) -> ApiKeys:
    """Keys stored where IDEMPOTENCY_STORE points (the gateway's one place for records of its callers)."""
    store: ApiKeyStore = build("api_keys", settings, Clients(redis=redis_client, firestore=firestore_client))
    # The pepper (GATEWAY_API_KEY_PEPPER, from Secret Manager in the cloud) keeps a copied key store useless on its
    # own. Locally it may be empty (HMAC with an empty key); in the cloud an empty pepper is a deployment mistake.
    if settings.gateway_mode == "cloud" and not settings.api_key_pepper:
        raise SettingsError(NO_PEPPER)
    return ApiKeys(store, pepper=settings.api_key_pepper.get().encode(), clock=clock,
                   on_revoke=_revocation_publisher(settings, redis_client))


def firestore_client_for(project: str) -> Any:
    """The real Firestore client; FIRESTORE_EMULATOR_HOST points it at the emulator."""
    from google.cloud import firestore

    return firestore.Client(project=project or None)


# ---- the adapters' factories (each imports its adapter's module when called) ----------------------

def _redis(client: redis.Redis | None, settings: Settings, uri_rest: str = "", scheme: str = "redis") -> redis.Redis:
    """The injected client, else one for the URI's own address, else for REDIS_URL (a bare `redis://`)."""
    if client is not None:
        return client
    return redis.Redis.from_url(f"{scheme}://{uri_rest}" if uri_rest.strip("/") else settings.redis_url.get())


def _firestore(clients: Clients, settings: Settings) -> Any:
    return clients.firestore if clients.firestore is not None else firestore_client_for(settings.gcp_project)


def _memory_token_store(settings: Settings, rest: str, clients: Clients) -> TokenStore:
    from shared.cloud.token_store import MemoryTokenStore

    return MemoryTokenStore()


def _redis_token_store(settings: Settings, rest: str, clients: Clients) -> TokenStore:
    from shared.cloud.token_store import RedisTokenStore

    return RedisTokenStore(_redis(clients.redis, settings, rest), settings.redis_prefix)


def _secret_manager_token_store(settings: Settings, rest: str, clients: Clients) -> TokenStore:
    from shared.cloud.secret_manager import SecretManagerTokenStore, default_client, local_secret_client
    from shared.cloud.token_store import DEFAULT_SECRET_ID

    if not settings.gcp_project:
        raise SettingsError("TOKEN_STORE=secretmanager://... needs GCP_PROJECT")
    client = clients.secret_manager
    if client is None:  # SECRET_MANAGER_ENDPOINT: the local stand-in, presenting this process's local credential
        # Built on first use (its library loads with the first token read, not at start-up).
        client = lazy_object(lambda: local_secret_client(settings.secret_manager_endpoint,
                                                         settings.local_credential.get() or None)
                             if settings.secret_manager_endpoint else default_client(), "Secret Manager client")
    return SecretManagerTokenStore(client, settings.gcp_project, rest.strip("/") or DEFAULT_SECRET_ID)


def _memory_breaker_storage(settings: Settings, rest: str, clients: Clients) -> BreakerStorage:
    from shared.market.breaker_storage import MemoryBreakerStorage

    return MemoryBreakerStorage(clients.name)


def _redis_breaker_storage(settings: Settings, rest: str, clients: Clients) -> BreakerStorage:
    from shared.market.breaker_storage import RedisBreakerStorage

    return RedisBreakerStorage(_redis(clients.redis, settings, rest), settings.redis_prefix, clients.name)


def _firestore_breaker_storage(settings: Settings, rest: str, clients: Clients) -> BreakerStorage:
    from shared.cloud.firestore_breaker import FirestoreBreakerStorage

    # An injected Redis makes the failure run fleet-wide rather than per instance.
    return FirestoreBreakerStorage(_firestore(clients, settings), collection=rest.strip("/") or "breakers",
                                   name=clients.name, clock=clients.clock, redis=clients.redis,
                                   redis_prefix=settings.redis_prefix)


def _cloud_tasks_trigger(settings: Settings, rest: str, clients: Clients) -> DrainTrigger:
    from shared.cloud.tasks import CloudTasksTrigger, LazyClient, tasks_client
    from shared.deployment import DEFAULT_QUEUE_PREFIX

    if not settings.task_target_url:
        raise SettingsError("TASK_QUEUE=cloudtasks:// needs TASK_TARGET_URL (where drains are pushed)")
    # Built on the first drain request: a read function answering from the cache never loads gRPC.
    client: Any = clients.cloud_tasks or LazyClient(
        lambda: tasks_client(settings, settings.local_credential.get() or None))
    project = settings.gcp_project or ("local" if rest else "")
    if not project:
        raise SettingsError("TASK_QUEUE=cloudtasks:// needs GCP_PROJECT")
    return CloudTasksTrigger(client, project, settings.gcp_region, DEFAULT_QUEUE_PREFIX, settings.task_target_url,
                             settings.task_oidc_service_account, settings.task_dispatch_deadline_s)


def _inline_trigger(settings: Settings, rest: str, clients: Clients) -> DrainTrigger:
    from shared.cloud.inline_trigger import InlineTrigger

    if clients.drain is None:
        raise SettingsError(f"TASK_QUEUE={settings.task_queue} runs drains in-process: pass the drain callback")
    return InlineTrigger(clients.drain, background=not settings.task_queue.startswith("inline://"))


def _cloud_tasks_refresh_requester(settings: Settings, rest: str, clients: Clients) -> Any:
    from shared.cloud.tasks import LazyClient, RefreshRequester, tasks_client

    client: Any = clients.cloud_tasks or LazyClient(
        lambda: tasks_client(settings, settings.local_credential.get() or None))
    return RefreshRequester(client,
                            settings.gcp_project or "local", settings.gcp_region, settings.token_refresh_url,
                            settings.task_oidc_service_account)


def _no_refresh_requester(settings: Settings, rest: str, clients: Clients) -> None:
    return None  # drains run in-process: so does the one token writer


def _memory_idempotency_store(settings: Settings, rest: str, clients: Clients) -> IdempotencyStore:
    from shared.orders.idempotency import MemoryIdempotencyStore

    return MemoryIdempotencyStore(clients.clock)


def _redis_idempotency_store(settings: Settings, rest: str, clients: Clients) -> IdempotencyStore:
    from shared.orders.idempotency import RedisIdempotencyStore

    return RedisIdempotencyStore(_redis(clients.redis, settings), prefix=settings.redis_prefix, clock=clients.clock)


def _firestore_idempotency_store(settings: Settings, rest: str, clients: Clients) -> IdempotencyStore:
    from shared.orders.firestore_store import FirestoreIdempotencyStore
    from shared.orders.idempotency import DEFAULT_COLLECTION

    return FirestoreIdempotencyStore(_firestore(clients, settings), collection=rest.strip("/") or DEFAULT_COLLECTION,
                                     clock=clients.clock)


def _memory_api_key_store(settings: Settings, rest: str, clients: Clients) -> ApiKeyStore:
    from shared.orders.api_keys import MemoryApiKeyStore

    return MemoryApiKeyStore()


def _redis_api_key_store(settings: Settings, rest: str, clients: Clients) -> ApiKeyStore:
    from shared.orders.api_keys import RedisApiKeyStore

    return RedisApiKeyStore(_redis(clients.redis, settings), prefix=settings.redis_prefix)


def _firestore_api_key_store(settings: Settings, rest: str, clients: Clients) -> ApiKeyStore:
    from shared.orders.firestore_store import FirestoreApiKeyStore

    return FirestoreApiKeyStore(_firestore(clients, settings))


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
