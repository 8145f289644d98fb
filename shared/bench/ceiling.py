"""Scenarios measured against the framework's ceiling, with the efficient generator (`fastload`):

- ceiling: a trivial functions-framework ASGI function and the gateway's cache hits (1 and 5 warm symbols),
  same server settings, same generator, back to back; the gateway's ratio to the ceiling;
- waiters: a thousand requests waiting at once on one instance (KIS made slow), with cache-hit latency
  measured beside them;
- storm300: 200 clients at the same instant over 300 cold symbols;
- quote_only: quotes alone at 10x the budget with an order now and then (orders' priority, budget use).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlparse

import requests

from shared.api.fleet import PUBLISH_EVERY_S
from shared.bench.fastload import closed_loop, percentiles, run_apart, run_jobs, wrk_available
from shared.bench.probes import ROOT, CallSampler, children, cpu_s

MULTI = "FHKST11300006"


def _start_trivial(port: int, workers: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target", "trivial", "--asgi",
         "--source", str(ROOT / "shared" / "bench" / "trivial.py"), "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "WORKERS": workers, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        time.sleep(0.1)
    _stop(proc)
    raise RuntimeError("the trivial function did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    mid = len(known) // 2
    return known[mid] if len(known) % 2 else round((known[mid - 1] + known[mid]) / 2, 3)


def _merged(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's rounds as one run: requests and errors summed, req/s their mean (rounds are equally long),
    each latency percentile the median of the rounds'."""
    out: dict[str, Any] = {"name": segments[0].get("name", ""), "generator": segments[0].get("generator"),
                           "requests": sum(r.get("requests", 0) for r in segments)}
    rps = [r["rps"] for r in segments if r.get("rps") is not None]
    out["rps"] = round(sum(rps) / len(rps), 2) if rps else None
    out["latency_ms"] = {q: _median([(r.get("latency_ms") or {}).get(q) for r in segments])
                         for q in ("p50", "p95", "p99", "max")}
    out["cpu_us_per_request"] = _median([r.get("cpu_us_per_request") for r in segments])
    for key in ("non_2xx", "errors", "http_errors"):
        out[key] = sum(r.get(key, 0) for r in segments)
    http: dict[str, int] = {}
    for r in segments:
        for code, n in (r.get("http") or {}).items():
            http[code] = http.get(code, 0) + n
    if http:
        out["http"] = http
    out["ok_answers"] = all(_ok_answers(r) for r in segments)
    return out


def _ok_answers(r: dict[str, Any]) -> bool:
    """Every answer of a run was a 200 (a ratio of error answers to the ceiling measures nothing)."""
    http = r.get("http")
    bad = r.get("non_2xx", 0) if http is None else sum(n for code, n in http.items() if code != "200")
    return bool(r.get("requests")) and not bad and not r.get("errors")


