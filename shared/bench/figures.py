"""Figures of one benchmark phase: latency percentiles, throughput, KIS calls, limiter figures, budget use."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from shared.bench.load import STATUSES, LoadResult, RequestRecord

# tr_ids by call class, to show how the budget was shared in the mixed overload.
TR_CLASS = {"FHKST11300006": "quotes", "FHKST01010100": "quotes", "FHPUP02100000": "quotes",
            "FHKST01010400": "reference", "FHKST03010100": "reference", "CTPF1002R": "reference",
            "TTTC8434R": "orders", "VTTC8434R": "orders", "TTTC0012U": "orders", "TTTC0011U": "orders"}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_ms(records: Sequence[RequestRecord]) -> dict[str, float | None]:
    lat = [r.latency_s * 1000 for r in records if r.http == 200]
    return {f"p{q}": (None if (v := percentile(lat, q)) is None else round(v, 2)) for q in (50, 95, 99)}


def http_status(records: Sequence[RequestRecord]) -> dict[str, int]:
    """Answers by HTTP status ("0": no answer, a connection error or the client's timeout)."""
    out: dict[str, int] = {}
    for r in records:
        out[str(r.http)] = out.get(str(r.http), 0) + 1
    return dict(sorted(out.items()))


def sim_app_figures(sim_stats: dict[str, Any], app: str) -> dict[str, Any]:
    """One app key's share of the simulator's stats (calls granted, refused, its busiest second)."""
    by_app = sim_stats.get("by_app", {}).get(app, {"calls": 0, "refused": 0})
    return {"kis_calls": int(by_app["calls"]), "kis_refused": int(by_app["refused"]),
            "kis_refused_by_code": dict(sim_stats.get("refused", {})),
            "max_calls_in_any_1s": int(sim_stats.get("max_calls_in_any_1s_window", {}).get(app, 0)),
            "violations": int(sim_stats.get("violations", 0)), "kis_limit": int(sim_stats.get("limit_per_s", 0)),
            "dropped_while_down": int(sim_stats.get("dropped", 0)),
            "calls_by_class": _by_class(sim_stats.get("calls", {}))}


def _by_class(calls: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for tr, n in calls.items():
        cls = TR_CLASS.get(tr, "other")
        out[cls] = out.get(cls, 0) + int(n)
    return out


def phase_figures(results: Sequence[LoadResult], sim_stats: dict[str, Any], app: str, *, budget: int,
                  duration_s: float, batch: tuple[int, float] | None = None) -> dict[str, Any]:
    """Everything one phase (gateway or naive) measured, from the load results and the simulator."""
    records = [r for res in results for r in res.records]
    counts = dict.fromkeys(STATUSES, 0)
    for res in results:
        for k, v in res.symbol_counts().items():
            counts[k] += v
    symbol_requests = sum(counts.values())
    kis = sim_app_figures(sim_stats, app)
    served = counts["fresh"] + counts["stale"]
    out: dict[str, Any] = {
        "requests": len(records),
        "throughput_rps": round(len(records) / duration_s, 1) if duration_s else None,
        "symbol_requests": symbol_requests,
        "symbols": counts,
        "served_with_data_pct": round(100 * served / symbol_requests, 1) if symbol_requests else None,
        # Of the answers for symbols the stream had been answered with data before (a last-known copy exists).
        "with_copy_served_pct": _with_copy_pct(records),
        "fresh_symbols_per_s": round(counts["fresh"] / duration_s, 1) if duration_s else None,
        "fresh_pct": round(100 * counts["fresh"] / symbol_requests, 1) if symbol_requests else None,
        "http_errors": sum(1 for r in records if r.http == 0 or r.http >= 500),
        "http_status": http_status(records),
        "latency_ms": latency_ms(records),
        **kis,
        "kis_calls_per_symbol_request": round(kis["kis_calls"] / symbol_requests, 4) if symbol_requests else None,
    }
    if batch is not None:
        batches, symbols = batch
        out["batch_fill"] = round(symbols / batches, 2) if batches else None
        out["batches"] = batches
    per_spec = {}
    for res in results:
        per_spec[res.spec_name] = {"requests": res.requests, "latency_ms": latency_ms(res.records),
                                   "symbols": res.symbol_counts(), "http_status": http_status(res.records)}
    out["streams"] = per_spec
    return out


def _with_copy_pct(records: Sequence[RequestRecord]) -> float | None:
    had = sum(r.had_copy for r in records)
    return round(100 * (had - sum(r.had_copy_no_data for r in records)) / had, 2) if had else None


def window(records: Sequence[RequestRecord], since: float, until: float) -> list[RequestRecord]:
    return [r for r in records if since <= r.t < until]


def ratio(gateway: float | None, naive: float | None, higher_is_better: bool) -> float | None:
    """How many times better the gateway is than the naive one (None when undefined)."""
    if gateway is None or naive is None:
        return None
    if higher_is_better:
        return round(gateway / naive, 1) if naive > 0 else None
    return round(naive / gateway, 1) if gateway > 0 else None
