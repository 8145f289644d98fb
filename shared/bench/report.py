"""The benchmark's printed table and its pass/fail checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.bench.figures import ratio

Row = tuple[str, Callable[[dict[str, Any]], Any], bool | None]  # label, getter, higher is better (None: no ratio)


def _get(*path: str) -> Callable[[dict[str, Any]], Any]:
    def get(d: dict[str, Any]) -> Any:
        for p in path:
            if not isinstance(d, dict):
                return None
            d = d.get(p)  # type: ignore[assignment]
        return d
    return get


COMMON: list[Row] = [
    ("throughput req/s", _get("throughput_rps"), True),
    ("fresh symbols answered / s", _get("fresh_symbols_per_s"), True),
    ("latency p50 ms", _get("latency_ms", "p50"), False),
    ("latency p95 ms", _get("latency_ms", "p95"), False),
    ("latency p99 ms", _get("latency_ms", "p99"), False),
    ("symbols answered fresh %", _get("fresh_pct"), True),
    ("KIS calls / symbol-request", _get("kis_calls_per_symbol_request"), False),
    ("KIS calls refused by KIS", _get("kis_refused"), False),
    ("max KIS calls in any 1 s", _get("max_calls_in_any_1s"), None),
    ("limiter violations", _get("violations"), None),
]
ROWS: dict[str, list[Row]] = {
    "cache_hit": COMMON,
    "miss_storm": [*COMMON, ("batch fill (symbols/call)", _get("batch_fill"), True)],
    "overload": [*COMMON, ("KIS calls/s granted (steady)", _get("steady_kis_calls_per_s"), None),
                 ("budget use % of N", _get("budget_use_pct"), None),
                 ("grants quotes/reference/orders", lambda d: "/".join(
                     str(d.get("calls_by_class", {}).get(c, 0)) for c in ("quotes", "reference", "orders")), None),
                 ("batch fill (symbols/call)", _get("batch_fill"), True)],
    "outage": [("answered with data while down %", _get("outage", "served_with_data_pct"), True),
               ("latency p50 ms while down", _get("outage", "latency_ms", "p50"), False),
               ("latency p99 ms while down", _get("outage", "latency_ms", "p99"), False),
               ("oldest stale answer s", _get("outage", "stale_max_age_s"), None),
               ("KIS attempts while down", _get("outage", "kis_attempts_while_down"), False),
               ("breaker open after s", _get("outage", "breaker_open_after_s"), None),
               ("breaker closed after KIS up s", _get("outage", "breaker_closed_after_s"), None),
               ("fresh again after KIS up s", _get("outage", "recovered_after_s"), False),
               ("limiter violations", _get("violations"), None)],
}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 0.1 and v != 0 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(results: dict[str, Any]) -> str:
    lines = [f"{'scenario':<11} {'figure':<34} {'gateway':>14} {'naive':>14} {'gateway is':>12}"]
    lines.append("-" * len(lines[0]))
    for name, rows in ROWS.items():
        sc = results.get("scenarios", {}).get(name)
        if not sc or "naive" not in sc:
            continue
        for i, (label, get, higher) in enumerate(rows):
            g, n = get(sc["gateway"]), get(sc["naive"])
            better = ""
            if higher is not None and isinstance(g, int | float) and isinstance(n, int | float):
                r = ratio(float(g), float(n), higher)
                better = f"{r:,.1f}x better" if r is not None and r >= 1 else (
                    f"{1 / r:,.1f}x worse" if r else "")
            lines.append(f"{name if i == 0 else '':<11} {label:<34} {_fmt(g):>14} {_fmt(n):>14} {better:>12}")
        lines.append(f"{'':<11} ({sc.get('shape', '')})")
    return "\n".join(lines)


def _of(start: dict[str, Any]) -> str:
    """ (median of N: lowest-highest s), for a cold start measured more than once."""
    times = start.get("samples_s") or []
    return f" (median of {len(times)}: {times[0]:.2f}-{times[-1]:.2f} s)" if len(times) > 1 else ""


def processes_table(results: dict[str, Any]) -> str:
    lines = []
    for p in results.get("processes", []):
        lines.append(f"  peak RSS {p['process']:<40} {p['peak_rss_mib']:>7.1f} MiB")
    for c in results.get("cold_start", []):
        if "error" in c:
            lines.append(f"  cold start {c['target']:<14} {c['error']}")
        else:
            cpu = f", {c['first_answer_cpu_s']:.2f} s CPU" if c.get("first_answer_cpu_s") is not None else ""
            lines.append(f"  cold start {c['target']:<14} first answer {c['first_answer_s']:.2f} s{_of(c)}{cpu} "
                         f"(HTTP {c['http']}), then {c['warm_answer_s'] * 1000:.1f} ms; "
                         f"peak RSS {c['peak_rss_mib']} MiB")
    floor = results.get("cold_start_trivial")
    if floor and "first_answer_s" in floor:
        lines.append(f"  cold start {'(trivial fn)':<14} first answer {floor['first_answer_s']:.2f} s{_of(floor)}, "
                     f"{floor.get('first_answer_cpu_s', 0):.2f} s CPU: functions-framework + gunicorn + uvicorn alone")
    for ph in results.get("start_up_phases", []):
        if "error" in ph:
            lines.append(f"  start-up of {ph['target']:<12} {ph['error']}")
        else:
            lines.append(f"  start-up of {ph['target']:<12} framework {ph['framework_ms']:.0f} ms, entry points "
                         f"{ph['entry_points_ms']:.0f} ms, gateway {ph['gateway_ms']:.0f} ms; heavy modules loaded: "
                         f"{', '.join(ph['heavy_loaded']) or 'none'}")
    imp = results.get("import_cost")
    if imp and imp.get("total_ms") is not None:
        parts = ", ".join(f"{n} {ms:.0f}" for n, ms in imp["largest_ms"].items())
        lines.append(f"  start-up imports: {imp['module']} {imp['total_ms']:.0f} ms (largest, ms: {parts}); "
                     f"cloud clients loaded: {', '.join(imp['cloud_clients_loaded']) or 'none'}")
    return "\n".join(lines)


def checks(results: dict[str, Any]) -> list[tuple[str, bool | None]]:
    """The promises the benchmark holds the gateway to (None: a figure shown for information)."""
    from shared.bench import ceiling

    sc = results.get("scenarios", {})
    out: list[tuple[str, bool | None]] = ceiling.checks(results)
    for c in results.get("cold_start", []):
        got = c.get("first_answer_s")
        out.append((f"cold start of {c['target']} to its first answer <= 0.6 s (got {got} s{_of(c)})",
                     got is not None and got <= 0.6))
    gw = {name: s["gateway"] for name, s in sc.items() if "gateway" in s}
    out.append(("0 limit violations reported by the simulator in every gateway phase",
                all(g.get("violations") == 0 for g in gw.values())))
    refused = {name: g.get("kis_refused_by_code", {}).get("EGW00201", 0) for name, g in gw.items()}
    # Shown, not judged: the limiter's bound is by Redis time, and on a loaded 2-core machine the delay from
    # grant to arrival varies enough that a few calls can share one KIS second; they are retried and feed
    # AIMD. KIS itself says calls may be refused within the limit. The violations line above is the promise.
    out.append((f"gateway calls refused by KIS as over the rate, retried (EGW00201: {refused})", None))
    busiest = max((g.get("max_calls_in_any_1s", 0) for g in gw.values()), default=0)
    out.append((f"busiest 1 s at KIS: {busiest} gateway calls (budget {results.get('budget')}, "
                f"KIS limit {results.get('kis_limit')})", None))
    if "overload" in gw:
        use = gw["overload"].get("budget_use_pct") or 0
        out.append((f"overload budget use >= 95 % of N (got {use} %)", use >= 95))
        herr = gw["overload"].get("http_errors")
        out.append((f"overload: 0 HTTP errors (got {herr})", herr == 0))
        by_stream = {n: st.get("http_status") for n, st in gw["overload"].get("streams", {}).items()}
        out.append((f"overload: answers by HTTP status per stream {by_stream} (429: not sent, the class's "
                    "budget is in use; 0: no answer within the client's timeout)", None))
        d = sc["overload"].get("duration_s")
        by_class = gw["overload"].get("calls_by_class", {})
        reserves = results.get("reserves", {})
        if d and reserves:
            # A class's calls over the phase against its reserve per second (5 % slack for the phase's edges).
            got = {c: round(by_class.get(c, 0) / d, 1) for c in reserves}
            out.append((f"overload: each class got at least its reserve per second (got {got}, reserves {reserves})",
                        all(got[c] >= 0.95 * r for c, r in reserves.items())))
        served = gw["overload"].get("served_with_data_pct")
        out.append((f"overload: symbols answered with data {served} % (fresh or stale; symbols never fetched "
                    "before have no last-known copy and answer pending)", None))
        with_copy = gw["overload"].get("with_copy_served_pct")
        out.append((f"overload: symbols with a last-known copy answered with data >= 99 % (got {with_copy} %: of "
                    "the answers for symbols the stream had been answered with data before)",
                    with_copy is not None and with_copy >= 99))
    if "outage" in gw:
        o = gw["outage"].get("outage", {})
        out.append(("gateway answered with data while KIS was down", (o.get("served_with_data_pct") or 0) >= 95))
        out.append(("gateway recovered by itself after KIS came back", o.get("recovered_after_s") is not None))
    return out
