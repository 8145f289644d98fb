"""Where the circuit breaker keeps its state so that every instance sees the same breaker.

`BreakerStorage` is pybreaker's `CircuitBreakerStorage` (so a plain `pybreaker.CircuitBreaker` can use it)
plus four atomic operations `SharedBreaker` is built on: record a failure (and open at the threshold),
record a success, take the one half-open probe lease, and write the probe's verdict. Making each of
these one atomic step in the storage is what keeps several processes from opening twice or probing
together. Times are epoch seconds from the caller's clock, so tests can drive them with a FakeClock.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import pybreaker
import redis

from shared.market import redis_keys

CLOSED = pybreaker.STATE_CLOSED
OPEN = pybreaker.STATE_OPEN
HALF_OPEN = pybreaker.STATE_HALF_OPEN


@dataclass(frozen=True)
class BreakerSnapshot:
    state: str
    opened_at: float | None = None
    failure_count: int = 0
    probe_until: float | None = None  # half-open: end of the lease of the one probe in flight
    age_s: float = 0.0  # how old the read it comes from is, when shown from an older copy (`shown_snapshot`)


def epoch_to_datetime(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class BreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage contract plus the atomic transitions of a fleet-wide breaker."""

    @abstractmethod
    def snapshot(self) -> BreakerSnapshot: ...

    def shown_snapshot(self) -> BreakerSnapshot:
        """The state to show (health, stats, metrics), never to decide with: a storage whose reads are costly
        may show an older read, with its age. This one shows what `snapshot` reads."""
        return self.snapshot()

    @abstractmethod
    def record_failure(self, fail_max: int, now: float) -> bool:
        """Count a failure while closed; open when the count reaches fail_max. True if this call opened."""

    @abstractmethod
    def record_success(self) -> None:
        """A success while closed ends the run of consecutive failures."""

    @abstractmethod
    def begin_probe(self, owner: str, now: float, reset_timeout_s: float, lease_s: float) -> bool:
        """Take the half-open probe if the open period is over (or the last probe's lease ran out)."""

    @abstractmethod
    def end_probe(self, owner: str, success: bool, now: float) -> str | None:
        """Close (success) or reopen (failure) if `owner` still holds the probe; the new state, else None."""

    # ---- pybreaker's read side, derived from the snapshot ---------------------------------------
    @property
    def state(self) -> str:
        return self.snapshot().state

    @state.setter
    def state(self, state: str) -> None:
        self.force_state(state)

    @property
    def counter(self) -> int:
        return self.snapshot().failure_count

    @property
    def opened_at(self) -> datetime | None:
        return epoch_to_datetime(self.snapshot().opened_at)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self.force_opened_at(when.timestamp())

    @abstractmethod
    def force_state(self, state: str) -> None:
        """pybreaker's unconditional state write (used by plain pybreaker and by operators)."""

    @abstractmethod
    def force_opened_at(self, ts: float) -> None: ...


class MemoryBreakerStorage(BreakerStorage):
    """One process only (tests, `memory://`). Thread-safe; the lock guards state, never a call."""

    def __init__(self, name: str = "kis") -> None:
        super().__init__(name)
        self._lock = threading.Lock()
        self._state = CLOSED
        self._opened_at: float | None = None
        self._failures = 0
        self._successes = 0
        self._probe_owner: str | None = None
        self._probe_until: float | None = None

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            return BreakerSnapshot(self._state, self._opened_at, self._failures, self._probe_until)

    def record_failure(self, fail_max: int, now: float) -> bool:
        with self._lock:
            if self._state != CLOSED:
                return False
            self._failures += 1
            if self._failures < fail_max:
                return False
            self._state, self._opened_at = OPEN, now
            return True

    def record_success(self) -> None:
        with self._lock:
            if self._state == CLOSED:
                self._failures = 0

    def begin_probe(self, owner: str, now: float, reset_timeout_s: float, lease_s: float) -> bool:
        with self._lock:
            if not probe_allowed(self._state, self._opened_at, self._probe_until, now, reset_timeout_s):
                return False
            self._state, self._probe_owner, self._probe_until = HALF_OPEN, owner, now + lease_s
            return True

    def end_probe(self, owner: str, success: bool, now: float) -> str | None:
        with self._lock:
            if self._state != HALF_OPEN or self._probe_owner != owner:
                return None
            self._probe_owner = self._probe_until = None
            if success:
                self._state, self._opened_at, self._failures = CLOSED, None, 0
            else:
                self._state, self._opened_at = OPEN, now
            return self._state

    def force_state(self, state: str) -> None:
        with self._lock:
            self._state = state
            self._probe_owner = self._probe_until = None
            if state == CLOSED:
                self._opened_at = None

    def force_opened_at(self, ts: float) -> None:
        with self._lock:
            self._opened_at = ts

    def increment_counter(self) -> None:
        with self._lock:
            self._failures += 1

    def reset_counter(self) -> None:
        with self._lock:
            self._failures = 0

    def increment_success_counter(self) -> None:
        with self._lock:
            self._successes += 1

    def reset_success_counter(self) -> None:
        with self._lock:
            self._successes = 0

    @property
    def success_counter(self) -> int:
        return self._successes


