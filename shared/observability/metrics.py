"""In-process counters, gauges and histograms, shown as /stats JSON and /metrics Prometheus text.

Counters and histograms live per process (each function instance has its own); the fleet-wide figures
(grants in the last second, queue depth, breaker state) are read from Redis at scrape time by
`shared.api.status` (one status read), so every instance reports the same fleet view next to its own counters.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Symbols per KIS batch call (KIS allows at most 30 per multi-quote).
FILL_BUCKETS = (1.0, 2.0, 5.0, 10.0, 15.0, 19.0, 20.0, 25.0, 30.0)
# Histograms whose values are not seconds need their own buckets.
BUCKETS_BY_NAME: dict[str, tuple[float, ...]] = {"batch_fill": FILL_BUCKETS}

HELP: dict[str, str] = {
    "kis_calls_total": "KIS REST calls by tr_id and outcome (ok, msg_cd or http_<status>)",
    "kis_call_seconds": "duration of one KIS REST call",
    "request_seconds": "time to answer one read request",
    "symbol_results_total": "symbols answered, by kind and status (fresh, stale, pending, error)",
    "batch_fill": "symbols per KIS batch call",
    "drain_runs_total": "drain runs by kind",
    "drain_batches_total": "KIS batches made by drains",
    "drain_symbols_total": "symbols fetched by drains",
    "drain_failed_total": "symbols a drain could not fetch",
    "limiter_wait_seconds": "time a KIS call waited for its rate grant",
    "alerts_total": "alerts sent, by event",
    "breaker_transitions_total": "circuit breaker transitions, by new state",
    "breaker_open": "1 while the shared circuit breaker is open (2 half-open)",
    "queue_depth": "symbols pending a KIS fetch, by kind (fleet-wide)",
    "limiter_budget": "configured KIS calls per second of the app key",
    "limiter_effective_budget": "KIS calls per second allowed now (lower after rate-limit bursts)",
    "limiter_grants_last_second": "KIS call grants in the last second, fleet-wide, by call class",
    "limiter_waits_total": "rate grants that had to wait (this process)",
    "limiter_wait_seconds_total": "total time spent waiting for rate grants (this process)",
    "limiter_wait_max_seconds": "longest wait for a rate grant (this process)",
    "limiter_timeouts_total": "rate grants given up at the caller's deadline (this process)",
    "cache_hit_ratio": "share of quote symbols answered fresh (this process)",
    "token_expires_in_seconds": "seconds until the shared KIS token expires",
    "redis_up": "0 when Redis did not answer the scrape",
}


class Histogram:
    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.total += v
        self.n += 1

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (Prometheus-style resolution)."""
        if not self.n:
            return None
        target = q * self.n
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return None

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


LabelKey = tuple[str, tuple[tuple[str, str], ...]]


def key_of(name: str, **labels: str) -> LabelKey:
    """A figure's key: its name and its labels in order."""
    return (name, tuple(sorted(labels.items())))


