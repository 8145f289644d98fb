"""The exact, fleet-wide KIS rate limiter: a sliding log of grants in Redis, decided by one Lua script.

Every process and thread that calls KIS with one app key asks the same script, which reads the time from
Redis `TIME` (never a client clock) and grants a call only if fewer than N grants lie in (now - 1 s, now].
So no 1-second window ever holds more than N grants, however many instances run or how their clocks drift.
(A fixed window would admit 2N across a boundary.)

The budget is split between call classes: a class may always use its reserve, and may borrow the unreserved
pool plus the reserves of idle classes; the orders reserve is always held back, so orders are never starved
by quotes. On bursts of EGW00201 the budget drops multiplicatively fleet-wide and climbs back linearly (AIMD),
all computed inside the scripts from Redis time — there is no background thread.

Fail-safe: the limiter's keys carry no expiry, and an epoch marker records since when its state is complete.
When the state is lost (flush, failover to an empty replica) the marker is lost with it, and the script grants
nothing for one full window (1 s + guard): every call made before the loss has then left the window.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis as redis_lib
from redis import Redis

from shared import budget
from shared.budget import CALL_CLASSES
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings
from shared.market import redis_keys

# How far ahead the gateway's waiters book their slots (they wake this much before it): more than a busy machine's
# usual wake-up delay, less than the spacing between grants, so at most one slot is booked ahead and an arriving
# order waits for that one at most. (A limiter built without it grants only at once.)
BOOK_AHEAD_S = 0.02
# With priority orders: how long after an order's grant one slot stays held back for the next order call (a
# balance's second page, a client's next order) that follows a KIS round trip later. Quotes lose at most this
# much of one slot per order call (about 0.1 calls/s at one two-page balance every 2 s).
ORDER_FOLLOW_S = 0.1


class RateLimitTimeout(TimeoutError):
    """No rate grant could be had before the caller's deadline (raised before sleeping past it)."""

    def __init__(self, call_class: str, waited_s: float, next_wait_s: float, deadline_s: float) -> None:
        self.call_class = call_class
        self.waited_s = waited_s
        self.next_wait_s = next_wait_s
        self.deadline_s = deadline_s
        super().__init__(f"no {call_class} rate grant within {deadline_s:.3f} s "
                         f"(waited {waited_s:.3f} s, next slot in {next_wait_s:.3f} s)")


@dataclass(frozen=True)
class Grant:
    """Permission for one KIS call, stamped with the Redis time (µs since the epoch) it was granted for: the
    call is made at that time, `delay_s` after the grant was booked (0 unless booked ahead, see `acquire`)."""

    at_us: int
    call_class: str
    delay_s: float = 0.0


