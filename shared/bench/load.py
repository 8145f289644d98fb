"""Load generator: threads with one requests.Session each, closed-loop, paced (open-loop) or in storms.

A run is described by picklable `LoadSpec`s so it can run in a separate (spawned) process: the load then
competes with neither the simulator nor the naive gateway for the bench process's GIL.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import requests
from requests.adapters import HTTPAdapter

STATUSES = ("fresh", "stale", "pending", "error")


@dataclass(frozen=True)
class LoadSpec:
    """One stream of requests.

    path: route, e.g. "/v1/quotes"; the symbols go in `param` (none for fixed routes).
    mode: "fixed" (symbols[:per_request]), "random" (a random sample), "rotate" (consecutive windows
          through `symbols`, so a large universe is walked like pages of a screener), "storm" (all clients
          fire at once at each round; `rounds` holds each round's symbol set).
    rate_per_s: total paced rate over all clients; None = closed loop (each client sends as soon as answered).
    """

    name: str
    base_urls: tuple[str, ...]
    path: str
    api_key: str
    clients: int
    duration_s: float
    symbols: tuple[str, ...] = ()
    per_request: int = 1
    mode: str = "fixed"
    param: str = "symbols"
    rate_per_s: float | None = None
    extra_query: str = ""
    rounds: tuple[tuple[str, ...], ...] = ()
    round_gap_s: float = 1.0
    timeout_s: float = 10.0
    seed: int = 1
    start_at: float = 0.0  # time.time() to start at (lets several specs start together); 0 = now


@dataclass
class RequestRecord:
    t: float  # seconds since the run started, when sent
    latency_s: float
    http: int  # 0 = no answer (connection error or timeout)
    counts: tuple[int, int, int, int]  # symbols fresh, stale, pending, error
    stale_age_s: float = 0.0  # largest age of a stale symbol in the answer
    # Symbols of the answer that had been answered with data before in this stream (so have a last-known
    # copy), and how many of those came back without data (pending or error).
    had_copy: int = 0
    had_copy_no_data: int = 0


@dataclass
class LoadResult:
    spec_name: str
    started_at: float
    duration_s: float
    records: list[RequestRecord] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.records)

    def symbol_counts(self, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.records:
            if since <= r.t < until:
                for name, n in zip(STATUSES, r.counts, strict=True):
                    out[name] += n
        return out

    def http_errors(self) -> int:
        return sum(1 for r in self.records if r.http == 0 or r.http >= 500)


def _pick(spec: LoadSpec, rng: random.Random, worker: int, i: int) -> Sequence[str]:
    n = spec.per_request
    if spec.mode == "random":
        return rng.sample(spec.symbols, min(n, len(spec.symbols)))
    if spec.mode == "rotate":
        # Client w's i-th request takes the window after everyone's previous one: together they sweep.
        start = ((i * spec.clients + worker) * n) % len(spec.symbols)
        return [spec.symbols[(start + k) % len(spec.symbols)] for k in range(n)]
    return spec.symbols[:n]


def _count(body: Any, seen: set[str] | None = None,
           copies: list[int] | None = None) -> tuple[tuple[int, int, int, int], float]:
    """(symbols fresh, stale, pending, error), the largest stale age. With `seen` (symbols this stream has had
    answered with data) and `copies`: adds to copies[0] the answers for symbols in `seen` and to copies[1]
    those of them without data, then adds this answer's symbols with data to `seen`."""
    counts = [0, 0, 0, 0]
    age = 0.0
    if not isinstance(body, dict):
        return (0, 0, 0, 0), 0.0
    per_symbol = next((v for k, v in body.items() if k in ("quotes", "daily", "symbols", "indices")
                       and isinstance(v, dict)), None)
    if per_symbol is None:
        return (1, 0, 0, 0), 0.0  # a whole answer (balance): counts as one fresh item
    for code, entry in per_symbol.items():
        status = entry.get("status", "error") if isinstance(entry, dict) else "error"
        idx = STATUSES.index(status) if status in STATUSES else 3
        counts[idx] += 1
        if status == "stale":
            age = max(age, float(entry.get("age_s") or 0.0))
        if seen is not None and copies is not None:
            if code in seen:
                copies[0] += 1
                copies[1] += idx >= 2
            elif idx < 2:
                seen.add(code)
    return (counts[0], counts[1], counts[2], counts[3]), age


def _session(pool: int) -> requests.Session:
    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool)
    s.mount("http://", adapter)
    return s


