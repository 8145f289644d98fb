"""Idempotency records for orders: who claimed a key, with which body, and the answer once it is known.

A record is born `in_progress` by an atomic claim (Redis `SET NX`, Firestore `create()`, a lock in memory),
so of any number of concurrent requests with one key exactly one wins and sends the order. The winner
settles the record: `finish` stores the answer (status + body) that every repeat receives, `release`
deletes it when KIS certainly did not get the order, so the caller may try again with the same key.
Records live 24 hours (Redis TTL; Firestore `expires_at`, also honoured on read). Backends are picked by
URI in `shared.backends`: redis://, firestore://[collection], memory://.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from typing import Any, Protocol, cast

import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.market import redis_keys

RECORD_TTL_S = 24 * 3600
IN_PROGRESS = "in_progress"
DONE = "done"
DEFAULT_COLLECTION = "order_idempotency"


@dataclass(frozen=True)
class IdempotencyRecord:
    state: str  # in_progress | done
    fingerprint: str  # hash of the normalised order body
    owner: str  # the claim's random id: only its holder may settle it
    created_at: float  # epoch seconds
    status: int | None = None
    body: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> IdempotencyRecord:
        return cls(**json.loads(raw))

    def finished(self, status: int, body: dict[str, Any]) -> IdempotencyRecord:
        return IdempotencyRecord(DONE, self.fingerprint, self.owner, self.created_at, status, body)


@dataclass(frozen=True)
class Claim:
    won: bool  # True: the caller owns the key and must send the order, then settle
    record: IdempotencyRecord  # the caller's new record, or the one already there


class IdempotencyStore(Protocol):
    def claim(self, key: str, fingerprint: str, owner: str) -> Claim: ...
    def get(self, key: str) -> IdempotencyRecord | None: ...
    def finish(self, key: str, owner: str, status: int, body: dict[str, Any]) -> bool: ...
    def release(self, key: str, owner: str) -> bool: ...


def record_id(key: str) -> str:
    """Storage id of a key: fixed length and safe in any backend whatever the caller sent."""
    return hashlib.sha256(key.encode()).hexdigest()


class MemoryIdempotencyStore:
    """One process only: tests and single-instance dev runs."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, ttl_s: float = RECORD_TTL_S) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._records: dict[str, tuple[IdempotencyRecord, float]] = {}

    def _live(self, key: str) -> IdempotencyRecord | None:
        entry = self._records.get(key)
        if entry is None:
            return None
        if self._clock.time() >= entry[1]:
            del self._records[key]
            return None
        return entry[0]

    def claim(self, key: str, fingerprint: str, owner: str) -> Claim:
        with self._lock:
            existing = self._live(key)
            if existing is not None:
                return Claim(False, existing)
            now = self._clock.time()
            record = IdempotencyRecord(IN_PROGRESS, fingerprint, owner, now)
            self._records[key] = (record, now + self._ttl_s)
            return Claim(True, record)

    def get(self, key: str) -> IdempotencyRecord | None:
        with self._lock:
            return self._live(key)

    def finish(self, key: str, owner: str, status: int, body: dict[str, Any]) -> bool:
        with self._lock:
            current = self._live(key)
            if current is None or current.owner != owner or current.state != IN_PROGRESS:
                return False
            self._records[key] = (current.finished(status, body), self._records[key][1])
            return True

    def release(self, key: str, owner: str) -> bool:
        with self._lock:
            current = self._live(key)
            if current is None or current.owner != owner or current.state != IN_PROGRESS:
                return False
            del self._records[key]
            return True


class RedisIdempotencyStore:
    """Records as JSON strings under `{prefix}:idem:{sha256(key)}` with a 24 h TTL."""

    def __init__(self, client: redis.Redis, *, prefix: str, clock: Clock = SYSTEM_CLOCK,
                 ttl_s: int = RECORD_TTL_S) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        self._ttl_s = ttl_s
        self._settle = client.register_script(redis_keys.lua_source("idempotency_settle"))

    def _key(self, key: str) -> str:
        return redis_keys.idempotency_record(self._prefix, record_id(key))

    def claim(self, key: str, fingerprint: str, owner: str) -> Claim:
        record = IdempotencyRecord(IN_PROGRESS, fingerprint, owner, self._clock.time())
        for _ in range(3):  # the existing record may expire or be released between SET and GET
            if self._redis.set(self._key(key), record.to_json(), nx=True, ex=self._ttl_s):
                return Claim(True, record)
            existing = self.get(key)
            if existing is not None:
                return Claim(False, existing)
        raise RuntimeError("idempotency claim kept racing with expiry; try again")

    def get(self, key: str) -> IdempotencyRecord | None:
        raw = cast(bytes | None, self._redis.get(self._key(key)))
        return None if raw is None else IdempotencyRecord.from_json(raw)

    def finish(self, key: str, owner: str, status: int, body: dict[str, Any]) -> bool:
        current = self.get(key)
        if current is None:
            return False
        done = current.finished(status, body).to_json()
        return bool(self._settle(keys=[self._key(key)], args=[owner, "finish", done]))

    def release(self, key: str, owner: str) -> bool:
        return bool(self._settle(keys=[self._key(key)], args=[owner, "release", ""]))
