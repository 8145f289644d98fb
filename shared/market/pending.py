"""Symbols waiting to be fetched from KIS, per data kind, shared by every instance through Redis.

Requests add the symbols they missed; a symbol wanted by any number of callers is pending once. Drainers
claim a batch atomically with a lease (Redis time), so two drainers never fetch the same symbol, and the
symbols of a drainer that crashed become claimable again when its lease runs out; a drainer still at work
renews its lease. Settling (complete, release, fail, renew) only acts on symbols the caller still owns, so a
stale drainer cannot undo a newer claim.

Readers enter symbols through `admit` (see shared/market/admission.py): with a cap on the set, a cap on the new
symbols per caller and second, and a "wanted until" time. Claims serve the symbols somebody waits for first,
and symbols nobody has waited for in `idle_s` are dropped. Symbols entered with `add` (preloads) are kept
until fetched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from redis import Redis

from shared.market import redis_keys


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


ALREADY, ADDED, OVER_RATE, FULL, FRESH = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class AdmitResult:
    size: int  # pending symbols of this kind after the call
    status: dict[str, int]  # symbol -> ALREADY | ADDED | OVER_RATE | FULL | FRESH


class PendingSymbols:
    """Pending set + claims for one data kind ("quote", "index", "daily", "info"). Thread-safe."""

    def __init__(self, redis: Redis, kind: str, *, prefix: str, lease_s: float, failure_ttl_s: int = 60,
                 idle_s: float = 0.0) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self.kind = kind
        self._redis = redis
        self._prefix = prefix
        self._lease_s = lease_s
        self._failure_ttl_s = failure_ttl_s
        self.idle_s = idle_s
        self.expired = 0  # symbols this process's claims dropped because nobody waited for them
        self._set = redis_keys.pending_set(prefix, kind)
        self._wanted = redis_keys.pending_wanted(prefix, kind)
        self._kept = redis_keys.pending_kept(prefix, kind)
        self._claim_keys = [self._set, redis_keys.pending_leases(prefix, kind), redis_keys.pending_owners(prefix, kind),
                            self._wanted, self._kept]
        self._add_script = redis.register_script(redis_keys.lua_source("pending_add"))
        self._admit_script = redis.register_script(redis_keys.lua_source("pending_admit"))
        self._claim_script = redis.register_script(redis_keys.lua_source("pending_claim"))
        self._settle_script = redis.register_script(redis_keys.lua_source("pending_settle"))

    @property
    def lease_s(self) -> float:
        return self._lease_s

    def add(self, symbols: Iterable[str]) -> int:
        """Mark symbols pending and keep them until fetched (clearing any recorded failure); returns how many
        were not pending yet. No cap: for accepted work such as preloads."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return 0
        keys = [self._set, self._kept, *(self._failure_key(s) for s in wanted)]
        return int(self._add_script(keys=keys, args=wanted))

    def add_keys(self, wanted: list[str]) -> list[str]:
        """KEYS of `pending_add.lua` for `wanted` (its ARGV are the symbols); the async reader runs it too."""
        # Readers' misses (the async read path runs this script): pending, but not kept like preloads.
        return [self._set, self._kept + ":nokeep", *(self._failure_key(s) for s in wanted)]

    def failure_keys(self, wanted: list[str]) -> list[str]:
        return [self._failure_key(s) for s in wanted]

    def admit(self, symbols: Iterable[str], *, caller: str, wait_s: float, max_pending: int = 0,
              new_per_s: int = 0) -> AdmitResult:
        """A reader's misses: pending unless the set holds max_pending already (FULL) or `caller` has entered
        new_per_s new symbols in this second (OVER_RATE); 0 means no cap. Admitted symbols are wanted for
        wait_s more seconds (claimed before unwanted ones, dropped after idle_s without a reader)."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return AdmitResult(self.size(), {})
        keys, args = self.admit_call(wanted, caller=caller, wait_s=wait_s, max_pending=max_pending,
                                     new_per_s=new_per_s)
        return self.admit_result(wanted, self._admit_script(keys=keys, args=args))

    def admit_call(self, wanted: list[str], *, caller: str, wait_s: float, max_pending: int = 0,
                   new_per_s: int = 0, check_fresh: bool = False) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of `pending_admit.lua` for these (distinct) symbols: the async reader runs the same
        script on its own client; `admit_result` reads its reply. With `check_fresh` a symbol whose fresh cache
        copy exists is not admitted but answered FRESH: written since the caller looked, checked atomically
        with the admission."""
        keys = [self._set, self._wanted, redis_keys.pending_caller(self._prefix, self.kind, caller),
                *(self._failure_key(s) for s in wanted)]
        if check_fresh:
            keys += [redis_keys.cache_fresh(self._prefix, self.kind, s) for s in wanted]
        return keys, [max_pending, new_per_s, f"{max(0.0, wait_s):.3f}", 1 if check_fresh else 0, *wanted]

    @staticmethod
    def admit_result(wanted: list[str], out: list[int]) -> AdmitResult:
        return AdmitResult(int(out[0]), {s: int(st) for s, st in zip(wanted, out[1:], strict=True)})

    def claim(self, max_n: int, owner: str) -> list[str]:
        """Lease up to max_n unleased pending symbols to `owner`: those a reader waits for first (latest
        deadline first, so a fetch under overload still finds its reader waiting), then the oldest."""
        if max_n <= 0:
            return []
        got = self._claim_script(keys=self._claim_keys, args=[max_n, owner, self._lease_s, self.idle_s])
        if int(got[0]):
            self.expired += int(got[0])
        return [_text(s) for s in got[1:]]

    def renew(self, symbols: Iterable[str], owner: str) -> int:
        """Still working on them: extend the lease of those still owned by `owner` to now + lease_s."""
        return self._settle("renew", symbols, owner)

    def complete(self, symbols: Iterable[str], owner: str) -> int:
        """Fetched: no longer pending. Returns how many were still owned by `owner` (others are left alone)."""
        return self._settle("complete", symbols, owner)

    def release(self, symbols: Iterable[str], owner: str) -> int:
        """Not done (deadline, rate limit): drop the lease, keep them pending for the next drainer."""
        return self._settle("release", symbols, owner)

    def fail(self, symbols: Iterable[str], owner: str, reason: str) -> int:
        """Could not be fetched: no longer pending; `reason` is readable by failures() for a while."""
        return self._settle("fail", symbols, owner, reason)

    def size(self) -> int:
        """Pending symbols, claimed ones included (queue depth)."""
        return cast(int, self._redis.zcard(self._set))

    def in_flight(self) -> int:
        """Symbols under a lease (live or expired but not yet reclaimed)."""
        return cast(int, self._redis.zcard(self._claim_keys[1]))

    def oldest_age_s(self) -> float:
        """Seconds since the oldest pending symbol was first wanted (Redis time); 0 when none."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.time()
        pipe.zrange(self._set, 0, 0, withscores=True)
        (secs, micros), oldest = pipe.execute()
        if not oldest:
            return 0.0
        return max(0.0, float(secs + micros / 1_000_000 - float(oldest[0][1])))

    def failures(self, symbols: Iterable[str]) -> dict[str, str]:
        """Recorded failure reasons of those symbols that have one."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return {}
        reasons = cast(list[bytes | None], self._redis.mget([self._failure_key(s) for s in wanted]))
        return {s: _text(r) for s, r in zip(wanted, reasons, strict=True) if r is not None}

    def _settle(self, mode: str, symbols: Iterable[str], owner: str, reason: str = "") -> int:
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return 0
        keys = list(self._claim_keys)
        if mode == "fail":
            keys += [self._failure_key(s) for s in wanted]
        third = f"{self._lease_s:.3f}" if mode == "renew" else (reason or "failed")
        args: list[str | int | float] = [mode, owner, third, self._failure_ttl_s, *wanted]
        return int(self._settle_script(keys=keys, args=args))

    def _failure_key(self, symbol: str) -> str:
        return redis_keys.pending_failure(self._prefix, self.kind, symbol)
