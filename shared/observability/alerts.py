"""Alerts to a Slack-compatible webhook: breaker open (and closed again), token failure, sustained
rate-limit errors.

Posting happens on one background thread so a slow webhook never delays a request; repeats of one event
are suppressed for a minute so a storm becomes one message. The webhook URL is a secret (it is the
credential) and never appears in logs, payloads or reprs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.lazy import lazy_module
from shared.observability.logs import scrub
from shared.observability.metrics import Metrics

if TYPE_CHECKING:
    import requests
else:
    requests = lazy_module("requests")  # loaded by the first alert sent, not at start-up

log = logging.getLogger(__name__)
REPEAT_SUPPRESS_S = 60.0
RATE_ERRORS_ALERT = 20  # EGW00201/EGW00215 answers within RATE_WINDOW_S that count as "sustained"
RATE_WINDOW_S = 10.0
SENT_KEPT = 50  # recent alerts kept for /stats and the dashboard


class Alerter:
    def __init__(self, webhook_url: str = "", *, metrics: Metrics | None = None, timeout_s: float = 3.0,
                 clock: Clock = SYSTEM_CLOCK, suppress_s: float = REPEAT_SUPPRESS_S,
                 rate_errors: int = RATE_ERRORS_ALERT, rate_window_s: float = RATE_WINDOW_S) -> None:
        self._url = webhook_url
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._clock = clock
        self._suppress_s = suppress_s
        self._rate_errors_alert = max(1, rate_errors)
        self._rate_window_s = rate_window_s
        self._last: dict[str, float] = {}
        self._rate_errors: deque[float] = deque()
        self._lock = threading.Lock()
        self._outbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.sent: deque[dict[str, Any]] = deque(maxlen=SENT_KEPT)  # what went out, newest last
        self.delivered = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"Alerter(webhook={'set' if self._url else 'none'}, sent={len(self.sent)})"

    # ---- events --------------------------------------------------------------------------------
    def send(self, event: str, detail: dict[str, Any]) -> bool:
        """Queue one alert; False when the same event went out within the suppression time."""
        now = self._clock.monotonic()
        with self._lock:
            if now - self._last.get(event, -1e18) < self._suppress_s:
                return False
            self._last[event] = now
        clean = {k: scrub(str(v))[:300] for k, v in detail.items()}
        text = f"[kis-gateway] {event}: " + ", ".join(f"{k}={v}" for k, v in clean.items())
        payload = {"text": text, "event": event, "detail": clean, "time": self._clock.time()}
        log.warning("alert %s %s", event, clean, extra={"alert": event})
        if self._metrics is not None:
            self._metrics.inc("alerts_total", event=event)
        self.sent.append(payload)
        if self._url:
            self._outbox.put(payload)
            self._ensure_worker()
        return True

    def breaker_changed(self, old: str, new: str) -> None:
        if self._metrics is not None:
            self._metrics.inc("breaker_transitions_total", to=new)
        if new == "open":
            self.send("breaker_open", {"from": old})
        elif new == "closed" and old != "closed":
            with self._lock:
                was_alerted = "breaker_open" in self._last
            if was_alerted:
                self.send("breaker_closed", {"from": old})

    def rate_limited(self) -> bool:
        """Count one KIS rate-limit answer; alert once they are sustained."""
        now = self._clock.monotonic()
        with self._lock:
            self._rate_errors.append(now)
            while self._rate_errors and now - self._rate_errors[0] > self._rate_window_s:
                self._rate_errors.popleft()
            count = len(self._rate_errors)
        if count >= self._rate_errors_alert:
            return self.send("rate_limit_errors", {"count": count, "window_s": self._rate_window_s})
        return False

    def recent(self) -> list[dict[str, Any]]:
        """Recent alerts (event, detail, time) for /stats and the dashboard; never the webhook URL."""
        return [{"event": p["event"], "detail": p["detail"], "time": p["time"]} for p in list(self.sent)]

    # ---- delivery ------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued alert was posted (or failed); True when the outbox is empty."""
        done = threading.Event()

        def waiter() -> None:
            self._outbox.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout_s)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._deliver, daemon=True, name="alert-webhook")
                self._worker.start()

    def _deliver(self) -> None:
        while True:
            payload = self._outbox.get()
            try:
                self._post(payload)
            finally:
                self._outbox.task_done()

    def _post(self, payload: dict[str, Any]) -> None:
        try:
            resp = requests.post(self._url, json=payload, timeout=self._timeout_s)
            ok = resp.status_code < 300
            reason = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            ok, reason = False, type(exc).__name__
        if ok:
            self.delivered += 1
            return
        self.failed += 1
        # The URL is the webhook's credential: name only the event and the failure kind.
        log.error("alert webhook failed for %s: %s", payload.get("event"), reason)
        if self._metrics is not None:
            self._metrics.inc("alerts_failed_total", event=str(payload.get("event")))
