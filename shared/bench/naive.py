"""The NAIVE gateway the benchmark compares against: what a first version typically looks like.

One KIS call per requested symbol, a limiter that only knows its own process, no cache, no batching, no
queue, no breaker. Each `NaiveGateway` is one "instance" (a tiny threaded HTTP server on loopback) with
the same routes and answer shape as the real gateway, so the same load runs against both. Several
instances share one app key, as several function instances would: their limiters add up.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.config import Settings
from shared.kis.client import KISClient
from shared.kis.errors import KISError
from shared.kis.models import plain

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("naive_deadline", default=0.0)


class NoGrant(Exception):
    """The per-process limiter had no slot before the request's deadline."""


class ProcessLimiter:
    """A sliding 1-second log of this process's calls only: exact here, blind to every other instance."""

    def __init__(self, per_second: int) -> None:
        self._n = per_second
        self._log: deque[float] = deque()
        self._cond = threading.Condition()

    def gate(self, call_class: str, tr_id: str) -> None:
        deadline = _deadline.get() or time.monotonic() + 2.0
        with self._cond:
            while True:
                now = time.monotonic()
                while self._log and self._log[0] <= now - 1.0:
                    self._log.popleft()
                if len(self._log) < self._n:
                    self._log.append(now)
                    return
                free_at = self._log[0] + 1.0
                if free_at > deadline:
                    raise NoGrant(f"no {call_class} slot before the deadline")
                self._cond.wait(free_at - now)


class NaiveGateway:
    """GET /v1/quotes, /v1/daily-prices (one KIS call per symbol), /v1/account/balance (straight through)."""

    def __init__(self, settings: Settings, token: Callable[[], str], *, deadline_s: float = 2.0) -> None:
        self.limiter = ProcessLimiter(settings.budget)
        self.kis = KISClient(settings, token_provider=token, gate=self.limiter.gate)
        self.deadline_s = deadline_s
        self.calls = 0
        self._count_lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
                status, body = gateway.answer(self.path)
                payload = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 512
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="naive-gateway")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> NaiveGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self.kis.close()

    def answer(self, raw_path: str) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        query = parse_qs(url.query)
        symbols = [s for s in ",".join(query.get("symbols", [""])).split(",") if s]
        deadline = time.monotonic() + self.deadline_s
        token = _deadline.set(deadline)
        try:
            if url.path == "/v1/quotes":
                return 200, {"quotes": {s: self._one(partial(self.kis.get_current_price, s)) for s in symbols}}
            if url.path == "/v1/daily-prices":
                return 200, {"daily": {s: self._one(partial(self._daily_bars, s)) for s in symbols}}
            if url.path == "/v1/account/balance":
                got = self._one(lambda: self.kis.get_balance())
                return (200 if got["status"] == "fresh" else 502), got
            return 404, {"error": {"code": "not_found", "message": url.path}}
        finally:
            _deadline.reset(token)

    def _daily_bars(self, symbol: str) -> dict[str, Any]:
        return {"bars": [plain(b) for b in self.kis.get_daily_prices(symbol)]}

    def _one(self, call: Callable[[], Any]) -> dict[str, Any]:
        try:
            got = call()
        except NoGrant:
            return {"status": "error", "reason": "rate limit wait exceeded the deadline"}
        except KISError as exc:
            with self._count_lock:
                self.calls += 1
            return {"status": "error", "reason": f"KIS error {exc.msg_cd or type(exc).__name__}"}
        with self._count_lock:
            self.calls += 1
        value = got if isinstance(got, dict) else plain(got)
        return {"status": "fresh", **{k: v for k, v in value.items() if k != "status"}}


class NaiveFleet:
    """`instances` naive gateways sharing one app key and one token (issued once for the fleet)."""

    def __init__(self, settings: Settings, instances: int = 2, deadline_s: float = 2.0) -> None:
        issuer = KISClient(settings)
        self._token = issuer.issue_token()
        issuer.close()
        self.gateways = [NaiveGateway(settings, lambda: self._token.value, deadline_s=deadline_s).start()
                         for _ in range(max(1, instances))]

    @property
    def base_urls(self) -> tuple[str, ...]:
        return tuple(g.base_url for g in self.gateways)

    def stop(self) -> None:
        for g in self.gateways:
            g.stop()
