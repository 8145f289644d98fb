"""The four scenarios, each run through the gateway and then through the naive fleet with the same load."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import requests

from shared.bench.ceiling import ceiling, quote_only, storm300, waiters
from shared.bench.figures import latency_ms, phase_figures, window
from shared.bench.load import LoadProcess, LoadSpec
from shared.bench.naive import NaiveFleet
from shared.bench.probes import CallSampler, GatewayStats


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; `quick` shrinks durations, not the shape."""

    hit_clients: int = 16
    hit_s: float = 8.0
    storm_clients: int = 32
    storm_symbols: int = 40
    storm_rounds: int = 6
    overload_s: float = 30.0
    outage_healthy_s: float = 3.0
    outage_down_s: float = 8.0
    outage_recover_s: float = 8.0
    ceiling_connections: int = 32
    ceiling_s: float = 8.0
    waiters: int = 1000
    waiters_kis_latency_ms: int = 1500
    storm300_clients: int = 200
    storm300_symbols: int = 300

    @classmethod
    def quick(cls) -> Sizes:
        return cls(hit_clients=8, hit_s=2.0, storm_clients=16, storm_rounds=2, overload_s=5.0,
                   outage_healthy_s=1.5, outage_down_s=3.0, outage_recover_s=5.0, ceiling_s=2.0, waiters=300,
                   waiters_kis_latency_ms=1000)


@dataclass
class Bench:
    """What every scenario needs: the stack's simulator, the load process, both targets' URLs."""

    sim: Any
    load: LoadProcess
    gateway_url: str
    api_key: str
    gateway_app: str
    naive: NaiveFleet
    naive_app: str
    budget: int
    universe: list[str]
    sizes: Sizes
    screenshot_dir: Path | None = None
    quotes_url: str = ""  # the quotes function itself (the ceiling is measured without the local front)
    metrics_url: str = ""  # the metrics function itself (not routed by the front: scrapers call it directly)
    quotes_pid: int | None = None  # the quotes function's process (its workers are its children): CPU figures
    screenshot: dict[str, Any] | None = None
    stats: GatewayStats = field(init=False)
    _cursor: int = 0

    def __post_init__(self) -> None:
        self.stats = GatewayStats(self.gateway_url, self.api_key)

    def fresh_symbols(self, n: int) -> list[str]:
        """Symbols no earlier scenario asked for (cold in the cache)."""
        got = self.universe[self._cursor:self._cursor + n]
        self._cursor += n
        return got

    def warm(self, symbols: list[str]) -> None:
        for i in range(0, len(symbols), 100):
            requests.get(f"{self.gateway_url}/v1/quotes", params={"symbols": ",".join(symbols[i:i + 100]),
                                                                   "deadline_ms": "5000"},
                         headers={"X-API-Key": self.api_key}, timeout=10)

    def phase(self, specs: list[LoadSpec], target: str, duration_s: float) -> dict[str, Any]:
        """Run the specs against one target and measure it through the simulator's stats."""
        gateway = target == "gateway"
        urls = (self.gateway_url,) if gateway else self.naive.base_urls
        specs = [replace(s, base_urls=urls) for s in specs]
        app = self.gateway_app if gateway else self.naive_app
        self.sim.reset_stats()
        fill0 = self.stats.batch_fill() if gateway else None
        with CallSampler(self.sim, app) as sampler:
            results = self.load.run(specs)
        sim_stats = self.sim.stats()
        batch = None
        if fill0 is not None:
            fill1 = self.stats.batch_fill()
            batch = (fill1[0] - fill0[0], fill1[1] - fill0[1])
        fig = phase_figures(results, sim_stats, app, budget=self.budget, duration_s=duration_s, batch=batch)
        # Steady state: from 1 s after the load started to its planned end (late answers excluded).
        t0 = min(r.started_at for r in results)
        steady = sampler.rate(t0 + 1.0, t0 + max(s.duration_s for s in specs))
        fig["steady_kis_calls_per_s"] = None if steady is None else round(steady, 2)
        fig["budget_use_pct"] = None if steady is None else round(100 * steady / self.budget, 1)
        return fig

    def screenshot_later(self, delay_s: float) -> threading.Thread | None:
        """Screenshot the dashboard after `delay_s` (Chromium takes a core: never during a measured phase)."""
        out_dir = self.screenshot_dir
        if out_dir is None:
            return None
        from shared.bench.screenshot import dashboard_screenshot

        def take() -> None:
            time.sleep(delay_s)
            self.screenshot = dashboard_screenshot(self.gateway_url, self.api_key, out_dir)

        t = threading.Thread(target=take, daemon=True, name="dashboard-screenshot")
        t.start()
        return t

    def spec(self, name: str, **kw: Any) -> LoadSpec:
        return LoadSpec(name=name, base_urls=(), api_key=self.api_key, **kw)


