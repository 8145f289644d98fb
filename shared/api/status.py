"""The gateway's status, read in one place: Redis, queue depth, the shared limiter, the breaker, the token and
the symbol master. /health, /stats, /metrics (as gauges) and the dashboard feed all show this one readout;
none of them reads these parts itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from shared.api.parts import Gateway
from shared.market.kinds import KINDS
from shared.observability.metrics import Metrics, cache_hit_ratio

BREAKER_GAUGE = {"closed": 0.0, "open": 1.0, "half-open": 2.0, "half_open": 2.0}


@dataclass(frozen=True)
class Status:
    redis: str  # "ok", or "down: <error type>"
    queue_depth: dict[str, int]  # pending symbols per kind ({} when Redis is down)
    limiter: dict[str, Any] | None  # the shared limiter's snapshot (None when Redis is down or not asked for)
    breaker: dict[str, Any]  # state, opened_at, failure_count, fail_max, retry_after_s
    token: dict[str, Any]  # state, age and expiry; never the token
    symbol_master: dict[str, Any] | None  # loaded, age, source (None when not asked for, or Redis is down)

    @property
    def redis_up(self) -> bool:
        return self.redis == "ok"

    @property
    def verdict(self) -> str:
        """ok (serving, breaker closed), degraded (serving, KIS refused for now) or down (no Redis)."""
        if not self.redis_up:
            return "down"
        return "ok" if self.breaker["state"] == "closed" else "degraded"


def read(gw: Gateway, *, limiter: bool = True, symbol_master: bool = False) -> Status:
    """The status now. The limiter's snapshot (a script run) and the symbol master's are read when asked for."""
    depth: dict[str, int] = {}
    snap: dict[str, Any] | None = None
    master: dict[str, Any] | None = None
    try:
        gw.redis.ping()
        depth = {k: gw.drain.pending[k].size() for k in KINDS}
        if limiter:
            snap = gw.limiter.snapshot()
        if symbol_master and gw.symbols is not None:
            master = gw.symbols.status()  # how old it is; "check: off" when never loaded
        state = "ok"
    except redis.RedisError as exc:
        state = f"down: {type(exc).__name__}"
        depth, snap, master = {}, None, None
    return Status(redis=state, queue_depth=depth, limiter=snap, breaker=gw.breaker.describe(),
                  token=gw.tokens.status(), symbol_master=master)


def gauges(gw: Gateway, st: Status, m: Metrics) -> dict[str, float]:
    """Every gauge of /metrics from one status read: fleet-wide ones from Redis, the cache hit ratio of `m`."""
    out: dict[str, float] = {"breaker_open": BREAKER_GAUGE.get(st.breaker["state"], 1.0),
                             "limiter_budget": float(gw.limiter.budget), "redis_up": 1.0 if st.redis_up else 0.0}
    for k, n in st.queue_depth.items():
        out[f'queue_depth{{kind="{k}"}}'] = float(n)
    if st.limiter is not None:
        out["limiter_effective_budget"] = float(st.limiter["effective_budget"])
        for cls, n in st.limiter["last_second"].items():
            if cls != "total":
                out[f'limiter_grants_last_second{{call_class="{cls}"}}'] = float(n)
        waits = st.limiter["waits"]
        out["limiter_waits_total"] = float(waits["waited"])
        out["limiter_wait_seconds_total"] = float(waits["wait_total_s"])
        out["limiter_wait_max_seconds"] = float(waits["wait_max_s"])
        out["limiter_timeouts_total"] = float(waits["timeouts"])
    ratio = cache_hit_ratio(m)
    if ratio is not None:
        out["cache_hit_ratio"] = ratio
    if "expires_in_s" in st.token:  # an unreadable store shows as a missing gauge, not a failed scrape
        out["token_expires_in_seconds"] = st.token["expires_in_s"]
    return out