def probe_allowed(state: str, opened_at: float | None, probe_until: float | None, now: float,
                   reset_timeout_s: float) -> bool:
    if state == OPEN:
        return now >= (opened_at or 0.0) + reset_timeout_s
    if state == HALF_OPEN:  # a probe whose lease ran out (crashed instance) may be replaced
        return probe_until is None or now >= probe_until
    return False


class RedisBreakerStorage(BreakerStorage):
    """The fleet's breaker in one Redis hash `{prefix}:breaker:{name}`; transitions are Lua scripts."""

    def __init__(self, client: redis.Redis, prefix: str, name: str = "kis") -> None:
        super().__init__(name)
        self._redis = client
        self.key = redis_keys.breaker(prefix, name)
        # Each script is one atomic step on the breaker's hash.
        self._record_failure = client.register_script(redis_keys.lua_source("breaker_record_failure"))
        self._record_success = client.register_script(redis_keys.lua_source("breaker_record_success"))
        self._begin_probe = client.register_script(redis_keys.lua_source("breaker_begin_probe"))
        self._end_probe = client.register_script(redis_keys.lua_source("breaker_end_probe"))

    def snapshot(self) -> BreakerSnapshot:
        state, opened_at, failures, probe_until = cast(list[bytes | None], self._redis.hmget(
            self.key, ["state", "opened_at", "failures", "probe_until"]))
        return BreakerSnapshot(
            state=state.decode() if state else CLOSED,
            opened_at=float(opened_at) if opened_at else None,
            failure_count=int(failures) if failures else 0,
            probe_until=float(probe_until) if probe_until else None,
        )

    def record_failure(self, fail_max: int, now: float) -> bool:
        return bool(self._record_failure(keys=[self.key], args=[fail_max, repr(now)]))

    def record_success(self) -> None:
        self._record_success(keys=[self.key])

    def begin_probe(self, owner: str, now: float, reset_timeout_s: float, lease_s: float) -> bool:
        args = [owner, repr(now), repr(reset_timeout_s), repr(now + lease_s)]
        return bool(self._begin_probe(keys=[self.key], args=args))

    def end_probe(self, owner: str, success: bool, now: float) -> str | None:
        out = self._end_probe(keys=[self.key], args=[owner, "1" if success else "0", repr(now)])
        return out.decode() if out else None

    def force_state(self, state: str) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(self.key, "state", state)
        pipe.hdel(self.key, "probe_owner", "probe_until", *(["opened_at"] if state == CLOSED else []))
        pipe.execute()

    def force_opened_at(self, ts: float) -> None:
        self._redis.hset(self.key, "opened_at", repr(ts))

    def increment_counter(self) -> None:
        self._redis.hincrby(self.key, "failures", 1)

    def reset_counter(self) -> None:
        self._redis.hset(self.key, "failures", "0")

    def increment_success_counter(self) -> None:
        self._redis.hincrby(self.key, "successes", 1)

    def reset_success_counter(self) -> None:
        self._redis.hset(self.key, "successes", "0")

    @property
    def success_counter(self) -> int:
        raw = cast(bytes | None, self._redis.hget(self.key, "successes"))
        return int(raw) if raw else 0