def cache_hit(b: Bench) -> dict[str, Any]:
    """(a) A hot set every page asks for: answered from Redis."""
    hot = tuple(b.fresh_symbols(20))
    b.warm(list(hot))
    spec = b.spec("quotes", path="/v1/quotes", clients=b.sizes.hit_clients, duration_s=b.sizes.hit_s,
                  symbols=hot, per_request=5, mode="random")
    return {"gateway": b.phase([spec], "gateway", b.sizes.hit_s),
            "naive": b.phase([spec], "naive", b.sizes.hit_s),
            "shape": f"{b.sizes.hit_clients} closed-loop clients, 5 of 20 hot symbols per request"}


def miss_storm(b: Bench) -> dict[str, Any]:
    """(b) C clients ask at the same instant for overlapping halves of S symbols nobody fetched yet."""
    s = b.sizes
    out: dict[str, Any] = {"shape": f"{s.storm_clients} clients x {s.storm_symbols} overlapping cold symbols "
                                    f"(20 each), {s.storm_rounds} rounds"}
    gap = 1.5
    for target in ("gateway", "naive"):
        rounds = tuple(tuple(b.fresh_symbols(s.storm_symbols)) for _ in range(s.storm_rounds))
        spec = b.spec("storm", path="/v1/quotes", clients=s.storm_clients, duration_s=s.storm_rounds * gap + 3,
                      mode="storm", rounds=rounds, per_request=20, round_gap_s=gap, extra_query="deadline_ms=2000",
                      start_at=time.time() + 1.0)
        out[target] = b.phase([spec], target, s.storm_rounds * gap)
    return out


def overload(b: Bench) -> dict[str, Any]:
    """(c) Ten times the KIS budget, on every call class at once: screener pages sweeping the whole
    universe (100 symbols a request), daily prices of symbols nobody cached, and account balances."""
    d = b.sizes.overload_s
    n = b.budget
    # Offered KIS work, in calls/s: quotes 60 %, reference 20 %, orders 20 % of 10 x N.
    quote_rps = round(10 * n * 0.6 / 5, 1)  # 100 symbols = 5 batches of 20
    daily_rps = round(10 * n * 0.2, 1)
    balance_rps = round(10 * n * 0.2 / 2, 1)  # two balance pages per request
    universe = tuple(b.universe)
    specs = [
        b.spec("quotes", path="/v1/quotes", clients=48, duration_s=d, symbols=universe, per_request=100,
               mode="rotate", rate_per_s=quote_rps, timeout_s=5.0),
        b.spec("daily", path="/v1/daily-prices", clients=72, duration_s=d, symbols=tuple(reversed(universe)),
               per_request=1, mode="rotate", rate_per_s=daily_rps, timeout_s=5.0),
        b.spec("balance", path="/v1/account/balance", clients=36, duration_s=d, rate_per_s=balance_rps,
               timeout_s=5.0),
    ]
    offered = quote_rps * 5 + daily_rps + balance_rps * 2
    gw = b.phase(specs, "gateway", d)
    naive = b.phase(specs, "naive", d)
    # Offered work is counted as a batching gateway without a cache would need it (20 symbols a call).
    return {"gateway": gw, "naive": naive, "offered_kis_calls_per_s": offered, "duration_s": d,
            "offered_x_budget": round(offered / n, 1),
            "shape": f"{quote_rps} quote req/s x 100 symbols, {daily_rps} daily req/s, {balance_rps} balance req/s "
                     f"for {d:.0f} s"}


