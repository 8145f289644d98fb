"""In-process counters and latency histograms, shown as /stats JSON and /metrics Prometheus text."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Any

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


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
        if not self.n:
            return None
        target = q * self.n
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= target:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return None


class Metrics:
    """Thread-safe; one instance per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.histograms: dict[tuple[str, tuple[tuple[str, str], ...]], Histogram] = {}

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self.counters[key] += value

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            h = self.histograms.get(key)
            if h is None:
                h = self.histograms[key] = Histogram()
            h.observe(value)

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.counters.items() if n == name)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counters: dict[str, Any] = defaultdict(dict)
            for (name, labels), v in sorted(self.counters.items()):
                counters[name][",".join(f"{k}={x}" for k, x in labels) or "total"] = v
            hist = {}
            for (name, labels), h in sorted(self.histograms.items()):
                label = ",".join(f"{k}={x}" for k, x in labels) or "all"
                hist.setdefault(name, {})[label] = {
                    "count": h.n, "sum_s": round(h.total, 6),
                    "p50_s": h.quantile(0.5), "p95_s": h.quantile(0.95), "p99_s": h.quantile(0.99)}
        return {"counters": dict(counters), "latency": hist}

    def prometheus(self, gauges: dict[str, float] | None = None) -> str:
        lines: list[str] = []
        with self._lock:
            for (name, labels), v in sorted(self.counters.items()):
                lines.append(f"kisgw_{name}{_labels(labels)} {v:g}")
            for (name, labels), h in sorted(self.histograms.items()):
                cum = 0
                for b, c in zip(h.buckets, h.counts, strict=False):
                    cum += c
                    lines.append(f"kisgw_{name}_bucket{_labels(labels + (('le', f'{b:g}'),))} {cum}")
                lines.append(f"kisgw_{name}_bucket{_labels(labels + (('le', '+Inf'),))} {h.n}")
                lines.append(f"kisgw_{name}_sum{_labels(labels)} {h.total:g}")
                lines.append(f"kisgw_{name}_count{_labels(labels)} {h.n}")
        for name, v in sorted((gauges or {}).items()):
            lines.append(f"kisgw_{name} {v:g}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{str(v).replace(chr(34), "")}"' for k, v in labels)
    return "{" + inner + "}"
