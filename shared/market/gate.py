"""The KIS gate: the one path every KIS call takes.

The promise it keeps: no call reaches KIS without passing the circuit breaker and a rate grant of the shared
limiter (fleet-wide, per call class; balance and order TRs also the account-ledger window), and no caller
waits for a grant past its deadline. Reads go through `call` (the retry policy: backoff on rate-limit, server
and transport errors, one token refresh on a rejected token); orders go through `call_once` (breaker and
limiter, never repeated). The KIS client runs `acquire` before each REST request, so the shared limiter is
passed per HTTP exchange, also by multi-page answers.

A drain fetching under a lease (see `drain.py`) runs its calls inside `bounded(deadline, lease)`: each wait
for a grant is cut to what the lease allows and the lease is renewed around it, so nobody else claims the
symbols this drain is still fetching.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings
from shared.kis.http import is_ledger_tr
from shared.market.breaker import SharedBreaker
from shared.market.limiter import RateLimitTimeout, SlidingLimiter
from shared.market.retry import RetryPolicy
from shared.market.token import TokenManager


class CallerCap:
    """At most `limit` callers at once in this process for work that takes several KIS calls (the balance's
    pages): a caller that got in gets its later pages' grants against a few others, not against every newcomer,
    so under overload the class's budget finishes whole answers instead of starting many that all run out of
    time. One that cannot get in within its wait gives up before any KIS call (RateLimitTimeout: not sent)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._slots = threading.BoundedSemaphore(self.limit)

    @contextlib.contextmanager
    def enter(self, call_class: str, wait_s: float) -> Iterator[None]:
        if not self._slots.acquire(timeout=max(0.0, wait_s)):
            raise RateLimitTimeout(call_class, wait_s, 0.0, wait_s)
        try:
            yield
        finally:
            self._slots.release()


class Lease(Protocol):
    """Work held under a lease while its KIS calls wait for rate grants (a drain's claim)."""

    @property
    def longest_wait_s(self) -> float: ...

    def renew(self) -> None: ...


# Instant (clock.monotonic) by which the KIS call being made must have its rate grant.
_call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("kis_call_deadline", default=None)
# The lease of the work the calls being made are for (a drain's claim), kept alive while they wait.
_current_lease: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("kis_call_lease", default=None)
# The call class of a rate grant already taken for the next KIS request of this context (see `KISGate.granted`).
_held_grant: contextvars.ContextVar[str | None] = contextvars.ContextVar("kis_held_grant", default=None)


class KISGate:
    def __init__(self, settings: Settings, *, limiter: SlidingLimiter, breaker: SharedBreaker,
                 tokens: TokenManager, ledger: SlidingLimiter | None = None, retry: RetryPolicy | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.limiter = limiter
        self.breaker = breaker
        self.tokens = tokens
        self.ledger = ledger  # paces balance and order TRs under KIS's account-ledger limit (EGW00215)
        self.retry = retry or RetryPolicy.from_settings(settings, clock)
        self.clock = clock

    def acquire(self, call_class: str, tr_id: str) -> None:
        """The KIS client's hook before each REST request: wait for the rate grant(s) within the deadline."""
        if _held_grant.get() == call_class and not is_ledger_tr(tr_id):
            _held_grant.set(None)  # taken already (`granted`): this request uses it, a retry asks again
            return
        deadline = _call_deadline.get()
        if self.ledger is not None and is_ledger_tr(tr_id):
            self.ledger.acquire("orders", None if deadline is None else max(0.0, deadline - self.clock.monotonic()))
        remaining = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
        lease = _current_lease.get()
        if lease is None:
            self.limiter.acquire(call_class, remaining)
            return
        # Under a lease: the wait never outlasts the (just renewed) lease, and the call that follows gets a fresh one.
        lease.renew()
        remaining = lease.longest_wait_s if remaining is None else min(remaining, lease.longest_wait_s)
        self.limiter.acquire(call_class, remaining)
        lease.renew()

    def call(self, fn: Callable[[], Any], *, deadline: float) -> Any:
        """One logical KIS call: breaker → limiter (in the client's gate) → HTTP, with the retry policy."""
        token = _call_deadline.set(deadline)
        try:
            return self.retry.run(lambda: self.breaker.call(fn), refresh_token=self.tokens.on_rejected,
                                  on_rate_limited=self.limiter.report_rate_limited, deadline=deadline)
        finally:
            _call_deadline.reset(token)

    def call_once(self, fn: Callable[[], Any], *, deadline_s: float | None = None) -> Any:
        """A KIS call that must never be repeated (orders): breaker and limiter, no retry."""
        deadline = self.clock.monotonic() + (self.settings.request_deadline_s if deadline_s is None else deadline_s)
        token = _call_deadline.set(deadline)
        try:
            return self.breaker.call(fn)
        finally:
            _call_deadline.reset(token)

    @contextlib.contextmanager
    def granted(self, call_class: str) -> Iterator[None]:
        """Take the rate grant of the next KIS request of `call_class` now (inside `bounded`, under its deadline
        and lease), so that what is decided after it goes into the request made at its slot: a drain fills up
        its batch with the symbols that became pending while it waited. That request uses the grant; a retry
        asks for its own. Not used (the breaker refused first, or nothing was sent), it is given up: a slot
        lost, never a second request on one grant. Not for ledger TRs (their grants are taken in the hook).
        The token is read first, as the KIS client does: a token read or issue must not sit between the grant
        and the request."""
        self.tokens.get()
        self.acquire(call_class, "")
        token = _held_grant.set(call_class)
        try:
            yield
        finally:
            _held_grant.reset(token)

    @contextlib.contextmanager
    def bounded(self, deadline: float, lease: Lease | None = None) -> Iterator[None]:
        """Calls made inside get their rate grants by `deadline` and keep `lease` alive while they wait."""
        token = _call_deadline.set(deadline)
        held = _current_lease.set(lease)
        try:
            yield
        finally:
            _current_lease.reset(held)
            _call_deadline.reset(token)

    def deadline(self, default_s: float) -> float:
        """The deadline of the calls being made, or `default_s` from now outside `bounded`."""
        d = _call_deadline.get()
        return d if d is not None else self.clock.monotonic() + default_s