def ceiling(b: Any) -> dict[str, Any]:
    from shared.localstack import free_port

    s = b.sizes
    hot = b.fresh_symbols(5)
    b.warm(hot)
    headers = {"X-API-Key": b.api_key}
    port = free_port()
    trivial = _start_trivial(port, os.environ.get("WORKERS", "1"))
    out: dict[str, Any] = {"generator": "wrk -t1" if wrk_available() else "asyncio client (own process)",
                           "connections": s.ceiling_connections, "duration_s": s.ceiling_s}
    # The quotes function itself, like the trivial one (the local front would add a proxy hop to one side only).
    # With an explicit path: wrk drops the query of a URL that has none ("http://host:port?symbols=..." is sent
    # as "GET /"), which measured 400 answers instead of cache hits.
    quotes = f"{b.quotes_url.rstrip('/')}/" if b.quotes_url else f"{b.gateway_url}/v1/quotes"
    out["quotes_url"] = "quotes function" if b.quotes_url else "front"
    # The trivial function gets the same request as the one-symbol hit (query and API key): what the framework
    # does with a request's line and headers is the ceiling's, and the ratio is the gateway's own work.
    urls = {"trivial": (f"http://127.0.0.1:{port}/?symbols={hot[0]}", headers),
            "gateway_1": (f"{quotes}?symbols={hot[0]}", headers),
            "gateway_5": (f"{quotes}?symbols={','.join(hot)}", headers)}
    # Interleaved rounds, each target once a round: the machine's speed drifts within a run (the trivial function
    # alone measured 5,750-7,550 req/s in back-to-back runs), and targets measured a whole phase apart compared
    # that drift as much as the targets. Each ratio is taken within a round; the median of the rounds is given.
    rounds = max(1, int(s.ceiling_s // 2))
    segment_s = s.ceiling_s / rounds
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in urls}
    # The CPU time each target's processes spend per request: what the server's own work costs. Beside the req/s
    # ratio it tells a server bound by its CPU (the two ratios agree) from one kept waiting for a core (they
    # part); measured, they agree within a round and both move between rounds with the machine.
    trivial_pids = [trivial.pid, *children(trivial.pid)]
    quotes_pids = [b.quotes_pid, *children(b.quotes_pid)] if b.quotes_pid and b.quotes_url else []
    pids = {"trivial": trivial_pids, "gateway_1": quotes_pids, "gateway_5": quotes_pids}
    try:
        for _ in range(rounds):
            for k, (url, hdrs) in urls.items():
                # Right after a warm-up of its own: its symbols' copies are fresh and their refresh ahead is
                # running when it starts (a copy warmed a segment earlier would have run out, and the first
                # requests would measure a KIS fetch, not a hit).
                closed_loop(url, hdrs, s.ceiling_connections, 1.0)
                used = cpu_s(pids[k])
                seg = closed_loop(url, hdrs, s.ceiling_connections, segment_s, k)
                used = cpu_s(pids[k]) - used
                if pids[k] and seg.get("requests"):
                    seg["cpu_us_per_request"] = round(used / seg["requests"] * 1e6, 1)
                runs[k].append(seg)
    finally:
        _stop(trivial)
    out["rounds"] = rounds
    for k, segs in runs.items():
        out[k] = _merged(segs)
    for k in ("gateway_1", "gateway_5"):
        pairs = list(zip(runs[k], runs["trivial"], strict=True))
        rps = [_ratio(g.get("rps"), t.get("rps")) for g, t in pairs]
        p99 = [_ratio(g["latency_ms"].get("p99"), t["latency_ms"].get("p99")) for g, t in pairs]
        # The trivial function's CPU per request to the gateway's: the req/s ratio the CPU alone would allow.
        cpu = [_ratio(t.get("cpu_us_per_request"), g.get("cpu_us_per_request")) for g, t in pairs]
        out[k]["rps_ratio"] = _median(rps)
        out[k]["p99_ratio"] = _median(p99)
        out[k]["cpu_ratio"] = _median(cpu)
        out[k]["rps_ratio_rounds"], out[k]["p99_ratio_rounds"], out[k]["cpu_ratio_rounds"] = rps, p99, cpu
    return out


def waiters(b: Any) -> dict[str, Any]:
    """`waiters` requests for cold symbols wait together while KIS answers slowly; cache hits run beside."""
    s = b.sizes
    cold = b.fresh_symbols(40)
    hot = b.fresh_symbols(1)
    # One instance: the quotes function itself, as in the ceiling runs (the local front is a proxy in the
    # benchmark's own process, and would measure its thousand connections, not the instance's).
    if b.quotes_url:
        u, base = urlparse(b.quotes_url), "/"
    else:
        u, base = urlparse(b.gateway_url), "/v1/quotes"
    headers = {"X-API-Key": b.api_key}
    # The longest deadline a request may ask for (GATEWAY_MAX_DEADLINE_MS's default; more is a 400).
    paths = [f"{base}?symbols={cold[i % len(cold)]}&deadline_ms=5000" for i in range(s.waiters)]
    # The hot symbol is fetched just before, while KIS is still quick: its copy is fresh from here, and the hits
    # below run inside its freshness window (a copy fetched with KIS slow would be written later than the
    # moment the probe is timed from, and could run out while the probe runs).
    b.warm(hot)
    b.sim.set_faults(latency_ms=s.waiters_kis_latency_ms)
    try:
        wait_job = {"kind": "oneshot", "name": "waiters", "host": u.hostname, "port": u.port, "paths": paths,
                    "headers": headers, "timeout_s": 20, "count_symbols": True, "timeline": True}
        # Cache hits beside them, read while the hot symbol's copy is fresh, so each read is a hit. From a
        # generator process of its own: the waiters' client, busy with its thousand connections, must not delay
        # the probe's. It runs from their arrival for as long as KIS takes to answer them (the hot copy stays
        # fresh that long); `held` keeps the hits sent while every waiter had been sent and none answered yet.
        probe = {"kind": "closed", "name": "hits", "host": u.hostname, "port": u.port, "delay_s": 0.1,
                 "paths": [f"{base}?symbols={hot[0]}"], "headers": headers, "connections": 4,
                 "duration_s": s.waiters_kis_latency_ms / 1000, "count_symbols": True, "timeline": True}
        (got_waiters,), (got_hits,) = run_apart([[wait_job], [probe]], timeout_s=120)
    finally:
        b.sim.set_faults(latency_ms=0)
    held = hits_while_held(got_waiters, got_hits)
    for r in (got_waiters, got_hits):
        r.pop("timeline", None)
    return {"waiters": got_waiters, "hits_meanwhile": got_hits, "hits_while_held": held,
            "kis_latency_ms": s.waiters_kis_latency_ms,
            "wanted": s.waiters, "target": "quotes function" if b.quotes_url else "front",
            "shape": f"{s.waiters} requests at once over {len(cold)} cold symbols, KIS answering in "
                     f"{s.waiters_kis_latency_ms} ms; 4 clients reading a warm symbol meanwhile"}


def hits_while_held(waiters: dict[str, Any], hits: dict[str, Any]) -> dict[str, Any]:
    """The hits sent while every waiter was held: after the last waiter's request was sent and before the first
    waiter's answer came (both clients stamp one monotonic clock). Hits sent during the thousand requests'
    arrival measure that burst of work (accepting, parsing, admitting each), not the holding."""
    w0, h0 = waiters.get("started_mono"), hits.get("started_mono")
    wt, ht = waiters.get("timeline") or [], hits.get("timeline") or []
    if w0 is None or h0 is None or not wt or not ht:
        return {"requests": 0, "window_s": None, "latency_ms": percentiles([])}
    all_sent = w0 + max(sent for _, _, _, sent in wt)
    first_answer = w0 + min(t + ms / 1000 for t, ms, _, _ in wt)
    inside = [ms / 1000 for t, ms, _, _ in ht if all_sent <= h0 + t and h0 + t + ms / 1000 <= first_answer]
    return {"requests": len(inside), "window_s": round(max(0.0, first_answer - all_sent), 3),
            "arrival_s": round(all_sent - w0, 3), "latency_ms": percentiles(inside)}


def quiet(b: Any, still_s: float = 1.5, max_s: float = 30.0) -> float:
    """Wait until the gateway has made no KIS call for `still_s` (an earlier scenario's backlog fetched or
    dropped), at most `max_s`; returns the seconds waited. A storm measured on top of another scenario's
    backlog would measure that backlog."""
    started = time.monotonic()
    last = None
    still_since = started
    while time.monotonic() - started < max_s:
        calls = int(b.sim.stats().get("by_app", {}).get(b.gateway_app, {}).get("calls", 0))
        now = time.monotonic()
        if calls != last:
            last, still_since = calls, now
        elif now - still_since >= still_s:
            break
        time.sleep(0.1)
    return round(time.monotonic() - started, 1)


def storm300(b: Any) -> dict[str, Any]:
    s = b.sizes
    waited = quiet(b)
    symbols = b.fresh_symbols(s.storm300_symbols)
    rng = random.Random(5)
    u = urlparse(b.gateway_url)
    paths = [f"/v1/quotes?symbols={','.join(rng.sample(symbols, 25))}&deadline_ms=3000"
             for _ in range(s.storm300_clients)]
    b.sim.reset_stats()
    fill0 = b.stats.batch_fill()
    t0 = time.time()
    with CallSampler(b.sim, b.gateway_app, every_s=0.1) as sampler:
        got = run_jobs([{"kind": "oneshot", "name": "storm", "host": u.hostname, "port": u.port, "paths": paths,
                         "headers": {"X-API-Key": b.api_key}, "timeout_s": 20, "count_symbols": True}])[0]
    # When KIS calls happened, seconds after the load was started (its process start included).
    timeline = [(round(t - t0, 2), n) for t, n in sampler.samples]
    firsts = [t for t, n in timeline if n > 0]
    stats = b.sim.stats()
    fill1 = b.stats.batch_fill()
    gm = b.stats.stats().get("metrics", {})
    calls = {"counters": gm.get("counters", {}), "latency": gm.get("latency", {})}
    total = sum((got["symbols"] or {}).values())
    batches = fill1[0] - fill0[0]
    last = max((n for _, n in timeline), default=0)
    return {"storm": got, "batches": batches, "gateway_metrics": calls,
            "first_kis_call_after_s": firsts[0] if firsts else None,
            "last_kis_call_after_s": next((t for t, n in timeline if n == last), None),
            # From the gateway's own metrics, which each process publishes every few seconds: may lag the storm.
            "batch_fill": round((fill1[1] - fill0[1]) / batches, 1) if batches else None,
            # From the simulator: every symbol was cold, so each answered fresh took a place in some call.
            "symbols": len(symbols),
            "symbols_per_call": round(len(symbols) / stats["calls"][MULTI], 1) if stats["calls"].get(MULTI) else None,
            "multi_quote_calls": stats["calls"].get(MULTI, 0), "violations": stats["violations"],
            "refused": stats.get("refused", {}),
            "fresh_pct": round(100 * got["symbols"]["fresh"] / total, 1) if total else None,
            "waited_for_quiet_s": waited,
            "kis_calls_timeline": [(t, n) for i, (t, n) in enumerate(timeline)
                                   if i == 0 or n != timeline[i - 1][1]],
            "shape": f"{s.storm300_clients} clients at once, 25 of {s.storm300_symbols} cold symbols each"}


# ---- printing and targets ----------------------------------------------------------------------------

def table(results: dict[str, Any]) -> str:
    sc = results.get("scenarios", {})
    lines: list[str] = []
    c = sc.get("ceiling")
    if c:
        rounds = c.get("rounds", 1)
        lines.append(f"against the ceiling ({c['generator']}, {c['connections']} connections, {c['duration_s']} s "
                     f"each in {rounds} interleaved rounds; req/s the mean, latency and ratios the median of the "
                     f"rounds)")
        lines.append(f"  {'target':<32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s ratio':>12} "
                     f"{'p99 ratio':>10} {'CPU us/req':>11} {'CPU ratio':>10}")
        for k, label in (("trivial", "trivial functions-framework ASGI"), ("gateway_1", "gateway, 1 warm symbol"),
                         ("gateway_5", "gateway, 5 warm symbols")):
            r = c[k]
            lat = r["latency_ms"]
            cpu = r.get("cpu_us_per_request")
            lines.append(f"  {label:<32} {r.get('rps') or 0:>9,.0f} {lat.get('p50') or 0:>8.1f} "
                         f"{lat.get('p99') or 0:>8.1f} {r.get('rps_ratio') or 1:>12.2f} "
                         f"{r.get('p99_ratio') or 1:>10.2f} {'-' if cpu is None else f'{cpu:,.0f}':>11} "
                         f"{r.get('cpu_ratio') or (1 if k == 'trivial' else 0):>10.2f}")
    w = sc.get("waiters")
    if w:
        wr, hr, held = w["waiters"], w["hits_meanwhile"], w.get("hits_while_held") or {}
        lines.append(f"waiters: {wr['requests']} answered of {w['wanted']}, HTTP errors {wr['http_errors']}, "
                     f"symbols {wr['symbols']}, p50 {wr['latency_ms']['p50']} ms, p99 {wr['latency_ms']['p99']} ms; "
                     f"hits from their arrival on {hr['rps']} req/s, p50 {hr['latency_ms']['p50']} ms, "
                     f"p99 {hr['latency_ms']['p99']} ms; while all {w['wanted']} were held "
                     f"({held.get('window_s')} s, after {held.get('arrival_s')} s of arrival) {held.get('requests')} "
                     f"hits, p50 {(held.get('latency_ms') or {}).get('p50')} ms, "
                     f"p99 {(held.get('latency_ms') or {}).get('p99')} ms")
    q = sc.get("quote_only")
    if q:
        lines.append(f"quote-only overload: quote calls/s {q['quote_calls_per_s']} (budget use "
                     f"{q['gateway'].get('budget_use_pct')} %, fill {q['gateway'].get('batch_fill')}), orders granted "
                     f"within 100 ms: {q['order_grants_within_100ms']} of {q['order_grants']}, HTTP errors "
                     f"{q['gateway'].get('http_errors')}")
    st = sc.get("storm300")
    if st:
        g = st["storm"]
        lines.append(f"storm 200x300: fresh {st['fresh_pct']} %, p50 {g['latency_ms']['p50']} ms, "
                     f"p99 {g['latency_ms']['p99']} ms, multi-quote calls {st['multi_quote_calls']} "
                     f"(all {st.get('symbols', 300)} cold symbols fetched fresh: "
                     f"{st.get('symbols_per_call')} a call), "
                     f"violations {st['violations']}, HTTP errors {g['http_errors']}")
    return "\n".join(lines)


def b_scale(results: dict[str, Any]) -> float:
    """The targets speak of a 17 calls/s budget; other budgets scale them."""
    return float(results.get("budget") or 17) / 17


def checks(results: dict[str, Any]) -> list[tuple[str, bool | None]]:
    sc = results.get("scenarios", {})
    out: list[tuple[str, bool | None]] = []
    c = sc.get("ceiling")
    if c:
        g = c["gateway_1"]
        out.append(("ceiling runs: every answer a 200 (trivial, 1 and 5 warm symbols)",
                    all(c[k].get("ok_answers", True) for k in ("trivial", "gateway_1", "gateway_5"))))
        out.append((f"cache hit req/s >= 80 % of the trivial ASGI function's (got {g.get('rps_ratio')})",
                    (g.get("rps_ratio") or 0) >= 0.8))
        out.append((f"cache hit p99 <= 2x the trivial function's (got {g.get('p99_ratio')}x)",
                    g.get("p99_ratio") is not None and g["p99_ratio"] <= 2.0))
        out.append((f"cache hit CPU per request: the trivial function's is {g.get('cpu_ratio')} of the gateway's "
                    f"(per round {g.get('cpu_ratio_rounds')}; req/s ratios per round {g.get('rps_ratio_rounds')})",
                    None))
    w = sc.get("waiters")
    if w:
        wr, hr = w["waiters"], w["hits_meanwhile"]
        answered = (wr.get("http") or {}).get("200", 0)
        out.append((f"one instance held {w['wanted']} waiting requests: {answered} answered 200, symbols "
                    f"{wr.get('symbols')}", wr["http_errors"] == 0 and answered == w["wanted"]))
        hits_fresh = (hr.get("symbols") or {}).get("fresh", 0)
        out.append((f"reads beside them were cache hits ({hits_fresh} fresh of {hr['requests']})",
                    hr["requests"] > 0 and hits_fresh == hr["requests"]))
        trivial_p99 = (c or {}).get("trivial", {}).get("latency_ms", {}).get("p99")
        held = w.get("hits_while_held") or {}
        if trivial_p99:
            p99 = (held.get("latency_ms") or {}).get("p99")
            enough = held.get("requests", 0) >= 20
            out.append((f"hit p99 while all {w['wanted']} were held <= 2x the trivial p99 (got {p99} ms over "
                        f"{held.get('requests')} hits)", enough and (p99 or 1e9) <= 2 * trivial_p99))
            out.append((f"hit p99 from their arrival on (got {hr['latency_ms']['p99']} ms)", None))
    q = sc.get("quote_only")
    if q:
        out.append((f"quote-only overload: quotes use >= 15 of 17 calls/s (got {q['quote_calls_per_s']})",
                    (q["quote_calls_per_s"] or 0) >= 15 * b_scale(results)))
        out.append((f"quote-only overload: orders granted within 100 ms (got {q['order_grants_within_100ms']} of "
                    f"{q['order_grants']})", q["order_grants"] > 0 and q["order_grants_within_100ms_pct"] >= 99))
    st = sc.get("storm300")
    if st:
        g = st["storm"]
        out.append((f"storm 200x300: 100 % fresh (got {st['fresh_pct']} %)", st["fresh_pct"] == 100.0))
        out.append((f"storm 200x300: p99 <= 1.2 s (got {g['latency_ms']['p99']} ms)",
                    (g["latency_ms"]["p99"] or 1e9) <= 1200))
        out.append((f"storm 200x300: <= 16 multi-quote calls (got {st['multi_quote_calls']})",
                    st["multi_quote_calls"] <= 16))
        out.append(("storm 200x300: 0 violations, 0 HTTP errors", st["violations"] == 0 and g["http_errors"] == 0))
    return out


def _order_waits(b: Any) -> dict[str, int]:
    """Orders' limiter waits so far, cumulative by upper bound in seconds ("+Inf": all of them), from the
    gateway's Prometheus histogram."""
    # The metrics function itself: the front routes only public paths, and /metrics is for scrapers (a 404 there
    # counted no order at all).
    url = f"{b.metrics_url.rstrip('/')}/" if b.metrics_url else f"{b.gateway_url}/metrics"
    resp = requests.get(url, headers={"X-API-Key": b.api_key}, timeout=10)
    resp.raise_for_status()
    found = re.findall(r'kisgw_limiter_wait_seconds_bucket\{call_class="orders",le="([^"]+)"\} (\d+)', resp.text)
    return {le: int(n) for le, n in found}


def quote_only(b: Any) -> dict[str, Any]:
    """Quotes alone at 10x the budget, a balance request (the orders class) arriving every 2 s meanwhile:
    quotes should use the whole budget (the orders reserve included) and each order get its slot at once."""
    # The overload before it leaves balance requests queued at the orders function for seconds: their waits
    # must be in the baseline, not counted here as this scenario's orders. Each process publishes its figures
    # at most PUBLISH_EVERY_S after its last request.
    waited = quiet(b)
    time.sleep(PUBLISH_EVERY_S + 0.3)
    d = b.sizes.overload_s
    n = b.budget
    quote_rps = round(10 * n / 5, 1)  # 100 symbols = 5 batches of 20
    specs = [b.spec("quotes", path="/v1/quotes", clients=48, duration_s=d, symbols=tuple(b.universe),
                    per_request=100, mode="rotate", rate_per_s=quote_rps, timeout_s=5.0),
             b.spec("balance", path="/v1/account/balance", clients=1, duration_s=d, rate_per_s=0.5, timeout_s=5.0)]
    before = _order_waits(b)
    gw = b.phase(specs, "gateway", d)
    time.sleep(PUBLISH_EVERY_S + 0.3)  # the last balance requests' figures are published
    waits = {le: n - before.get(le, 0) for le, n in _order_waits(b).items()}
    orders, fast = waits.get("+Inf", 0), waits.get("0.1", 0)
    gm = b.stats.stats().get("metrics", {})
    by_class = gw.get("calls_by_class", {})
    steady = gw.get("steady_kis_calls_per_s") or 0.0
    order_calls = by_class.get("orders", 0)
    return {"gateway": gw, "gateway_metrics": {"counters": gm.get("counters"), "latency": gm.get("latency")},
            "order_grants": orders, "order_grants_within_100ms": fast,
            "order_grants_within_100ms_pct": round(100 * fast / orders, 1) if orders else None,
            "order_waits_up_to_s": waits,
            "quote_calls_per_s": round(steady - order_calls / d, 2) if steady else None,
            "quiet_wait_s": waited,
            "shape": f"{quote_rps} quote req/s x 100 symbols for {d:.0f} s, one balance request every 2 s"}
