"""Where the KIS access token is kept between processes: adapters of the `TokenStore` port (market.ports).

One token per app key lives for 24 h and KIS issues at most one per minute, so every instance must
read the same token rather than issue its own. Adapters, chosen by `settings.token_store`:
`redis://` (local stack, Memorystore), `secretmanager://SECRET_ID` (production, see `secret_manager`),
`memory://` (tests, one process); `shared.backends` picks one. The token never appears in reprs, logs or exceptions.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, cast

from shared.market import redis_keys
from shared.market.ports import StoredToken

if TYPE_CHECKING:
    import redis


log = logging.getLogger(__name__)

DEFAULT_SECRET_ID = "kis-access-token"


class MemoryTokenStore:
    """One process only. Like the Redis store, never replaces a token with one that expires earlier."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token: StoredToken | None = None

    def read(self) -> StoredToken | None:
        return self._token

    def write(self, token: StoredToken) -> None:
        with self._lock:
            if self._token is None or token.expires_at >= self._token.expires_at:
                self._token = token

    def __repr__(self) -> str:
        return f"MemoryTokenStore(has_token={self._token is not None})"


class RedisTokenStore:
    """The token in one Redis hash `{prefix}:kis:token` (record JSON + expires_at for the guard)."""

    def __init__(self, client: redis.Redis, prefix: str, *, name: str = "kis:token") -> None:
        self._redis = client
        self.key = redis_keys.token_record(prefix, name)
        # A slow refresher must not overwrite a newer token written meanwhile by another instance.
        self._write = client.register_script(redis_keys.lua_source("token_write"))

    def read(self) -> StoredToken | None:
        raw = cast("bytes | None", self._redis.hget(self.key, "record"))
        if raw is None:
            return None
        try:
            return StoredToken.from_json(raw)
        except ValueError:
            log.warning("token store %s holds an unreadable record; treating as no token", self.key)
            return None

    def write(self, token: StoredToken) -> None:
        if not self._write(keys=[self.key], args=[token.to_json(), repr(token.expires_at)]):
            log.info("token store %s already holds a token that expires later; kept it", self.key)

    def __repr__(self) -> str:
        return f"RedisTokenStore(key={self.key!r})"
