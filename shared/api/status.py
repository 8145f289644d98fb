"""The gateway's fleet-wide gauges for /metrics: queue depth, limiter, breaker and token, read now."""

from __future__ import annotations

import redis

from shared.api.parts import Gateway
from shared.market.kinds import KINDS
from shared.observability.metrics import cache_hit_ratio

BREAKER_GAUGE = {"closed": 0.0, "open": 1.0, "half-open": 2.0, "half_open": 2.0}


def gateway_gauges(gw: Gateway) -> dict[str, float]:
    """Every gauge of /metrics, read now: fleet-wide ones from Redis, this process's limiter waits."""
    gauges: dict[str, float] = {"breaker_open": BREAKER_GAUGE.get(gw.breaker.state, 1.0),
                                "limiter_budget": float(gw.limiter.budget)}
    try:
        for k in KINDS:
            gauges[f'queue_depth{{kind="{k}"}}'] = float(gw.drain.pending[k].size())
        snap = gw.limiter.snapshot()
        gauges["limiter_effective_budget"] = float(snap["effective_budget"])
        for cls, n in snap["last_second"].items():
            if cls != "total":
                gauges[f'limiter_grants_last_second{{call_class="{cls}"}}'] = float(n)
        waits = snap["waits"]
        gauges["limiter_waits_total"] = float(waits["waited"])
        gauges["limiter_wait_seconds_total"] = float(waits["wait_total_s"])
        gauges["limiter_wait_max_seconds"] = float(waits["wait_max_s"])
        gauges["limiter_timeouts_total"] = float(waits["timeouts"])
        gauges["redis_up"] = 1.0
    except redis.RedisError:
        gauges["redis_up"] = 0.0
    ratio = cache_hit_ratio(gw.metrics)
    if ratio is not None:
        gauges["cache_hit_ratio"] = ratio
    tok = gw.tokens.status()  # an unreadable store shows as a missing gauge, not a failed scrape
    if "expires_in_s" in tok:
        gauges["token_expires_in_seconds"] = tok["expires_in_s"]
    return gauges
