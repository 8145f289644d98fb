"""Alerts to a Slack-compatible webhook: breaker open, token failure, sustained rate-limit errors.

Sending happens on a background thread so a slow webhook never delays a request; repeats of one event are
suppressed for a minute so a storm becomes one message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import requests

from shared.observability.metrics import Metrics

log = logging.getLogger(__name__)
REPEAT_SUPPRESS_S = 60.0
RATE_ERRORS_ALERT = 20  # EGW00201/EGW00215 answers within RATE_WINDOW_S that count as "sustained"
RATE_WINDOW_S = 10.0


class Alerter:
    def __init__(self, webhook_url: str = "", *, metrics: Metrics | None = None, timeout_s: float = 3.0) -> None:
        self._url = webhook_url
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._last: dict[str, float] = {}
        self._rate_errors: deque[float] = deque()
        self._lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []  # what went out, for /stats and tests

    def send(self, event: str, detail: dict[str, Any]) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(event, -1e9) < REPEAT_SUPPRESS_S:
                return False
            self._last[event] = now
        payload = {"text": f"[kis-gateway] {event}: " + ", ".join(f"{k}={v}" for k, v in detail.items()),
                   "event": event, **{k: str(v) for k, v in detail.items()}}
        log.warning("alert %s %s", event, detail, extra={"alert": event})
        if self._metrics is not None:
            self._metrics.inc("alerts_total", event=event)
        self.sent.append(payload)
        if self._url:
            threading.Thread(target=self._post, args=(payload,), daemon=True).start()
        return True

    def _post(self, payload: dict[str, Any]) -> None:
        try:
            requests.post(self._url, json=payload, timeout=self._timeout_s)
        except requests.RequestException as exc:
            log.error("alert webhook failed: %s", type(exc).__name__)

    def breaker_changed(self, old: str, new: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("breaker_transitions_total", to=new)
        if new == "open":
            self.send("breaker_open", {"from": old})

    def rate_limited(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._rate_errors.append(now)
            while self._rate_errors and now - self._rate_errors[0] > RATE_WINDOW_S:
                self._rate_errors.popleft()
            sustained = len(self._rate_errors) >= RATE_ERRORS_ALERT
        if sustained:
            self.send("rate_limit_errors", {"count": RATE_ERRORS_ALERT, "window_s": RATE_WINDOW_S})
