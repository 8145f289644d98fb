"""Counters and histograms of every function process, read together.

Deployed, each function is its own process (and instances scale out), so the in-memory `Metrics` of the
function answering /stats, /metrics or /dashboard/feed holds only its own calls. After a request each process
publishes its counters and histograms to Redis (at most every `PUBLISH_EVERY_S`, kept `KEEP_S`); those routes
read the merged view of every live process. No secret is ever in a metric.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import cast

import redis

from shared.api.parts import Gateway
from shared.market import redis_keys
from shared.observability.metrics import Histogram, Metrics

log = logging.getLogger(__name__)
PUBLISH_EVERY_S = 2.0
KEEP_S = 300


def source_id(gw: Gateway) -> str:
    name = gw.function.name if gw.function is not None else "gateway"
    return f"{name}:{socket.gethostname()}:{os.getpid()}"


def _key(gw: Gateway, source: str = "*") -> str:
    return redis_keys.metrics_source(gw.settings.redis_prefix, source)


def dump(m: Metrics) -> str:
    with m._lock:
        counters = [[n, list(map(list, labels)), v] for (n, labels), v in m.counters.items()]
        hists = [[n, list(map(list, labels)), list(h.buckets), h.counts, h.total, h.n]
                 for (n, labels), h in m.histograms.items()]
    return json.dumps({"c": counters, "h": hists}, separators=(",", ":"))


def _merge(into: Metrics, raw: str | bytes) -> None:
    data = json.loads(raw)
    for name, labels, v in data.get("c", ()):
        into.counters[(name, tuple(tuple(x) for x in labels))] += float(v)
    for name, labels, buckets, counts, total, n in data.get("h", ()):
        key = (name, tuple(tuple(x) for x in labels))
        h = into.histograms.get(key)
        if h is None:
            h = into.histograms[key] = Histogram(tuple(buckets))
        if list(h.buckets) != list(buckets):
            continue
        h.counts = [a + b for a, b in zip(h.counts, counts, strict=True)]
        h.total += float(total)
        h.n += int(n)


def maybe_publish(gw: Gateway) -> None:
    """Publish this process's figures when the last publication is older than PUBLISH_EVERY_S; otherwise make
    sure they are published when it is due, so the last requests before a quiet spell are not left out (their
    figures would otherwise wait for the next request, which may come much later or never)."""
    now = time.monotonic()
    wait = gw.fleet_published_at + PUBLISH_EVERY_S - now
    if wait > 0:
        with _due_lock:
            if not gw.fleet_scheduled:
                gw.fleet_scheduled = True
                timer = threading.Timer(wait + 0.01, _publish_due, args=(gw,))
                timer.daemon = True
                timer.start()
        return
    gw.fleet_published_at = now
    try:
        gw.redis.set(_key(gw, source_id(gw)), dump(gw.metrics), ex=KEEP_S)
    except redis.RedisError:
        log.debug("metrics publication skipped: Redis unavailable")


_due_lock = threading.Lock()  # one scheduled publication per gateway, whichever thread asks


def _publish_due(gw: Gateway) -> None:
    with _due_lock:
        gw.fleet_scheduled = False
    maybe_publish(gw)


def view(gw: Gateway) -> Metrics:
    """Every live process's counters and histograms merged (this process's own, live)."""
    merged = Metrics()
    merged.started_at = gw.metrics.started_at
    _merge(merged, dump(gw.metrics))
    merged.gauges = dict(gw.metrics.gauges)
    own = _key(gw, source_id(gw))
    try:
        keys = [k for k in gw.redis.scan_iter(match=_key(gw), count=500)
                if (k.decode() if isinstance(k, bytes) else k) != own]
        for raw in cast(list[bytes | None], gw.redis.mget(keys)) if keys else []:
            if raw:
                try:
                    _merge(merged, raw)
                except (ValueError, TypeError, KeyError):
                    log.warning("skipped an unreadable metrics publication")
    except redis.RedisError:
        log.warning("fleet metrics unavailable (Redis); this process's only")
    return merged

