"""An efficient load generator in a process of its own: wrk when installed, else an asyncio HTTP/1.1 client.

The gateway and the generator share two cores, so the generator must cost little per request: wrk (C) or
plain asyncio streams with keep-alive (no HTTP library, no thread per connection). The asyncio client runs as
`python -m shared.bench.fastload` with a JSON job list on stdin and answers JSON on stdout; jobs in one list
run at the same time (e.g. a thousand waiting requests and a cache-hit probe beside them).

Job fields: kind "closed" (each connection sends its next request as soon as answered, for duration_s,
cycling through paths) or "oneshot" (one connection per path, all sent at once; used for storms and waiters);
host, port, paths, headers, connections, duration_s, timeout_s, count_symbols (parse the JSON answers),
delay_s (start that much later), timeline (also return each answer's start, latency and status).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from typing import Any

STATUSES = ("fresh", "stale", "pending", "error")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(values)

    def at(q: float) -> float:
        return round(1000 * s[min(len(s) - 1, int(q * len(s)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(1000 * s[-1], 2)}


def _count(body: bytes, counts: dict[str, int]) -> None:
    try:
        data = json.loads(body)
    except ValueError:
        counts["error"] += 1
        return
    per = next((v for k, v in data.items() if k in ("quotes", "daily", "symbols", "indices") and isinstance(v, dict)),
               None) if isinstance(data, dict) else None
    for entry in (per or {}).values():
        st = entry.get("status") if isinstance(entry, dict) else None
        counts[st if st in STATUSES else "error"] += 1


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, limit=1 << 22)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if m:
        body = await reader.readexactly(int(m.group(1)))
    elif re.search(rb"(?i)\r\ntransfer-encoding:\s*chunked", head):
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body = await reader.read()
    return status, body


def _raw(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


async def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    host, port = job.get("host", "127.0.0.1"), int(job["port"])
    headers = dict(job.get("headers", {}))
    paths = [_raw(host, port, p, headers) for p in job["paths"]]
    timeout = float(job.get("timeout_s", 10.0))
    count = bool(job.get("count_symbols", False))
    # (seconds from the job's start, latency in ms, status, seconds from the job's start when the request was
    # written: its connection open) of each answer, when asked for.
    timeline: list[tuple[float, float, int, float]] | None = [] if job.get("timeline") else None
    latencies: list[float] = []
    codes: dict[str, int] = {}
    symbols = dict.fromkeys(STATUSES, 0)
    errors = 0
    started = time.perf_counter()
    started_mono = time.monotonic()  # one clock for every process: jobs of two generators can be lined up

    async def one_connection(my_paths: list[bytes], until: float | None) -> None:
        nonlocal errors
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        i = 0
        while True:
            if until is None and i >= len(my_paths):
                break
            if until is not None and time.perf_counter() >= until:
                break
            raw = my_paths[i % len(my_paths)]
            i += 1
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(_open(host, port), timeout)
                sent = time.perf_counter()
                status, body = await asyncio.wait_for(_exchange(*conn, raw), timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                errors += 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            latencies.append(time.perf_counter() - t)
            if timeline is not None:
                timeline.append((round(t - started, 3), round(1000 * latencies[-1], 1), status,
                                 round(sent - started, 3)))
            codes[str(status)] = codes.get(str(status), 0) + 1
            if count and status == 200:
                _count(body, symbols)
        if conn is not None:
            conn[1].close()

    if job.get("kind") == "oneshot":
        await asyncio.gather(*(one_connection([p], None) for p in paths))
    else:
        n = int(job.get("connections", 16))
        until = started + float(job["duration_s"])
        await asyncio.gather(*(one_connection(paths[k::n] or paths, until) for k in range(n)))
    elapsed = time.perf_counter() - started
    return {"name": job.get("name", ""), "requests": len(latencies), "elapsed_s": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": percentiles(latencies), "http": codes, "errors": errors,
            "http_errors": errors + sum(n for c, n in codes.items() if int(c) >= 500),
            "symbols": symbols if count else None, "started_mono": started_mono,
            **({"timeline": timeline} if timeline is not None else {})}


async def _run_all(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async def delayed(job: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(job.get("delay_s", 0.0)))
        return await _run_job(job)

    return list(await asyncio.gather(*(delayed(j) for j in jobs)))


def run_jobs(jobs: list[dict[str, Any]], timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Run jobs at once in a separate Python process (the asyncio client); returns one result per job."""
    proc = subprocess.run([sys.executable, "-m", "shared.bench.fastload"], input=json.dumps(jobs).encode(),
                          capture_output=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr.decode(errors='replace')[-500:]}")
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


def run_apart(groups: list[list[dict[str, Any]]], timeout_s: float = 300.0) -> list[list[dict[str, Any]]]:
    """Run each group of jobs at once in a generator process of its own, all groups at the same time: a probe
    measured beside a thousand connections does not wait for the other job's client to get to it."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        return list(pool.map(lambda jobs: run_jobs(jobs, timeout_s), groups))


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def closed_loop(url: str, headers: dict[str, str], connections: int, duration_s: float,
                name: str = "") -> dict[str, Any]:
    """Closed-loop load on one URL: wrk (-t1) when installed, else the asyncio client; same figures either way."""
    if wrk_available():
        return _wrk(url, headers, connections, duration_s, name)
    m = re.match(r"http://([^:/]+):(\d+)(/.*)?$", url)
    if m is None:
        raise ValueError(f"not a loopback http URL: {url}")
    host, port, path = m.group(1), int(m.group(2)), m.group(3) or "/"
    return run_jobs([{"kind": "closed", "name": name, "host": host, "port": port, "paths": [path],
                      "headers": headers, "connections": connections, "duration_s": duration_s}])[0]


def _wrk(url: str, headers: dict[str, str], connections: int, duration_s: float, name: str) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency", "--timeout", "10s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, timeout=duration_s + 60, check=False).stdout.decode()
    return {"name": name, "generator": "wrk", **parse_wrk(out)}


def parse_wrk(out: str) -> dict[str, Any]:
    """Figures from wrk's --latency report."""
    def ms(text: str) -> float:
        v = float(re.match(r"[\d.]+", text).group())  # type: ignore[union-attr]
        unit = text[len(re.match(r"[\d.]+", text).group()):]  # type: ignore[union-attr]
        return round(v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}.get(unit, 1.0), 2)

    lat = {f"p{q}": ms(v) for q, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    return {"requests": int(total.group(1)) if total else 0, "rps": float(rps.group(1)) if rps else None,
            "latency_ms": {"p50": lat.get("p50"), "p95": None, "p99": lat.get("p99"), "max": None},
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "errors": errors,
            "http_errors": errors + (int(non2xx.group(1)) if non2xx else 0)}


def main() -> None:
    jobs = json.loads(sys.stdin.read())
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    sys.stdout.write(json.dumps(asyncio.run(_run_all(jobs))))


if __name__ == "__main__":
    main()
