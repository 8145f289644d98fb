"""Orders and the account balance: sent once, answered once, repeated from the record.

Orders and balance never touch the caches or the batch drains: each goes straight to KIS through the
breaker and the shared limiter's reserved "orders" share (`call_kis_once`), with no automatic retry.
With an idempotency key the first request claims the key, sends the order and stores the answer; repeats
with the same body get that stored answer (waiting a bounded time while the first is still out), a
different body under the same key is a conflict. When KIS may have received the order but did not
answer (timeout after sending, connection lost, 5xx) the outcome is stored as `unknown` and the order
is never sent again under that key: only the account (balance, order history) can tell what happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.kis.errors import (
    KISAuthError,
    KISConfigError,
    KISError,
    KISOrderRejectedError,
    KISRateLimitError,
    KISServerError,
    KISTokenExpiredError,
    KISTokenInvalidError,
    KISTransportError,
    was_not_sent,
)
from shared.kis.models import Balance, OrderResult, OrderType, Side, plain
from shared.orders.idempotency import DONE, IdempotencyRecord, IdempotencyStore

log = logging.getLogger(__name__)

BALANCE_ROUTE = "/v1/account/balance"
POLL_S = 0.05


@dataclass(frozen=True)
class Order:
    side: Side
    symbol: str
    quantity: int
    order_type: OrderType
    price: int | None  # whole won; None for a market order

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "symbol": self.symbol, "quantity": self.quantity,
                "order_type": self.order_type, "price": self.price}

    def fingerprint(self) -> str:
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class OrderAnswer:
    status: int
    body: dict[str, Any]
    replayed: bool = False  # True when this is a stored answer to an earlier request


class IdempotencyConflict(Exception):
    """A key reused with another body (`in_progress` False) or still being worked on by its first request."""

    def __init__(self, message: str, *, in_progress: bool) -> None:
        self.in_progress = in_progress
        super().__init__(message)


class NotSentError(Exception):
    """KIS certainly did not take the order (or answer the balance): the caller may try again."""

    def __init__(self, message: str, *, status: int = 503, code: str = "kis_unavailable",
                 retry_after_s: int | None = 1) -> None:
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s
        super().__init__(message)


# Raised before any byte left for KIS: breaker open, no rate grant in time, no token. Injected by the
# gateway wiring (their modules sit above this one), matched by class.
NotSentBeforeCall = tuple[type[BaseException], ...]


class _NeverLeft(Exception):
    """A failure before any request to KIS was attempted (Redis, limiter, token store, breaker, config)."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(type(cause).__name__)


def _attempt(fn: Callable[[], Any]) -> Any:
    """Run one send; a failure before anything was put on the wire becomes _NeverLeft."""
    try:
        return fn()
    except Exception as exc:
        if was_not_sent(exc):
            raise _NeverLeft(exc) from exc
        raise


def classify_failure(exc: BaseException, not_sent_before_call: NotSentBeforeCall = (),
                     busy_before_call: NotSentBeforeCall = ()) -> NotSentError | None:
    """A NotSentError when KIS certainly did not act on the request, None when it may have. `busy_before_call`
    are the failures that mean "no rate grant within the deadline": the budget is in use, ask again (429)."""
    if isinstance(exc, _NeverLeft):
        inner = classify_failure(exc.cause, not_sent_before_call, busy_before_call)
        if inner is not None and inner.code in ("token_unavailable", "rate_budget_busy"):
            return inner
        return NotSentError(f"not sent to KIS ({exc}); safe to retry", retry_after_s=1)
    if isinstance(exc, busy_before_call):
        return NotSentError("not sent to KIS: the budget for account calls is in use and no rate grant came "
                            "within the deadline; safe to retry", status=429, code="rate_budget_busy",
                            retry_after_s=1)
    if isinstance(exc, not_sent_before_call):
        name = type(exc).__name__
        if getattr(exc, "code", None) == "token_unavailable":  # the refresh function was asked for a token
            return NotSentError(f"not sent to KIS ({name}): no KIS token yet; safe to retry",
                                code="token_unavailable", retry_after_s=30)
        return NotSentError(f"not sent to KIS ({name}); safe to retry", retry_after_s=1)
    if isinstance(exc, KISRateLimitError):  # refused at KIS's gateway (EGW00201/EGW00215)
        return NotSentError("KIS rate limit; not taken, safe to retry", retry_after_s=1)
    if isinstance(exc, KISAuthError):
        return NotSentError("KIS refused the access token; not taken", retry_after_s=5)
    if isinstance(exc, KISConfigError):
        return NotSentError("KIS refused the gateway's configuration; not taken", status=502,
                            code="kis_config", retry_after_s=None)
    if isinstance(exc, KISTransportError) and not exc.sent:
        return NotSentError("could not reach KIS; not sent, safe to retry", retry_after_s=1)
    return None


