"""Per-key limits: each API key's own request rate and concurrency (defaults by scope), and browser keys bound
to the origins they may be used from.

A frontend key serves many browsers at once, so it gets a higher rate set at creation (`kisgw keys create
--rate 500 --concurrency 200 --origins https://app.example`); a single script keeps the scope default. The
concurrency cap counts requests in flight fleet-wide (a Redis sorted set per key; a slot left behind by a
crashed instance expires after SLOT_TTL_S).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import redis

from shared.api.errors import ApiError
from shared.market import redis_keys

if TYPE_CHECKING:
    from shared.config import Settings

SLOT_TTL_S = 60.0
SLOT_ENV = "kisgw.concurrency_slot"

def scope_defaults(settings: Settings) -> dict[str, tuple[int, int]]:
    """(requests/s, requests in flight) a key gets from each scope unless it has its own."""
    return {"market:read": (settings.inbound_rate_per_key, settings.concurrent_per_key),
            "orders:write": (10, 4), "admin": (20, 8)}


def limits_for(settings: Settings, scopes: Any, rate_per_s: int = 0, max_concurrent: int = 0) -> tuple[int, int]:
    """A key's (rate, concurrency): its own where set, else the most generous default among its scopes."""
    defaults = scope_defaults(settings)
    known = [defaults[s] for s in scopes if s in defaults] or [defaults["market:read"]]
    return (rate_per_s or max(r for r, _ in known), max_concurrent or max(c for _, c in known))


def check_origin(origins: tuple[str, ...], origin: str | None) -> None:
    """A browser key works only from its origins (the browser sets Origin; a script can fake it, see README)."""
    if origins and (origin or "").rstrip("/") not in origins:
        raise ApiError(403, "this browser key may only be used from the web origins it was created for",
                       code="origin_not_allowed", field="Origin")


class ConcurrencyGate:
    """The fleet-wide cap on a key's requests in flight. The async read path runs the same script (by SHA, in
    the pipeline of its rate check) through `key`, `args`, `taken` and `refusal`."""

    source = redis_keys.lua_source("inflight_acquire")

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._script = client.register_script(redis_keys.lua_source("inflight_acquire"))

    def key(self, caller: str) -> str:
        return redis_keys.inflight(self._prefix, caller)

    @staticmethod
    def new_member() -> str:
        return uuid.uuid4().hex

    @staticmethod
    def args(cap: int, member: str) -> list[Any]:
        return [cap, member, SLOT_TTL_S]

    @staticmethod
    def taken(reply: Any) -> bool:
        return bool(int(reply))

    @staticmethod
    def refusal(cap: int) -> ApiError:
        return ApiError(429, f"more than {cap} requests in flight with this credential; retry when one has "
                             f"been answered", code="too_many_in_flight", headers={"Retry-After": "1"})

    def enter(self, caller: str, cap: int) -> str:
        """Take a slot for one request; raises 429 when the caller has `cap` requests in flight."""
        member = self.new_member()
        if not self.taken(self._script(keys=[self.key(caller)], args=self.args(cap, member))):
            raise self.refusal(cap)
        return member

    def leave(self, caller: str, member: str) -> None:
        self._redis.zrem(self.key(caller), member)