class Metrics:
    """Thread-safe; one instance per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_at = time.time()
        self.counters: dict[LabelKey, float] = defaultdict(float)
        self.gauges: dict[LabelKey, float] = {}
        self.histograms: dict[LabelKey, Histogram] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self.add(key_of(name, **labels), value)

    def add(self, key: LabelKey, value: float = 1.0) -> None:
        """`inc` by a key made once (`key_of`): a figure counted on every request skips making its key."""
        with self._lock:
            self.counters[key] += value

    def set_gauge(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self.gauges[key_of(name, **labels)] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        self.observe_at(key_of(name, **labels), value)

    def observe_at(self, key: LabelKey, value: float, adds: Iterable[tuple[LabelKey, float]] = ()) -> None:
        """`observe` by a key made once (`key_of`); `adds`: counters to `add` to at the same time (one lock for
        the figures of a request)."""
        with self._lock:
            h = self.histograms.get(key)
            if h is None:
                h = self.histograms[key] = Histogram(BUCKETS_BY_NAME.get(key[0], LATENCY_BUCKETS_S))
            h.observe(value)
            counters = self.counters
            for k, n in adds:
                counters[k] += n

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get(key_of(name, **labels), 0.0)

    def total(self, name: str, **match: str) -> float:
        """Sum of a counter over every label set that contains `match`."""
        want = set(match.items())
        with self._lock:
            return sum(v for (n, labels), v in self.counters.items() if n == name and want <= set(labels))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """A counter summed per value of one label, e.g. KIS calls per outcome."""
        out: dict[str, float] = defaultdict(float)
        with self._lock:
            for (n, labels), v in self.counters.items():
                if n == name:
                    out[dict(labels).get(label, "")] += v
        return dict(out)

    def histogram(self, name: str, **labels: str) -> Histogram | None:
        """One label set's histogram, or all of a name's label sets merged when no labels are given."""
        with self._lock:
            if labels:
                return self.histograms.get(key_of(name, **labels))
            found = [h for (n, _), h in self.histograms.items() if n == name]
            if not found:
                return None
            merged = Histogram(found[0].buckets)
            for h in found:
                if h.buckets != merged.buckets:
                    continue
                merged.counts = [a + b for a, b in zip(merged.counts, h.counts, strict=True)]
                merged.total += h.total
                merged.n += h.n
            return merged

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counters: dict[str, Any] = defaultdict(dict)
            for (name, labels), v in sorted(self.counters.items()):
                counters[name][",".join(f"{k}={x}" for k, x in labels) or "total"] = v
            gauges: dict[str, Any] = defaultdict(dict)
            for (name, labels), v in sorted(self.gauges.items()):
                gauges[name][",".join(f"{k}={x}" for k, x in labels) or "value"] = v
            hist: dict[str, Any] = {}
            for (name, labels), h in sorted(self.histograms.items()):
                label = ",".join(f"{k}={x}" for k, x in labels) or "all"
                mean = h.mean()
                hist.setdefault(name, {})[label] = {
                    "count": h.n, "sum_s": round(h.total, 6), "mean": None if mean is None else round(mean, 6),
                    "p50_s": h.quantile(0.5), "p95_s": h.quantile(0.95), "p99_s": h.quantile(0.99)}
        return {"counters": dict(counters), "gauges": dict(gauges), "latency": hist,
                "uptime_s": round(time.time() - self.started_at, 1)}

    def prometheus(self, gauges: dict[str, float] | None = None) -> str:
        """Prometheus text format 0.0.4. `gauges` are read at scrape time; their keys may carry labels
        (`queue_depth{kind="quote"}`)."""
        lines: list[str] = []
        typed: set[str] = set()

        def head(name: str, kind: str) -> None:
            if name in typed:
                return
            typed.add(name)
            if name in HELP:
                lines.append(f"# HELP kisgw_{name} {HELP[name]}")
            lines.append(f"# TYPE kisgw_{name} {kind}")

        with self._lock:
            for (name, labels), v in sorted(self.counters.items()):
                head(name, "counter")
                lines.append(f"kisgw_{name}{_labels(labels)} {v:g}")
            for (name, labels), h in sorted(self.histograms.items()):
                head(name, "histogram")
                cum = 0
                for b, c in zip(h.buckets, h.counts, strict=False):
                    cum += c
                    lines.append(f"kisgw_{name}_bucket{_labels(labels + (('le', f'{b:g}'),))} {cum}")
                lines.append(f"kisgw_{name}_bucket{_labels(labels + (('le', '+Inf'),))} {h.n}")
                lines.append(f"kisgw_{name}_sum{_labels(labels)} {h.total:g}")
                lines.append(f"kisgw_{name}_count{_labels(labels)} {h.n}")
            own = {f"{name}{_labels(labels)}": v for (name, labels), v in self.gauges.items()}
        for key, v in sorted({**own, **(gauges or {})}.items()):
            head(key.split("{", 1)[0], "gauge")
            lines.append(f"kisgw_{key} {v:g}")
        return "\n".join(lines) + "\n"


def cache_hit_ratio(metrics: Metrics, kind: str = "quote") -> float | None:
    """Share of symbols answered `fresh` (a cache hit, or a miss fetched within the deadline)."""
    total = metrics.total("symbol_results_total", kind=kind)
    return round(metrics.value("symbol_results_total", kind=kind, status="fresh") / total, 4) if total else None


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
