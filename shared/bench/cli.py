"""`kisgw bench [--quick] [--json out.json]`: the local stack against the simulator, the gateway side by side
with a naive one, a table on stdout and every figure in JSON. Loopback only; stops by itself."""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from shared import budget
from shared.bench.ceiling import table as ceiling_table
from shared.bench.load import LoadProcess
from shared.bench.naive import NaiveFleet
from shared.bench.probes import (
    cold_start,
    import_cost,
    median_start,
    peak_rss,
    sim_app_label,
    start_up_phases,
    trivial_cold_start,
    vm_hwm_kib,
)
from shared.bench.report import checks, processes_table, table
from shared.bench.scenarios import SCENARIOS, Bench, Sizes, dashboard_demo
from shared.config import load_settings

COLD_TARGETS = {"quotes": "/?symbols=005930", "health": "/", "stats": "/", "dashboard": "/"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kisgw bench", description="benchmark the gateway against a naive one")
    p.add_argument("--quick", action="store_true", help="short durations (< 60 s in all)")
    p.add_argument("--json", metavar="PATH", help="write every figure here (default bench-results/bench.json)")
    p.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--port", type=int, default=0, help="port of the local stack (default: a free one)")
    p.add_argument("--naive-instances", type=int, default=2, help="naive instances sharing the app key")
    p.add_argument("--no-cold-start", action="store_true", help="skip the cold start probes")
    p.add_argument("--screenshot", action="store_true", help="save a dashboard screenshot to bench-results/")
    p.add_argument("--faults", action="store_true",
                   help="run the fault matrix instead (shared/bench/faults.py); --only picks faults")
    p.add_argument("--set", metavar="VAR=VALUE", action="append", default=[],
                   help="a gateway setting for this run (e.g. GATEWAY_MIN_CALL_SPACING_MS=55); repeatable")
    return p


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.faults:
        return _faults(args)
    names = [n.strip() for n in (args.only or ",".join(SCENARIOS)).split(",") if n.strip()]
    bad = [kv for kv in args.set if "=" not in kv]
    if bad:
        print(f"error: --set needs VAR=VALUE, got {bad}", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"error: unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    out_path = Path(args.json or ("bench-results/bench-quick.json" if args.quick else "bench-results/bench.json"))
    started = time.monotonic()
    results = bench(names, args)
    results["wall_s"] = round(time.monotonic() - started, 1)
    print()
    print(table(results))
    extra = ceiling_table(results)
    if extra:
        print()
        print(extra)
    print()
    print(processes_table(results))
    print()
    ok = True
    results["checks"] = []
    for label, passed in checks(results):
        ok &= passed is not False
        results["checks"].append({"check": label, "passed": passed})
        print(f"  [{'info' if passed is None else 'ok' if passed else 'FAIL'}] {label}")
    print(f"\nwall time {results['wall_s']} s; figures in {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0 if ok else 1


def _faults(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from shared.bench import faults

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        rows, text = faults.run(quick=args.quick, only=only, port=args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    out_path = Path(args.json or "bench-results/faults.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps([asdict(r) for r in rows], indent=2, ensure_ascii=False))
    bad = [r.fault for r in rows if r.ran and (r.violations or r.symbols_lost or r.orders_sent_twice
                                                or r.recovery_s is None)]
    print(f"\nfigures in {out_path}" + (f"; rows failing the bar: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def bench(names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    from shared.localstack import LocalStack, free_port

    sizes = Sizes.quick() if args.quick else Sizes()
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    api_key = f"bench-{uuid.uuid4().hex[:12]}"
    env = {"REDIS_PREFIX": prefix, "GATEWAY_DEV_API_KEY": api_key, "MARKET_HOURS_AWARE": "false",
           "BREAKER_RESET_TIMEOUT_S": "3", "INBOUND_RATE_PER_KEY": "100000",
           "KIS_APP_KEY": "", "KIS_APP_SECRET": "", "KIS_ENV": "real", "KIS_LIMIT_PROFILE": "kis-2026-04",
           "GATEWAY_BUDGET": "0", "ALERT_WEBHOOK_URL": "", "SIM_SEED": "1"}
    overrides = dict(kv.split("=", 1) for kv in args.set)
    env.update(overrides)
    results: dict[str, Any] = {"quick": bool(args.quick), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "cpus": os.cpu_count(), "settings": overrides, "scenarios": {}}
    # The simulator in its own process: in this one, beside the naive fleet and the samplers, it stamped the
    # gateway's evenly spaced calls late and bunched, and refused some as over KIS's rate (shared/sim/process.py).
    stack = LocalStack(port=args.port or free_port(), env=env, threads=256, quiet=True, sim_process=True)
    load = naive = None
    log(f"starting the local stack on port {stack.port} ...")
    try:
        stack.start()
        settings = load_settings(stack.env_used)
        results["budget"] = settings.budget
        results["kis_limit"] = settings.kis_limit
        results["reserves"] = {c: budget.reserve(settings, c) for c in ("quotes", "reference", "orders")}
        naive_key = f"PSnaive{uuid.uuid4().hex}"
        naive_settings = load_settings({"KIS_BASE_URL": stack.sim.base_url, "KIS_APP_KEY": naive_key,
                                        "KIS_APP_SECRET": "naive-bench-secret", "KIS_ACCOUNT_NO": "50000000-02",
                                        "KIS_ENV": "real", "KIS_HTTP_TIMEOUT_S": "5"})
        naive = NaiveFleet(naive_settings, instances=args.naive_instances)
        load = LoadProcess()
        universe = [s["code"] for s in stack.sim.symbols()]
        random.Random(7).shuffle(universe)
        b = Bench(sim=stack.sim, load=load, gateway_url=stack.base_url, api_key=api_key, quotes_url=stack.url("quotes"),
                  metrics_url=stack.url("metrics") if "metrics" in stack.functions else "",
                  gateway_app=sim_app_label(str(stack.env_used["KIS_APP_KEY"])), naive=naive,
                  naive_app=sim_app_label(naive_key), budget=settings.budget, universe=universe, sizes=sizes,
                  screenshot_dir=out_path_dir(args) if args.screenshot else None, quotes_pid=_pid(stack, "quotes"))
        b.warm(b.fresh_symbols(1))  # the first request issues the gateway's token (and its symbol is no longer cold)
        for name in names:
            log(f"scenario {name} ...")
            t = time.monotonic()
            results["scenarios"][name] = SCENARIOS[name](b)
            log(f"scenario {name} done in {time.monotonic() - t:.1f} s")
        results["processes"] = _processes(stack)
        if not args.no_cold_start:
            targets = ["health"] if args.quick else _cold_targets()
            log(f"cold starts: {', '.join(targets)} ...")
            compile_bytecode()
            with KeepWarm(b, ["005930"]):  # the quotes probe's symbol stays in the cache: its start, not a fetch
                def start(target: str) -> Callable[[], dict[str, Any]]:
                    return lambda: cold_start(target, _function_env(stack, target), free_port(),
                                              COLD_TARGETS[target], api_key)

                results["cold_start"] = [median_start(start(t)) for t in targets]
            # The floor in the same run (functions-framework, gunicorn, uvicorn and nothing else), and where each
            # target's start goes (imports, gateway build) with the heavy modules loaded by then.
            results["cold_start_trivial"] = median_start(lambda: trivial_cold_start(free_port()))
            results["start_up_phases"] = [start_up_phases(t, _function_env(stack, t)) for t in targets]
            results["import_cost"] = import_cost()
        if args.screenshot:
            log("dashboard screenshot under a short demo load ...")
            results["screenshot"] = dashboard_demo(b)
        b.stats.close()
    finally:
        if load is not None:
            load.close()
        if naive is not None:
            naive.stop()
        stack.stop()
        _forget(stack.env_used.get("REDIS_URL") if hasattr(stack, "env_used") else None, prefix)
    return results


def compile_bytecode() -> None:
    """Writes the bytecode of functions/ and shared/ where it is missing or stale, as the deployed bundle
    carries it (scripts/build_bundle.py): a cold start then measures the start that deploys, not a compile of
    every module (which it would be wherever PYTHONDONTWRITEBYTECODE is set)."""
    root = Path(__file__).resolve().parent.parent.parent
    for package in ("functions", "shared"):
        compileall.compile_dir(str(root / package), quiet=2)


def _pid(stack: Any, target: str) -> int | None:
    fp = getattr(stack, "functions", {}).get(target)
    return fp.proc.pid if fp is not None and fp.proc is not None else None


def _function_env(stack: Any, target: str) -> dict[str, str]:
    """The deployed function's own environment (its settings, secrets and identity), as the stack runs it."""
    fp = getattr(stack, "functions", {}).get(target)
    env = dict(fp.env) if fp is not None and getattr(fp, "env", None) else dict(stack.env_used)
    return {**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent.parent)}


class KeepWarm:
    """Reads `symbols` through the stack every 0.3 s meanwhile, so refresh ahead keeps them fresh."""

    def __init__(self, b: Any, symbols: list[str]) -> None:
        self._b, self._symbols = b, symbols
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-keep-warm", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a missed read only costs the probe a fetch
                self._b.warm(self._symbols)
            self._stop.wait(0.3)

    def __enter__(self) -> KeepWarm:
        self._b.warm(self._symbols)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def out_path_dir(args: argparse.Namespace) -> Path:
    """Screenshots go next to the JSON figures."""
    return Path(args.json).parent if args.json else Path("bench-results")


def _processes(stack: Any) -> list[dict[str, Any]]:
    procs: list[dict[str, Any]] = []
    if stack.proc is not None:
        procs += peak_rss(stack.proc.pid, "functions: gunicorn master")
    own = vm_hwm_kib(os.getpid())
    if own:
        procs.append({"process": "bench (simulator, local stand-ins, naive)", "pid": os.getpid(),
                      "peak_rss_mib": round(own / 1024, 1)})
    return procs


def _cold_targets() -> list[str]:
    main = (Path(__file__).resolve().parent.parent.parent / "functions" / "main.py").read_text()
    return [t for t in COLD_TARGETS if f"def {t}(" in main]


def _forget(url: str | None, prefix: str) -> None:
    if not url:
        return
    try:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)
