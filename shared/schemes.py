"""Which URI scheme of a backend setting names which adapter: the one table of backend choices.

Data only (module paths as text), so the settings parser (`config`, which checks a URI when settings are read)
and the registry that builds the adapters (`backends`, which imports an adapter's module only when its scheme is
chosen) read the same list. A new adapter is one row here plus its factory in `backends`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Port:
    setting: str  # the environment variable
    field: str  # its Settings attribute
    adapters: Mapping[str, str]  # scheme -> "module:factory"; factory(settings, rest of the URI, clients)


_B = "shared.backends"
PORTS: dict[str, Port] = {
    "token_store": Port("TOKEN_STORE", "token_store", {
        "redis": f"{_B}:_redis_token_store",
        "secretmanager": f"{_B}:_secret_manager_token_store",
        "memory": f"{_B}:_memory_token_store",
    }),
    "breaker": Port("BREAKER_STORE", "breaker_store", {
        "redis": f"{_B}:_redis_breaker_storage",
        "firestore": f"{_B}:_firestore_breaker_storage",
        "memory": f"{_B}:_memory_breaker_storage",
    }),
    "drain_trigger": Port("TASK_QUEUE", "task_queue", {
        "cloudtasks": f"{_B}:_cloud_tasks_trigger",
        "local": f"{_B}:_inline_trigger",
        "inline": f"{_B}:_inline_trigger",
    }),
    "token_refresh": Port("TASK_QUEUE", "task_queue", {
        "cloudtasks": f"{_B}:_cloud_tasks_refresh_requester",
        "local": f"{_B}:_no_refresh_requester",
        "inline": f"{_B}:_no_refresh_requester",
    }),
    "idempotency": Port("IDEMPOTENCY_STORE", "idempotency_store", {
        "redis": f"{_B}:_redis_idempotency_store",
        "firestore": f"{_B}:_firestore_idempotency_store",
        "memory": f"{_B}:_memory_idempotency_store",
    }),
    "api_keys": Port("IDEMPOTENCY_STORE", "idempotency_store", {
        "redis": f"{_B}:_redis_api_key_store",
        "firestore": f"{_B}:_firestore_api_key_store",
        "memory": f"{_B}:_memory_api_key_store",
    }),
}


def schemes_of(port: str) -> tuple[str, ...]:
    """The schemes the setting choosing `port` accepts: those every port read from that setting can build."""
    setting = PORTS[port].setting
    ports = [p for p in PORTS.values() if p.setting == setting]
    return tuple(s for s in PORTS[port].adapters if all(s in p.adapters for p in ports))
