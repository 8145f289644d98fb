"""API keys of the gateway's callers: scoped, stored only as an HMAC-SHA256 digest, shown once at creation.

A key reads `kgw_<id>_<secret>`: the id (not secret) finds the record in one lookup, the digest of the
whole key (HMAC with an optional pepper kept outside the store) proves it. The secret part carries 256
random bits, so a leaked store cannot be brute-forced back into keys even without the pepper.
Stores follow the same URI choice as the idempotency records (`shared.backends`): redis://, firestore://, memory://.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.market import redis_keys

log = logging.getLogger(__name__)

SCOPES = ("market:read", "orders:write", "admin")
KEY_PREFIX = "kgw"
FIRESTORE_COLLECTION = "api_keys"


class UnknownScopeError(ValueError):
    pass


class KeyPolicyError(ValueError):
    """A key's limits or origins are not acceptable (e.g. a browser key with a write scope)."""


READ_SCOPES = frozenset({"market:read"})


def parse_origins(raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Browser origins a key is bound to: scheme://host[:port], no path; https only (http for localhost)."""
    parts = [p.strip().rstrip("/") for p in (raw.split(",") if isinstance(raw, str) else raw) if p.strip()]
    for p in parts:
        scheme, sep, rest = p.partition("://")
        host = rest.split(":", 1)[0]
        local = host in ("localhost", "127.0.0.1")
        if (not sep or scheme not in ("https", "http") or not host or "/" in rest or "@" in rest or "*" in rest
                or (scheme == "http" and not local)):
            raise KeyPolicyError(f"origin {p[:60]!r} must look like https://app.example.com[:port] "
                                 f"(http only for localhost), without a path")
    return tuple(dict.fromkeys(parts))


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    digest: str = ""  # HMAC-SHA256 hex of the whole key; never the key
    created_at: float = 0.0
    revoked_at: float | None = None
    rate_per_s: int = 0  # requests per second; 0 = the default of its scopes
    max_concurrent: int = 0  # requests in flight at once; 0 = the default of its scopes
    origins: tuple[str, ...] = ()  # a browser key: usable only from these origins (checked on Origin)

    @property
    def browser(self) -> bool:
        return bool(self.origins)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def __repr__(self) -> str:
        return f"ApiKeyRecord(key_id={self.key_id!r}, name={self.name!r}, scopes={self.scopes!r})"

    def to_fields(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, "scopes": ",".join(self.scopes), "digest": self.digest,
                "created_at": self.created_at, "revoked_at": self.revoked_at, "rate_per_s": self.rate_per_s,
                "max_concurrent": self.max_concurrent, "origins": ",".join(self.origins)}

    @classmethod
    def from_fields(cls, data: dict[str, Any]) -> ApiKeyRecord:
        revoked = data.get("revoked_at")
        return cls(key_id=str(data["key_id"]), name=str(data.get("name") or ""),
                   scopes=tuple(s for s in str(data.get("scopes") or "").split(",") if s),
                   digest=str(data.get("digest") or ""), created_at=float(data.get("created_at") or 0),
                   revoked_at=None if revoked in (None, "") else float(revoked),
                   rate_per_s=int(data.get("rate_per_s") or 0), max_concurrent=int(data.get("max_concurrent") or 0),
                   origins=tuple(o for o in str(data.get("origins") or "").split(",") if o))


class ApiKeyStore(Protocol):
    def put(self, record: ApiKeyRecord) -> None: ...
    def get(self, key_id: str) -> ApiKeyRecord | None: ...
    def all(self) -> list[ApiKeyRecord]: ...


def parse_scopes(raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    parts = [p.strip() for p in (raw.split(",") if isinstance(raw, str) else raw) if p.strip()]
    if not parts:
        raise UnknownScopeError(f"at least one scope is needed: {', '.join(SCOPES)}")
    for p in parts:
        if p not in SCOPES:
            raise UnknownScopeError(f"unknown scope {p[:30]!r}; scopes are {', '.join(SCOPES)}")
    return tuple(dict.fromkeys(parts))


def key_id_of(presented: str) -> str | None:
    """The id inside a well-formed key, else None."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    if len(parts[1]) != 12 or any(c not in "0123456789abcdef" for c in parts[1]):
        return None
    return parts[1]


class ApiKeys:
    def __init__(self, store: ApiKeyStore, *, pepper: bytes = b"", clock: Clock = SYSTEM_CLOCK,
                 on_revoke: Callable[[str], None] | None = None) -> None:
        self.store = store
        self._pepper = pepper
        self._clock = clock
        self._on_revoke = on_revoke

    def _digest(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()

    def create(self, scopes: str | list[str] | tuple[str, ...], name: str = "", *, rate_per_s: int = 0,
               max_concurrent: int = 0, origins: str | list[str] | tuple[str, ...] = ()) -> tuple[str, ApiKeyRecord]:
        """A new key: (the key itself, to show once; its stored record). With origins it is a browser key:
        read scopes only, usable only from those origins."""
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        record = _checked(ApiKeyRecord(key_id, name.strip()[:100], parse_scopes(scopes), self._digest(key),
                                       self._clock.time(), rate_per_s=rate_per_s, max_concurrent=max_concurrent,
                                       origins=parse_origins(origins)))
        self.store.put(record)
        return key, record

    def update(self, key_id: str, *, rate_per_s: int | None = None, max_concurrent: int | None = None,
               origins: str | list[str] | tuple[str, ...] | None = None) -> ApiKeyRecord | None:
        """Change a key's limits or origins (None leaves a value as it is); None when there is no such key."""
        record = self.store.get(key_id)
        if record is None:
            return None
        changes: dict[str, Any] = {}
        if rate_per_s is not None:
            changes["rate_per_s"] = rate_per_s
        if max_concurrent is not None:
            changes["max_concurrent"] = max_concurrent
        if origins is not None:
            changes["origins"] = parse_origins(origins)
        record = _checked(replace(record, **changes))
        self.store.put(record)
        return record

    def verify(self, presented: str) -> ApiKeyRecord | None:
        """The active record the key belongs to, or None (unknown, malformed, wrong secret or revoked)."""
        key_id = key_id_of(presented)
        if key_id is None:
            return None
        record = self.store.get(key_id)
        if record is None or not hmac.compare_digest(record.digest, self._digest(presented)):
            return None
        return record if record.active else None

    def list(self) -> list[ApiKeyRecord]:
        return sorted(self.store.all(), key=lambda r: r.created_at)

    def revoke(self, key_id: str) -> bool:
        record = self.store.get(key_id)
        if record is None:
            return False
        if record.active:
            self.store.put(replace(record, revoked_at=self._clock.time()))
        if self._on_revoke is not None:
            self._on_revoke(key_id)  # announced even when already revoked: a lost notice is sent again
        return True


def _checked(record: ApiKeyRecord) -> ApiKeyRecord:
    if not 0 <= record.rate_per_s <= 100_000 or not 0 <= record.max_concurrent <= 10_000:
        raise KeyPolicyError("rate must be 0..100000 requests/s and concurrency 0..10000 (0 = scope default)")
    if record.origins and not set(record.scopes) <= READ_SCOPES:
        raise KeyPolicyError("a browser key (bound to origins) may hold read scopes only: "
                             f"{', '.join(sorted(READ_SCOPES))}; its key is public to anyone who opens the page")
    return record


class MemoryApiKeyStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, ApiKeyRecord] = {}

    def put(self, record: ApiKeyRecord) -> None:
        with self._lock:
            self._records[record.key_id] = record

    def get(self, key_id: str) -> ApiKeyRecord | None:
        with self._lock:
            return self._records.get(key_id)

    def all(self) -> list[ApiKeyRecord]:
        with self._lock:
            return list(self._records.values())


class RedisApiKeyStore:
    """One hash per key at `{prefix}:apikey:{id}` plus the set of ids `{prefix}:apikeys`; no expiry."""

    def __init__(self, client: redis.Redis, *, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def put(self, record: ApiKeyRecord) -> None:
        fields = {k: ("" if v is None else str(v)) for k, v in record.to_fields().items()}
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(redis_keys.api_key(self._prefix, record.key_id), mapping=fields)
        pipe.sadd(redis_keys.api_key_ids(self._prefix), record.key_id)
        pipe.execute()

    def get(self, key_id: str) -> ApiKeyRecord | None:
        raw = cast(dict[bytes, bytes], self._redis.hgetall(redis_keys.api_key(self._prefix, key_id)))
        if not raw:
            return None
        return ApiKeyRecord.from_fields({k.decode(): v.decode() for k, v in raw.items()})

    def all(self) -> list[ApiKeyRecord]:
        ids = sorted(i.decode() for i in cast(set[bytes], self._redis.smembers(redis_keys.api_key_ids(self._prefix))))
        return [r for r in (self.get(i) for i in ids) if r is not None]