class SlidingLimiter:
    """Shared limiter of one app key. Thread-safe; one instance per process is enough.

    `app_key_id` is an opaque id of the app key (a hash), never the key itself.
    """

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        app_key_id: str,
        *,
        prefix: str,
        clock: Clock = SYSTEM_CLOCK,
        burst_reports: int = 2,
        burst_window_s: float = 1.0,
        demand_hold_s: float = 2.0,
        always_held: Iterable[str] = ("orders",),
        jitter_s: float = 0.003,
        horizon_s: float = 0.0,
        unspaced: str = "",
    ) -> None:
        if not app_key_id or any(c.isspace() for c in app_key_id) or len(app_key_id) > 64:
            raise ValueError("app_key_id must be a short opaque id without spaces")
        if settings.kis_app_key and app_key_id == settings.kis_app_key.get():
            raise ValueError("app_key_id must be an opaque id of the app key, not the key itself")
        self._settings = settings
        self._clock = clock
        self._n = settings.budget
        self._burst_reports = max(1, burst_reports)
        self._burst_window_us = int(burst_window_s * 1_000_000)
        self._jitter_s = jitter_s
        self._horizon_us = max(0, int(horizon_s * 1_000_000))
        if unspaced and unspaced not in CALL_CLASSES:
            raise ValueError(f"unknown call class {unspaced!r}; use one of {', '.join(CALL_CLASSES)}")
        self._unspaced = unspaced  # its calls within its reserve wait for no spacing (orders' priority)
        # After an order's grant one slot stays held for it this long: a balance's next page (or a caller's next
        # order) comes a KIS round trip later and takes it at once instead of the next slot quotes leave free.
        self._follow_us = int(min(ORDER_FOLLOW_S, demand_hold_s) * 1_000_000)
        self._keys = [redis_keys.limiter_log(prefix, app_key_id), redis_keys.limiter_state(prefix, app_key_id)]
        self._epoch_key = redis_keys.limiter_epoch(prefix, app_key_id)
        self._redis = redis
        self._mark_epoch()
        self._reports_key = redis_keys.limiter_reports(prefix, app_key_id)
        held = set(always_held)
        self._reserves = {c: budget.reserve(settings, c) for c in CALL_CLASSES}
        # Fixed part of the acquire script's arguments after the class name.
        self._args: list[Any] = [self._n, budget.call_spacing_ms(settings) * 1000, settings.aimd_recover_per_s,
                                 int(demand_hold_s * 1_000_000), (1000 + settings.limiter_guard_ms) * 1000]
        for c in CALL_CLASSES:
            self._args += [c, self._reserves[c], 1 if c in held else 0]
        self._acquire_script = redis.register_script(redis_keys.lua_source("limiter_acquire"))
        self._report_script = redis.register_script(redis_keys.lua_source("limiter_report"))
        self._snapshot_script = redis.register_script(redis_keys.lua_source("limiter_snapshot"))
        self._stats_lock = threading.Lock()
        self._waits = {"acquired": 0, "waited": 0, "wait_total_s": 0.0, "wait_max_s": 0.0, "timeouts": 0,
                       "decreases": 0}

    @property
    def budget(self) -> int:
        """N: the configured calls per second for this app key."""
        return self._n

    def try_acquire(self, call_class: str, horizon_s: float = 0.0) -> Grant | float:
        """One attempt: a Grant, or the seconds until a slot for this class could free. With `horizon_s` > 0 a
        slot at most that far ahead is booked: the Grant's `delay_s` says how long to wait before the call."""
        if call_class not in self._reserves:
            raise ValueError(f"unknown call class {call_class!r}; use one of {', '.join(CALL_CLASSES)}")
        out = self._acquire_script(keys=[*self._keys, self._epoch_key],
                                   args=[call_class, *self._args[:5], max(0, int(horizon_s * 1_000_000)),
                                         self._unspaced, self._follow_us, *self._args[5:]])
        if int(out[0]):
            return Grant(int(out[1]), call_class, int(out[2]) / 1_000_000)
        return int(out[1]) / 1_000_000

    def acquire(self, call_class: str, deadline_s: float | None = None) -> Grant:
        """Block until granted. `deadline_s` is the longest wait in seconds (default limiter_max_wait_s);
        raises RateLimitTimeout as soon as the next possible slot lies beyond it, without sleeping past it.

        With a booking horizon (`horizon_s`, the gateway's BOOK_AHEAD_S), a waiter wakes that much before the
        slot it was told of and books it (Redis time): it then sleeps until the slot and returns at it. So grants
        keep their cadence exactly, however late a busy machine wakes a waiting thread, and the next waiter's slot
        is counted from the booked one, not from a late wake-up."""
        budget = self._settings.limiter_max_wait_s if deadline_s is None else max(0.0, deadline_s)
        horizon = self._horizon_us / 1_000_000
        start = self._clock.monotonic()
        while True:
            remaining = budget - (self._clock.monotonic() - start)
            got = (self.try_acquire(call_class, min(horizon, max(0.0, remaining))) if horizon
                   else self.try_acquire(call_class))
            elapsed = self._clock.monotonic() - start
            if isinstance(got, Grant):
                if got.delay_s > 0:
                    self._clock.sleep(got.delay_s)
                self._record_wait(elapsed + got.delay_s)
                return got
            if elapsed + got > budget:
                with self._stats_lock:
                    self._waits["timeouts"] += 1
                raise RateLimitTimeout(call_class, elapsed, got, budget)
            # Wake a little before the slot to book it; a little jitter spreads the waiters told of the same one.
            jitter = random.uniform(0.0, max(0.0, min(self._jitter_s, budget - elapsed - got)))
            self._clock.sleep(max(0.0, got - horizon) + jitter)

    def _mark_epoch(self) -> None:
        """Start the fail-safe window now if no state exists (as the first grant would), so a new process or
        deployment has usually served it out before its first KIS call; a running limiter is left alone."""
        try:
            secs, micros = cast(tuple[int, int], self._redis.time())
            self._redis.set(self._epoch_key, str(int(secs) * 1_000_000 + int(micros)), nx=True)
        except redis_lib.RedisError:  # Redis not reachable yet: the first grant marks it instead
            pass

    def start_fresh(self) -> bool:
        """Declare this limiter's state complete from the start: only for a Redis (or prefix) that no gateway
        has used with this app key (first deployment, tests). Without it the first grant waits one window,
        exactly as after a flush. Returns False when the state existed already (nothing changed)."""
        if self._redis.set(self._epoch_key, "0", nx=True):
            return True
        # Marked a moment ago by this process's construction: a limiter with no grant yet may still start fresh.
        if not self._redis.exists(self._keys[0]):
            self._redis.set(self._epoch_key, "0")
            return True
        return False

    def report_rate_limited(self) -> None:
        """KIS answered EGW00201: count it; a burst lowers the fleet-wide budget (at most once a second)."""
        s = self._settings
        decreased, _ = self._report_script(
            keys=[self._keys[1], self._reports_key],
            args=[self._n, s.aimd_decrease_factor, s.aimd_recover_per_s, self._burst_reports,
                  self._burst_window_us])
        if int(decreased):
            with self._stats_lock:
                self._waits["decreases"] += 1

    def effective_budget(self) -> float:
        """Current N_eff: N, or less after rate-limit bursts while it climbs back."""
        return self._read()[0]

    def snapshot(self) -> dict[str, Any]:
        """For /stats: budget, effective budget, reserves, grants per class in the last second and this
        process's waits."""
        n_eff, counts = self._read()
        with self._stats_lock:
            waits = dict(self._waits)
        return {"budget": self._n, "effective_budget": round(n_eff, 3), "reserves": dict(self._reserves),
                "min_call_spacing_ms": budget.call_spacing_ms(self._settings),
                "last_second": {"total": sum(counts.values()), **counts}, "waits": waits}

    def _read(self) -> tuple[float, dict[str, int]]:
        out = self._snapshot_script(keys=self._keys, args=[self._n, self._settings.aimd_recover_per_s])
        counts = dict.fromkeys(CALL_CLASSES, 0)
        for member in out[2:]:
            cls = (member.decode() if isinstance(member, bytes) else str(member)).split("|", 1)[0]
            counts[cls] = counts.get(cls, 0) + 1
        return float(out[1]), counts

    def _record_wait(self, waited_s: float) -> None:
        with self._stats_lock:
            w = self._waits
            w["acquired"] += 1
            if waited_s > 0:
                w["waited"] += 1
                w["wait_total_s"] = round(w["wait_total_s"] + waited_s, 6)
                w["wait_max_s"] = max(w["wait_max_s"], round(waited_s, 6))