def outage(b: Bench) -> dict[str, Any]:
    """(d) KIS goes down under steady load, then comes back: stale answers, breaker, recovery."""
    s = b.sizes
    hot = tuple(b.fresh_symbols(50))
    b.warm(list(hot))
    total = s.outage_healthy_s + s.outage_down_s + s.outage_recover_s
    spec = b.spec("quotes", path="/v1/quotes", clients=8, duration_s=total, symbols=hot, per_request=5,
                  mode="random", rate_per_s=40.0)
    out: dict[str, Any] = {"shape": f"40 req/s x 5 of 50 symbols; KIS down for {s.outage_down_s:.0f} s"}
    for target in ("gateway", "naive"):
        out[target] = _outage_phase(b, spec, target, total)
    return out


def _outage_phase(b: Bench, spec: LoadSpec, target: str, total: float) -> dict[str, Any]:
    s = b.sizes
    gateway = target == "gateway"
    spec = replace(spec, base_urls=(b.gateway_url,) if gateway else b.naive.base_urls, start_at=time.time() + 0.5)
    b.sim.reset_stats()
    future = b.load.submit([spec])
    t0 = spec.start_at
    events: dict[str, float | None] = {"breaker_open_after_s": None, "breaker_closed_after_s": None}
    _sleep_until(t0 + s.outage_healthy_s)
    b.sim.set_faults(down=True)
    down_at = time.time()
    while time.time() < down_at + s.outage_down_s:
        if gateway and events["breaker_open_after_s"] is None and b.stats.breaker() == "open":
            events["breaker_open_after_s"] = round(time.time() - down_at, 2)
        time.sleep(0.1)
    b.sim.set_faults(down=False)
    up_at = time.time()
    while gateway and time.time() < t0 + total:
        if b.stats.breaker() == "closed":
            events["breaker_closed_after_s"] = round(time.time() - up_at, 2)
            break
        time.sleep(0.1)
    result = future.result(timeout=total + 60)[0]
    sim_stats = b.sim.stats()
    recs = result.records
    d0, d1 = down_at - result.started_at, up_at - result.started_at
    during = window(recs, d0, d1)
    after = window(recs, d1, float("inf"))
    first_fresh = next((r.t + r.latency_s for r in after if r.http == 200 and r.counts[0] == sum(r.counts)), None)
    fig = phase_figures([result], sim_stats, b.gateway_app if gateway else b.naive_app, budget=b.budget,
                        duration_s=total)
    fig["outage"] = {
        "served_with_data_pct": _served_pct(during), "fresh_pct": _fresh_pct(during),
        "stale_max_age_s": round(max((r.stale_age_s for r in during), default=0.0), 1),
        "latency_ms": latency_ms(during), "kis_attempts_while_down": int(sim_stats.get("dropped", 0)),
        "recovered_after_s": None if first_fresh is None else round(first_fresh - d1, 2), **events}
    return fig


def _served_pct(records: list[Any]) -> float | None:
    total = sum(sum(r.counts) for r in records)
    return round(100 * sum(r.counts[0] + r.counts[1] for r in records) / total, 1) if total else None


def _fresh_pct(records: list[Any]) -> float | None:
    total = sum(sum(r.counts) for r in records)
    return round(100 * sum(r.counts[0] for r in records) / total, 1) if total else None


def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def dashboard_demo(b: Bench) -> dict[str, Any] | None:
    """After the measured scenarios: a few seconds of screener traffic, screenshot taken meanwhile."""
    if b.screenshot_dir is None:
        return None
    spec = replace(b.spec("demo", path="/v1/quotes", clients=8, duration_s=9.0, symbols=tuple(b.universe),
                          per_request=100, mode="rotate", rate_per_s=2.5), base_urls=(b.gateway_url,))
    running = b.load.submit([spec])
    shot = b.screenshot_later(2.0)
    if shot is not None:
        shot.join(90)
    running.result(timeout=60)
    return b.screenshot


SCENARIOS = {"ceiling": ceiling, "cache_hit": cache_hit, "miss_storm": miss_storm, "storm300": storm300,
             "waiters": waiters, "overload": overload, "quote_only": quote_only, "outage": outage}
