"""The circuit breaker in front of KIS, shared by every instance through a `BreakerStorage`.

Why not `pybreaker.CircuitBreaker.call`: it holds an RLock around the guarded function, so calls through
one breaker would run one at a time, and its transitions are read-then-write steps that let several
processes open together or probe together. Here the decision is taken before the call (no lock held
while KIS answers) and every transition is one atomic storage operation:

- closed: calls pass; a counted failure increments the shared run of consecutive failures and the one
  that reaches `fail_max` opens the breaker. A success (or a business error: KIS answered) ends the run.
- open: calls fail fast with `BreakerOpenError` until `reset_timeout_s` has passed since `opened_at`.
- half-open: the first caller anywhere in the fleet takes a probe lease and makes the one trial call;
  everyone else keeps getting `BreakerOpenError` until the verdict is written (closed or open again).

A storage that cannot be reached lets calls through (logged): the limiter still protects KIS, and a
breaker stuck open by a storage fault would take the gateway down for nothing.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pybreaker
import redis as redis_lib

from shared.clock import SYSTEM_CLOCK, Clock
from shared.kis.errors import KISAuthError, KISBusinessError, KISConfigError, KISTokenIssueThrottledError
from shared.market.breaker_storage import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSnapshot,
    BreakerStorage,
    MemoryBreakerStorage,
    RedisBreakerStorage,
)
from shared.market.token import TokenUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")
StateListener = Callable[[str, str], None]
Exclusion = type[BaseException] | Callable[[BaseException], bool]
DEFAULT_EXCLUDE: tuple[Exclusion, ...] = (KISBusinessError, ValueError, KeyError)
# Failures of ours, not KIS's: no token, no rate grant in time (RateLimitTimeout is a TimeoutError), Redis
# down, a configuration error (e.g. no account number), a refused or throttled token. They give no verdict on
# KIS; what KIS did (5xx, EGW server/rate errors, timeouts, refused connections) counts.
LOCAL_FAILURES: tuple[type[BaseException], ...] = (TokenUnavailableError, RuntimeError, TimeoutError,
                                                   redis_lib.RedisError, KISConfigError, KISAuthError,
                                                   KISTokenIssueThrottledError)
LocalFailureListener = Callable[[BaseException], None]
DEFAULT_PROBE_LEASE_S = 30.0

__all__ = [
    "CLOSED", "HALF_OPEN", "OPEN", "BreakerOpenError", "BreakerSnapshot", "BreakerStorage",
    "MemoryBreakerStorage", "RedisBreakerStorage", "SharedBreaker",
]


class BreakerOpenError(pybreaker.CircuitBreakerError):
    """The breaker refused the call without trying KIS. Serve stale data and retry after `retry_after_s`."""

    def __init__(self, name: str, opened_at: float | None, retry_after_s: float) -> None:
        self.breaker = name
        self.opened_at = opened_at
        self.retry_after_s = retry_after_s
        super().__init__(f"circuit breaker {name!r} is open; retry after {retry_after_s:.1f} s")


class SharedBreaker:
    def __init__(
        self,
        storage: BreakerStorage,
        *,
        fail_max: int,
        reset_timeout_s: float,
        name: str = "kis",
        exclude: Iterable[Exclusion] = DEFAULT_EXCLUDE,
        clock: Clock = SYSTEM_CLOCK,
        listeners: Iterable[StateListener] = (),
        probe_lease_s: float = DEFAULT_PROBE_LEASE_S,
    ) -> None:
        if fail_max < 1 or reset_timeout_s <= 0 or probe_lease_s <= 0:
            raise ValueError("fail_max must be >= 1 and reset_timeout_s, probe_lease_s > 0")
        self.storage = storage
        self.fail_max = fail_max
        self.reset_timeout_s = reset_timeout_s
        self.probe_lease_s = probe_lease_s
        self.name = name
        self._exclude = tuple(exclude)
        self._clock = clock
        self._listeners = list(listeners)
        self._seen_lock = threading.Lock()  # guards only the last state this instance reported
        self._last_seen = CLOSED
        self._local_listeners: list[LocalFailureListener] = []
        self._local_lock = threading.Lock()
        self.local_failures: dict[str, int] = {}

    # ---- reading ---------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.snapshot().state

    @property
    def opened_at(self) -> float | None:
        return self.snapshot().opened_at

    @property
    def failure_count(self) -> int:
        return self.snapshot().failure_count

    def snapshot(self) -> BreakerSnapshot:
        try:
            snap = self.storage.snapshot()
        except Exception:
            log.warning("breaker %s: storage unreadable, treating as closed", self.name, exc_info=True)
            return BreakerSnapshot(CLOSED)
        self._observe(snap.state)
        return snap

    def describe(self) -> dict[str, Any]:
        """Plain data for /health and /stats: the state shown (`BreakerStorage.shown_snapshot`), with `age_s`
        when it comes from an older read."""
        try:
            snap = self.storage.shown_snapshot()
        except Exception:
            log.warning("breaker %s: storage unreadable, shown as closed", self.name, exc_info=True)
            snap = BreakerSnapshot(CLOSED)
        if snap.age_s == 0:
            self._observe(snap.state)  # a read made now: as `snapshot` (an older one reports no transition)
        out: dict[str, Any] = {"name": self.name, "state": snap.state, "opened_at": snap.opened_at,
                               "failure_count": snap.failure_count, "fail_max": self.fail_max}
        if snap.age_s > 0:
            out["age_s"] = snap.age_s
        if snap.state != CLOSED:
            out["retry_after_s"] = round(self._retry_after(snap, self._clock.time()), 3)
        return out

    def refusing(self) -> bool:
        """True while calls would be refused outright (open, reset timeout not yet passed)."""
        snap = self.snapshot()
        return snap.state == OPEN and self._clock.time() < (snap.opened_at or 0.0) + self.reset_timeout_s

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def add_local_failure_listener(self, listener: LocalFailureListener) -> None:
        """Called with each failure that happened before any request reached KIS (no token, no rate grant,
        Redis down, configuration): reported as what it is, never counted against KIS."""
        self._local_listeners.append(listener)

    def is_counted(self, exc: BaseException) -> bool:
        """Whether an exception is a sign of KIS trouble: only what KIS did (5xx, timeouts, refused
        connections, EGW rate/server errors) counts; business errors are answers, not failures."""
        for exclusion in self._exclude:
            if isinstance(exclusion, type):
                if isinstance(exc, exclusion):
                    return False
            elif exclusion(exc):
                return False
        return not isinstance(exc, LOCAL_FAILURES)

    def is_excluded(self, exc: BaseException) -> bool:
        return any(isinstance(exc, e) if isinstance(e, type) else e(exc) for e in self._exclude)

    # ---- calling ---------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        probe_owner = self._admit()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            if self.is_counted(exc):
                self._on_failure(probe_owner)
            elif self.is_excluded(exc):
                self._on_success(probe_owner)
            else:
                # Ours, not KIS's (no token, limiter wait, Redis, configuration): no verdict on KIS either way.
                self._on_local_failure(exc, probe_owner)
            raise
        # A BaseException (interrupt, exit) gives no verdict: a probe's lease simply runs out.
        self._on_success(probe_owner)
        return result

    def _admit(self) -> str | None:
        """Return None for an ordinary call, a probe owner id for the half-open trial, or raise."""
        now = self._clock.time()
        snap = self.snapshot()
        if snap.state == CLOSED:
            return None
        if snap.state == OPEN and now < (snap.opened_at or 0.0) + self.reset_timeout_s:
            raise BreakerOpenError(self.name, snap.opened_at, self._retry_after(snap, now))
        owner = uuid.uuid4().hex
        if self._storage_op(self.storage.begin_probe, False, owner, now, self.reset_timeout_s, self.probe_lease_s):
            self._observe(HALF_OPEN)
            log.info("breaker %s: half-open, this call is the probe", self.name)
            return owner
        snap = self.snapshot()
        if snap.state == CLOSED:  # the probe succeeded between our two reads
            return None
        raise BreakerOpenError(self.name, snap.opened_at, self._retry_after(snap, now))

    def _on_local_failure(self, exc: BaseException, probe_owner: str | None = None) -> None:
        if probe_owner is not None:
            # The probe never reached KIS: hand the probe back at once (open, its reset time already passed),
            # so another caller probes now instead of the fleet waiting out this probe's lease.
            self._storage_op(self.storage.end_probe, None, probe_owner, False,
                             self._clock.time() - self.reset_timeout_s)
        name = local_failure_kind(exc)
        with self._local_lock:
            self.local_failures[name] = self.local_failures.get(name, 0) + 1
        for listener in list(self._local_listeners):
            try:
                listener(exc)
            except Exception:
                log.exception("breaker %s: local failure listener failed", self.name)

    def _on_failure(self, probe_owner: str | None) -> None:
        now = self._clock.time()
        if probe_owner is not None:
            new_state = self._storage_op(self.storage.end_probe, None, probe_owner, False, now)
            if new_state:
                self._observe(new_state)
                log.warning("breaker %s: probe failed, open again", self.name)
        elif self._storage_op(self.storage.record_failure, False, self.fail_max, now):
            self._observe(OPEN)
            log.warning("breaker %s: opened after %d consecutive failures", self.name, self.fail_max)

    def _on_success(self, probe_owner: str | None) -> None:
        if probe_owner is not None:
            new_state = self._storage_op(self.storage.end_probe, None, probe_owner, True, self._clock.time())
            if new_state:
                self._observe(new_state)
                log.info("breaker %s: probe succeeded, closed", self.name)
        else:
            self._storage_op(self.storage.record_success, None)

    def _retry_after(self, snap: BreakerSnapshot, now: float) -> float:
        if snap.state == HALF_OPEN:  # the probe's verdict is due within its lease
            until = snap.probe_until if snap.probe_until is not None else now + 1.0
            return max(0.0, min(until - now, self.reset_timeout_s))
        return max(0.0, (snap.opened_at or now) + self.reset_timeout_s - now)

    def _storage_op(self, op: Callable[..., T], fallback: T, *args: Any) -> T:
        try:
            return op(*args)
        except Exception:
            log.warning("breaker %s: storage error in %s", self.name, op.__name__, exc_info=True)
            return fallback

    def _observe(self, state: str) -> None:
        """Tell listeners about a state this instance has not reported yet (its own or another's)."""
        with self._seen_lock:
            old, self._last_seen = self._last_seen, state
        if old == state:
            return
        for listener in list(self._listeners):
            try:
                listener(old, state)
            except Exception:
                log.exception("breaker %s: listener failed on %s -> %s", self.name, old, state)

    def __repr__(self) -> str:
        return f"SharedBreaker(name={self.name!r}, storage={type(self.storage).__name__}, fail_max={self.fail_max})"


def local_failure_kind(exc: BaseException) -> str:
    """What a failure before KIS was, for metrics and alerts: token, limiter, redis, config or other."""
    name = type(exc).__name__
    if isinstance(exc, redis_lib.RedisError):
        return "redis"
    if isinstance(exc, KISConfigError):
        return "config"
    if isinstance(exc, KISAuthError | KISTokenIssueThrottledError) or "Token" in name:
        return "token"
    if isinstance(exc, TimeoutError) or "RateLimit" in name:
        return "limiter"
    return "other"

