"""Retry policy for KIS calls: which failures are retried, how long to wait, when to give up.

Rate-limit, server and transport errors are retried with full-jitter exponential backoff, bounded by
attempts and total time. Token errors refresh the token once and retry once. Configuration and business
errors surface at once. Orders never come through here (they are sent exactly once by the caller).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings
from shared.kis.errors import KISAuthError, KISConfigError, KISError, KISRateLimitError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RetryPolicy:
    attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0
    total_s: float = 6.0
    clock: Clock = SYSTEM_CLOCK
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> RetryPolicy:
        return cls(settings.retry_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s,
                   settings.retry_total_s, clock)

    def delay(self, attempt: int, exc: KISError) -> float:
        """Full jitter; a rate-limit refusal waits at least into the next 1-second window."""
        cap = min(self.max_delay_s, self.base_delay_s * (2 ** attempt))
        wait = self.rng.uniform(0, cap)
        if isinstance(exc, KISRateLimitError):
            wait = max(wait, self.rng.uniform(0.2, 0.4))
        return wait

    def run(
        self,
        fn: Callable[[], T],
        *,
        refresh_token: Callable[[], None] | None = None,
        on_rate_limited: Callable[[], None] | None = None,
        deadline: float | None = None,
    ) -> T:
        """Call fn until it succeeds or the policy gives up; `deadline` is a clock.monotonic() instant."""
        start = self.clock.monotonic()
        stop_at = start + self.total_s
        if deadline is not None:
            stop_at = min(stop_at, deadline)
        token_refreshed = False
        attempt = 0
        while True:
            try:
                return fn()
            except KISAuthError:
                if refresh_token is None or token_refreshed:
                    raise
                token_refreshed = True
                refresh_token()
                continue  # the one retry after a refresh does not use up a backoff attempt
            except KISConfigError as exc:
                log.error("KIS configuration error, not retried: %s", exc)
                raise
            except KISError as exc:
                if not exc.retryable:
                    raise
                if isinstance(exc, KISRateLimitError) and on_rate_limited is not None:
                    on_rate_limited()
                attempt += 1
                if attempt >= self.attempts:
                    raise
                wait = self.delay(attempt, exc)
                if self.clock.monotonic() + wait >= stop_at:
                    raise
                log.info("retrying KIS call after %s (attempt %d, wait %.3fs)", exc.msg_cd or type(exc).__name__,
                         attempt, wait)
                self.clock.sleep(wait)
