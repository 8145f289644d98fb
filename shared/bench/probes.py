"""What the benchmark reads besides its own load: process memory, cold starts, simulator and gateway stats."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent.parent


def sim_app_label(app_key: str) -> str:
    """The simulator's name for an app key in its stats (a hash, never the key)."""
    return "app-" + hashlib.sha256(app_key.encode()).hexdigest()[:8]


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of one process, in KiB; None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct and indirect children of `pid` (from /proc/*/stat)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        parent_of[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent_of.items() if pp == p]
        found += kids
        frontier += kids
    return sorted(found)


def process_name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(c.decode(errors="replace") for c in cmd if c)
    if "functions_framework" in text or "gunicorn" in text:
        return "worker"  # gunicorn forks its workers: they keep the master's command line
    return Path(cmd[0].decode(errors="replace")).name if cmd and cmd[0] else "?"


def peak_rss(pid: int, label: str) -> list[dict[str, Any]]:
    """VmHWM of a process tree (the gunicorn master and its workers)."""
    out = []
    for p in [pid, *children(pid)]:
        hwm = vm_hwm_kib(p)
        if hwm is not None:
            out.append({"process": label if p == pid else f"{label} > {process_name(p)}", "pid": p,
                        "peak_rss_mib": round(hwm / 1024, 1)})
    return out


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by `pids` (from /proc/<pid>/stat; gone processes count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def cold_start(target: str, env: dict[str, str], port: int, path: str, api_key: str,
               timeout_s: float = 40.0, source: Path | None = None) -> dict[str, Any]:
    """Start `functions-framework --target X` and time process start → first 2xx/4xx answer. Also the CPU time
    the process tree used until then (`first_answer_cpu_s`: what the start cost, less sensitive than the wall
    time to other work on a shared machine)."""
    cmd = [sys.executable, "-m", "functions_framework", "--target", target,
           "--source", str(source or ROOT / "functions" / "main.py"), "--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env={**env, "PYTHONPATH": str(ROOT), "WORKERS": "1", "THREADS": "8"},
                            cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    result: dict[str, Any] = {"target": target, "path": path}
    try:
        session = requests.Session()
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                result["error"] = f"exited with code {proc.returncode}"
                return result
            try:
                resp = session.get(f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": api_key}, timeout=5)
            except requests.RequestException:
                time.sleep(0.02)
                continue
            if resp.status_code < 500:
                result.update(first_answer_s=round(time.monotonic() - started, 3), http=resp.status_code,
                              first_answer_cpu_s=round(cpu_s([proc.pid, *children(proc.pid)]), 3))
                again = time.monotonic()
                session.get(f"http://127.0.0.1:{port}{path}", headers={"X-API-Key": api_key}, timeout=5)
                result["warm_answer_s"] = round(time.monotonic() - again, 4)
                hwm = sum(h for p in [proc.pid, *children(proc.pid)] if (h := vm_hwm_kib(p)))
                result["peak_rss_mib"] = round(hwm / 1024, 1)
                return result
            time.sleep(0.02)
        result["error"] = f"no answer within {timeout_s:.0f} s"
        return result
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# Starts measured per function; the median is given. One start on a shared 2-core machine measured anywhere from
# 0.45 to 0.82 s for the same function within minutes.
COLD_SAMPLES = 3


def median_start(start: Callable[[], dict[str, Any]], samples: int = COLD_SAMPLES) -> dict[str, Any]:
    """The median of `samples` cold starts (`start` makes one), with every start's time under `samples_s`; a start
    that failed is given instead (a function that does not always start is not measured by the others)."""
    got = [start() for _ in range(samples)]
    failed = [g for g in got if g.get("first_answer_s") is None]
    if failed:
        return failed[0]
    got.sort(key=lambda g: g["first_answer_s"])
    return {**got[len(got) // 2], "samples_s": [g["first_answer_s"] for g in got]}


def trivial_cold_start(port: int) -> dict[str, Any]:
    """The same probe on the trivial ASGI function (shared/bench/trivial.py): the floor functions-framework,
    gunicorn and uvicorn set, measured in the same run as the gateway's functions."""
    return cold_start("trivial", {**os.environ, "FUNCTION_USE_ASGI": "true"}, port, "/", "",
                      source=ROOT / "shared" / "bench" / "trivial.py")


# Modules a function's start-up should not load unless its first answer needs them (tens to hundreds of ms each).
START_UP_HEAVY = ("requests", "holidays", "pydantic", "grpc", "google.auth", "google.protobuf", "google.api_core",
                  "google.cloud.firestore", "google.cloud.tasks_v2", "google.cloud.secretmanager")

_PHASES = """
import sys, time
t0 = time.perf_counter()
import functions_framework
t1 = time.perf_counter()
from functions_framework.aio import create_asgi_app
create_asgi_app({target!r}, {source!r})
t2 = time.perf_counter()
from shared.gateway import get_gateway
get_gateway()
t3 = time.perf_counter()
heavy = [m for m in {heavy!r} if m in sys.modules]
print(round((t1 - t0) * 1000, 1), round((t2 - t1) * 1000, 1), round((t3 - t2) * 1000, 1), ",".join(heavy))
"""


def start_up_phases(target: str, env: dict[str, str]) -> dict[str, Any]:
    """Where an ASGI function's start goes, in one fresh process with the function's environment:
    functions-framework's import, the entry points' import, building the gateway (ms each), and which heavy
    modules are loaded by then. The rest of a cold start is the server's own start (gunicorn, uvicorn) and the
    first request."""
    code = _PHASES.format(target=target, source=str(ROOT / "functions" / "main.py"), heavy=START_UP_HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60, check=False)
    parts = proc.stdout.strip().split(" ")
    if proc.returncode != 0 or len(parts) < 3:
        return {"target": target, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return {"target": target, "framework_ms": float(parts[0]), "entry_points_ms": float(parts[1]),
            "gateway_ms": float(parts[2]), "heavy_loaded": [m for m in (parts[3] if len(parts) > 3 else "").split(",")
                                                            if m]}


def import_cost(module: str = "functions.main", top: int = 8) -> dict[str, Any]:
    """What importing the entry points costs at start-up (`python -X importtime`, one fresh process): the
    total and the largest packages loaded, cumulative milliseconds."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=60, check=False)
    rows: list[tuple[int, int, str]] = []
    for line in proc.stderr.decode(errors="replace").splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((depth, int(parts[1]), name.strip()))
    total = next((us for d, us, n in rows if n == module), None)
    first_level = sorted(((us, n) for d, us, n in rows if d == 1), reverse=True)[:top]
    return {"module": module, "total_ms": round(total / 1000, 1) if total else None,
            "largest_ms": {n: round(us / 1000, 1) for us, n in first_level},
            "cloud_clients_loaded": sorted({n for _, _, n in rows if n in HEAVY_CLIENTS})}


# Client libraries a read function should not load at start-up (each costs tens to hundreds of ms).
HEAVY_CLIENTS = frozenset({"grpc", "google.cloud.tasks_v2", "google.cloud.firestore", "google.cloud.secretmanager",
                           "google.api_core.exceptions", "google.auth"})


class GatewayStats:
    """Reads /stats (admin) and /health of the running stack."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self._headers = {"X-API-Key": api_key}
        self._session = requests.Session()

    def stats(self) -> dict[str, Any]:
        return dict(self._session.get(f"{self.base_url}/stats", headers=self._headers, timeout=10).json())

    def breaker(self) -> str:
        try:
            body = self._session.get(f"{self.base_url}/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return "unknown"
        return str(body.get("checks", {}).get("breaker", "unknown"))

    def batch_fill(self) -> tuple[int, float]:
        """(batches, symbols) of quote drains so far in this (single-worker) instance."""
        h = self.stats().get("metrics", {}).get("latency", {}).get("batch_fill", {}).get("kind=quote")
        return (int(h["count"]), float(h["sum_s"])) if h else (0, 0.0)

    def close(self) -> None:
        self._session.close()


class CallSampler:
    """Samples one app key's granted KIS calls from the simulator every `every_s`, to measure the call
    rate over a steady window (a phase's tail of late answers would otherwise dilute it)."""

    def __init__(self, sim: Any, app: str, every_s: float = 0.25) -> None:
        import threading

        self._sim = sim
        self._app = app
        self._every_s = every_s
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True, name="call-sampler")

    def __enter__(self) -> CallSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            calls = int(self._sim.stats().get("by_app", {}).get(self._app, {}).get("calls", 0))
            self.samples.append((time.time(), calls))
            if self._stop.wait(self._every_s):
                return

    def rate(self, since: float, until: float) -> float | None:
        """Granted calls per second between two wall-clock instants (nearest samples inside)."""
        inside = [(t, n) for t, n in self.samples if since <= t <= until]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
