"""The simulator in a process of its own, driven through its /__admin endpoints: the same methods as SimServer.

Where the simulator shares a process with other busy work (the benchmark's naive fleet, samplers), the
requests it receives wait for that process's threads, and it stamps them late and bunched: calls the
gateway spaced 60 ms apart arrived within a few milliseconds of each other and were refused as over KIS's
rate (EGW00201). KIS stamps a call when it reaches KIS, so a measurement of the gateway's rate needs a
stand-in whose clock is not held up by the measuring process.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from typing import Any

import requests

from shared.sim.config import SimConfig
from shared.sim.server import Listening

START_TIMEOUT_S = 20.0
ADMIN_TIMEOUT_S = 10.0
# SimConfig fields `kisgw sim` has no flag for: a process gets their defaults.
_NOT_PASSED = ("apps", "timeout_hold_s", "positions", "cash", "symbols")
_DEFAULTS = SimConfig()


class SimProcess(Listening):
    """`python -m shared.sim` on a free loopback port, with SimServer's methods over HTTP."""

    def __init__(self, cfg: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.cfg = cfg or SimConfig()
        fixed = [name for name in _NOT_PASSED if getattr(self.cfg, name) != getattr(_DEFAULTS, name)]
        if fixed:
            raise ValueError(f"a simulator process takes its command line's settings only; not {', '.join(fixed)}")
        self.host = host
        self._port = port
        self._proc: subprocess.Popen[str] | None = None
        self._session = requests.Session()
        self._lock = threading.Lock()  # a Session is not documented as thread-safe; samplers poll from threads

    def start(self) -> SimProcess:
        if self._proc is not None:
            raise RuntimeError("simulator already started")
        c = self.cfg
        argv = [sys.executable, "-m", "shared.sim", "--host", self.host, "--port", str(self._port),
                "--env", c.env, "--profile", c.profile, "--seed", str(c.seed), "--latency-ms", str(c.latency_ms),
                "--error-rate", str(c.error_rate), "--timeout-rate", str(c.timeout_rate),
                "--reject-rate", str(c.reject_rate), "--ledger-tps", str(c.ledger_tps),
                "--token-status-expired", str(c.token_status_expired)]
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = _first_line(self._proc, START_TIMEOUT_S)
        m = re.search(r"http://[^:\s]+:(\d+)", line)
        if m is None:
            self.stop()
            raise RuntimeError(f"the simulator did not start: {line.strip()[:200]!r}")
        self._port = int(m.group(1))
        return self

    def _admin(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        with self._lock:
            resp = self._session.request(method, f"{self.base_url}/__admin/{name}", json=body,
                                         timeout=ADMIN_TIMEOUT_S)
        if resp.status_code >= 400:
            raise ValueError(f"simulator admin {method} {name}: {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self._admin("GET", "stats")
        return out

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        out: dict[str, Any] = self._admin("POST", "faults", faults)
        return out

    def expire_tokens(self) -> int:
        return int(self._admin("POST", "expire-tokens")["expired"])

    def reset_stats(self) -> None:
        self._admin("POST", "reset-stats")

    def reset(self) -> None:
        self._admin("POST", "reset")

    def symbols(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = self._admin("GET", "symbols")
        return out

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._session.close()
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # the simulator closes its connections on SIGTERM
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The process's first line of output (its base URL), or '' when it printed none within `timeout_s`."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline() if proc.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout_s)
    return got[0] if got else ""