class OrderDesk:
    def __init__(
        self,
        *,
        send: Callable[[Order], OrderResult],
        balance: Callable[[], Balance],
        refresh_token: Callable[[], None],
        store: IdempotencyStore,
        not_sent_before_call: NotSentBeforeCall = (),
        busy_before_call: NotSentBeforeCall = (),
        clock: Clock = SYSTEM_CLOCK,
        repeat_wait_s: float = 10.0,
        stale_after_s: float = 120.0,
    ) -> None:
        self._send = send
        self._balance = balance
        self._refresh_token = refresh_token
        self._store = store
        self._not_sent = not_sent_before_call
        self._busy = busy_before_call
        self._clock = clock
        self.repeat_wait_s = repeat_wait_s
        self.stale_after_s = stale_after_s

    # ---- orders --------------------------------------------------------------------------------
    def place(self, order: Order, *, idempotency_key: str | None, caller: str) -> OrderAnswer:
        """Send `order` once per (caller, key). Without a key (older jobs only) nothing is deduplicated."""
        if idempotency_key is None:
            status, body, _ = self._execute(order, None)
            return OrderAnswer(status, body)
        record_key = f"{caller}:{idempotency_key}"
        deadline = self._clock.monotonic() + self.repeat_wait_s
        owner = uuid.uuid4().hex
        while True:
            claim = self._store.claim(record_key, order.fingerprint(), owner)
            if claim.won:
                return self._first(order, idempotency_key, record_key, owner)
            record: IdempotencyRecord | None = claim.record
            while record is not None:
                answer = self._answer_for_repeat(order, idempotency_key, record, deadline)
                if answer is not None:
                    return answer
                self._clock.sleep(POLL_S)
                record = self._store.get(record_key)
            # The first request released the key (its order never reached KIS): this one may send.

    def _first(self, order: Order, key: str, record_key: str, owner: str) -> OrderAnswer:
        status, body, sent = self._execute(order, key)
        try:
            if sent:
                self._store.finish(record_key, owner, status, body)
            else:
                self._store.release(record_key, owner)
        except Exception:
            # The caller still gets this answer; repeats see the claim until it is stale, then "unknown".
            log.exception("could not settle the idempotency record of an order")
        return OrderAnswer(status, body)

    def _answer_for_repeat(self, order: Order, key: str, record: IdempotencyRecord,
                           deadline: float) -> OrderAnswer | None:
        if record.fingerprint != order.fingerprint():
            raise IdempotencyConflict(
                "Idempotency-Key was already used with a different order body (side, symbol, quantity, "
                "order_type or price differ); use a new key for a new order", in_progress=False)
        if record.state == DONE and record.status is not None and record.body is not None:
            return OrderAnswer(record.status, record.body, replayed=True)
        if self._clock.time() - record.created_at > self.stale_after_s:
            # The first request's instance stopped without settling: it may have sent the order.
            return OrderAnswer(202, self._unknown_body(order, key, "the request that used this key stopped "
                                                                  "before recording KIS's answer"), replayed=True)
        if self._clock.monotonic() >= deadline:
            raise IdempotencyConflict("an order with this Idempotency-Key is still in progress; repeat the "
                                      "request in a moment to get its answer", in_progress=True)
        return None

    def _execute(self, order: Order, key: str | None) -> tuple[int, dict[str, Any], bool]:
        """(status, body, sent): sent is False only when KIS certainly did not receive the order."""
        try:
            try:
                result = _attempt(lambda: self._send(order))
            except (KISTokenExpiredError, KISTokenInvalidError):
                # EGW00121/EGW00123 come from KIS's gateway before the order reaches the exchange, so KIS
                # did not take it: one new token and exactly one more send cannot place it twice.
                try:
                    self._refresh_token()
                except Exception as exc:
                    raise _NeverLeft(exc) from exc
                result = _attempt(lambda: self._send(order))
        except KISOrderRejectedError as exc:
            body: dict[str, Any] = {"outcome": "rejected", "idempotency_key": key, "order": order.to_json(),
                    "reason": exc.msg1 or "rejected by KIS", "kis_code": exc.msg_cd or None}
            return 422, body, True
        except Exception as exc:
            refused = classify_failure(exc, self._not_sent, self._busy)
            if refused is not None:
                log.warning("order not sent: %s", refused)
                body = {"outcome": "not_sent", "idempotency_key": key, "order": order.to_json(),
                        "error": {"code": refused.code, "message": str(refused)}}
                if refused.retry_after_s is not None:
                    body["retry_after_s"] = refused.retry_after_s
                return refused.status, body, False
            if isinstance(exc, KISError):
                log.error("order outcome unknown: %s %s", type(exc).__name__, exc.msg_cd)
            else:
                log.exception("order outcome unknown after an unexpected error")
            why = ("KIS did not answer in time" if isinstance(exc, KISTransportError | KISServerError)
                   else "the gateway failed while sending")
            return 202, self._unknown_body(order, key, why), True
        return 200, {"outcome": "accepted", "idempotency_key": key, "order": _accepted(order, result)}, True

    @staticmethod
    def _unknown_body(order: Order, key: str | None, why: str) -> dict[str, Any]:
        return {"outcome": "unknown", "idempotency_key": key, "order": order.to_json(),
                "message": f"{why}: the order may or may not have been placed. It will not be sent again; "
                           f"check {BALANCE_ROUTE} (and the KIS order history) before placing it anew.",
                "check": BALANCE_ROUTE}

    # ---- balance -------------------------------------------------------------------------------
    def balance(self) -> dict[str, Any]:
        """Every page of holdings plus the account totals. Raises NotSentError or the KIS error. `balance` (the
        constructor's) is a read with the market reads' retry policy, the one token refresh included (the gateway
        gives it `KISGate.call`): it is not asked again here."""
        try:
            bal = _attempt(self._balance)
        except Exception as exc:
            refused = classify_failure(exc, self._not_sent, self._busy)
            if refused is not None:
                raise refused from None
            raise
        positions = [plain(p) for p in bal.positions]  # Decimal as a string keeps exact figures in JSON
        return {"positions": positions, "count": len(positions), "totals": plain(bal.totals),
                "as_of": datetime.now(UTC).isoformat(timespec="milliseconds")}


def _accepted(order: Order, result: OrderResult) -> dict[str, Any]:
    return {"order_no": result.order_no, "org_no": result.org_no,
            "time": result.time.isoformat() if result.time else None, **order.to_json()}