def _url(spec: LoadSpec, base: str, symbols: Sequence[str]) -> str:
    query = f"{spec.param}={','.join(symbols)}" if symbols else ""
    if spec.extra_query:
        query = f"{query}&{spec.extra_query}" if query else spec.extra_query
    return f"{base}{spec.path}" + (f"?{query}" if query else "")


def _worker(spec: LoadSpec, worker: int, t0: float, stop_at: float, out: list[RequestRecord],
            lock: threading.Lock, seen: set[str]) -> None:
    rng = random.Random(spec.seed * 1000 + worker)
    base = spec.base_urls[worker % len(spec.base_urls)]
    session = _session(2)
    headers = {"X-API-Key": spec.api_key}
    mine: list[RequestRecord] = []
    interval = spec.clients / spec.rate_per_s if spec.rate_per_s else 0.0
    next_at = t0 + (interval * worker / spec.clients if interval else 0.0)
    i = 0
    try:
        while True:
            if spec.mode == "storm":
                if i >= len(spec.rounds):
                    break
                next_at = t0 + i * spec.round_gap_s
                symbols: Sequence[str] = spec.rounds[i]
                if spec.per_request < len(symbols):
                    symbols = rng.sample(symbols, spec.per_request)
            else:
                symbols = _pick(spec, rng, worker, i)
            if interval or spec.mode == "storm":
                delay = next_at - time.time()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            sent = time.time()
            if sent >= stop_at:
                break
            copies = [0, 0]
            try:
                resp = session.get(_url(spec, base, symbols), headers=headers, timeout=spec.timeout_s)
                code = resp.status_code
                if code == 200:
                    counts, age = _count(resp.json(), seen, copies)
                else:
                    counts, age = (0, 0, 0, len(symbols) or 1), 0.0
                    if code == 503:  # a refusal with every symbol's answer: count the copies it had
                        with contextlib.suppress(ValueError):
                            _count(resp.json(), seen, copies)
            except (requests.RequestException, ValueError):
                code, counts, age = 0, (0, 0, 0, len(symbols) or 1), 0.0
                known = sum(1 for s in symbols if s in seen)
                copies = [known, known]
            mine.append(RequestRecord(sent - t0, time.time() - sent, code, counts, age, copies[0], copies[1]))
            i += 1
    finally:
        session.close()
        with lock:
            out.extend(mine)


def run_specs(specs: Sequence[LoadSpec]) -> list[LoadResult]:
    """Run every spec at once (threads); returns one result per spec, records sorted by send time."""
    results: list[LoadResult] = []
    threads: list[threading.Thread] = []
    sinks: list[tuple[LoadResult, list[RequestRecord]]] = []
    lock = threading.Lock()
    for spec in specs:
        t0 = max(spec.start_at, time.time())
        stop_at = t0 + spec.duration_s
        res = LoadResult(spec.name, t0, spec.duration_s)
        sink: list[RequestRecord] = []
        sinks.append((res, sink))
        seen: set[str] = set()  # symbols this stream had answered with data (set.add is atomic)
        for w in range(spec.clients):
            t = threading.Thread(target=_worker, args=(spec, w, t0, stop_at, sink, lock, seen), daemon=True,
                                 name=f"load-{spec.name}-{w}")
            threads.append(t)
    for t in threads:
        t.start()
    longest = max((s.duration_s + s.timeout_s + max(0.0, s.start_at - time.time()) for s in specs), default=0.0)
    deadline = time.time() + longest + 5.0
    for t in threads:
        t.join(max(0.0, deadline - time.time()))
    for res, sink in sinks:
        with lock:
            res.records = sorted(sink, key=lambda r: r.t)
        results.append(res)
    return results


class LoadProcess:
    """One spawned process that runs load specs on request (keeps its imports warm between scenarios)."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        self._pool.submit(_warm).result(timeout=60)

    def run(self, specs: Sequence[LoadSpec]) -> list[LoadResult]:
        longest = max((s.duration_s + s.timeout_s for s in specs), default=0.0)
        return self._pool.submit(run_specs, list(specs)).result(timeout=longest + 60)

    def submit(self, specs: Sequence[LoadSpec]) -> Any:
        """Start specs and return a future (the caller does other work meanwhile, e.g. injects faults)."""
        return self._pool.submit(run_specs, list(specs))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _warm() -> bool:
    return True
