"""Per-app-key sliding 1-second windows, and the counters behind GET /__admin/stats.

A call is granted when fewer than `limit` calls were granted in the closed second before it (a sliding
log, the stricter reading of KIS's unconfirmed window). Refused calls do not occupy a slot: a client
that backs off after EGW00201 is not punished further, and "granted calls per second" stays a clean
figure. The same rule, with `ledger_tps`, guards balance and order TRs (EGW00215); a call must pass both,
and a ledger refusal takes no app-key slot either.
The stats keep an independent log of granted calls to report the busiest 1-second window per app and
count violations (grants above the limit), which must stay 0.
Callers hold the simulator's gate lock; nothing here locks.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from shared.sim import envelopes as E
from shared.sim.auth import app_label

WINDOW_S = 1.0


class SlidingWindow:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._granted: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._granted and self._granted[0] < now - WINDOW_S:
            self._granted.popleft()

    def has_room(self, now: float) -> bool:
        self._trim(now)
        return len(self._granted) < self.limit

    def take(self, now: float) -> None:
        self._granted.append(now)


class RateWindows:
    def __init__(self, limit: int, ledger_tps: int) -> None:
        self.limit = limit
        self.ledger_tps = ledger_tps
        self._app: dict[str, SlidingWindow] = {}
        self._ledger: dict[str, SlidingWindow] = {}

    def admit(self, app_key: str, now: float, ledger: bool) -> tuple[int, str, str] | None:
        """None and the call is counted, or the refusal (EGW00201 / EGW00215) and nothing is counted."""
        window = self._app.setdefault(app_key, SlidingWindow(self.limit))
        if not window.has_room(now):
            return E.RATE_LIMITED
        ledger_window = None
        if ledger and self.ledger_tps:
            ledger_window = self._ledger.setdefault(app_key, SlidingWindow(self.ledger_tps))
            if not ledger_window.has_room(now):
                return E.LEDGER_LIMITED
            ledger_window.take(now)
        window.take(now)
        return None

    def reset(self) -> None:
        self._app.clear()
        self._ledger.clear()


class SimStats:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reset()

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()  # granted REST calls by tr_id
        self.refused: Counter[str] = Counter()  # refused before the window, by msg_cd
        self.errors: Counter[str] = Counter()  # granted calls answered with an error, by msg_cd
        self.oauth: Counter[str] = Counter()  # successful oauth answers by endpoint
        self.app_calls: Counter[str] = Counter()
        self.app_refused: Counter[str] = Counter()
        self.max_window: dict[str, int] = {}
        self.violations = 0
        self.app_violations: Counter[str] = Counter()
        self.orders = 0
        self.tokens_issued = 0  # successful tokenP answers (each would notify the account owner)
        self.tokens_new = 0  # distinct tokens created
        self.timeouts = 0
        self.dropped = 0
        self._log: dict[str, deque[float]] = {}

    def granted(self, app_key: str, tr_id: str, now: float) -> None:
        label = app_label(app_key)
        self.calls[tr_id] += 1
        self.app_calls[label] += 1
        log = self._log.setdefault(label, deque())
        while log and log[0] < now - WINDOW_S:
            log.popleft()
        log.append(now)
        if len(log) > self.max_window.get(label, 0):
            self.max_window[label] = len(log)
        if len(log) > self.limit:
            self.violations += 1
            self.app_violations[label] += 1

    def refusal(self, app_key: str, msg_cd: str) -> None:
        self.refused[msg_cd] += 1
        if app_key:
            self.app_refused[app_label(app_key)] += 1

    def error(self, msg_cd: str) -> None:
        self.errors[msg_cd] += 1

    def snapshot(self) -> dict[str, Any]:
        apps = sorted(set(self.app_calls) | set(self.app_refused))
        return {
            "calls": dict(self.calls),
            "refused": dict(self.refused),
            "errors": dict(self.errors),
            "oauth": dict(self.oauth),
            "by_app": {a: {"calls": self.app_calls[a], "refused": self.app_refused[a],
                           "violations": self.app_violations[a]} for a in apps},
            "max_calls_in_any_1s_window": dict(self.max_window),
            "violations": self.violations,
            "orders": self.orders,
            "tokens_issued": self.tokens_issued,
            "tokens_new": self.tokens_new,
            "timeouts": self.timeouts,
            "dropped": self.dropped,
            "total_calls": sum(self.calls.values()),
            "total_refused": sum(self.refused.values()),
        }
