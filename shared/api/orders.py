"""HTTP handlers for orders and the account balance, plus the older gateway's trading routes.

Orders bypass every cache and batch: each goes to KIS once through the reserved "orders" share, never
retried automatically. `POST /v1/orders` requires an `Idempotency-Key` header. The older routes
(`/api/trading/buy|sell`) accept one when sent; their jobs that send none get no deduplication, as before.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from flask import Request

from shared.api.access import principal_of
from shared.api.errors import ApiError, bad_request
from shared.api.registry import Reply
from shared.api.validation import IDEMPOTENCY_KEY_PATTERN, json_body
from shared.kis.errors import KISError
from shared.lazy import lazy_module
from shared.orders.service import IdempotencyConflict, NotSentError, Order, OrderAnswer

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared.api import models
    from shared.api.parts import Gateway
else:
    models = lazy_module("shared.api.models")  # the input models, imported by the first order or balance

MAX_ORDER_BODY_BYTES = 1024
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
BALANCE_DEADLINE_S = 15.0  # several pages, each waiting for its own rate grant


# ---- parsing --------------------------------------------------------------------------------------

def _order_body(request: Request) -> dict[str, Any]:
    if (request.content_length or 0) > MAX_ORDER_BODY_BYTES:
        raise ApiError(413, f"body is larger than {MAX_ORDER_BODY_BYTES} bytes", code="too_large")
    data = request.get_data(cache=True)
    if len(data) > MAX_ORDER_BODY_BYTES:
        raise ApiError(413, f"body is {len(data)} bytes; at most {MAX_ORDER_BODY_BYTES}", code="too_large")
    if not data.strip():
        raise bad_request("body is required: a JSON object")
    return json_body(data)


def parse_order(body: dict[str, Any]) -> Order:
    o = models.parse(models.Order, body)
    return Order(o.side, o.symbol, o.quantity, o.order_type, o.price)


def parse_legacy_order(body: dict[str, Any], side: str) -> Order:
    o = models.parse(models.LegacyOrder, body)
    return Order(side, o.stock_code, o.quantity, o.kind, o.price)  # type: ignore[arg-type]


def idempotency_key(request: Request, *, required: bool) -> str | None:
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None or not raw.strip():
        if required:
            raise bad_request(f"the {IDEMPOTENCY_HEADER} header is required: a unique id per order (e.g. a UUID), "
                              "sent again unchanged when repeating the same order", IDEMPOTENCY_HEADER)
        return None
    key = raw.strip()
    if not IDEMPOTENCY_KEY_RE.match(key):
        raise bad_request(f"the {IDEMPOTENCY_HEADER} header must be 8..100 characters of A-Z a-z 0-9 . _ : -",
                          IDEMPOTENCY_HEADER)
    return key


# ---- handlers -------------------------------------------------------------------------------------

def _place(gw: Gateway, request: Request, order_of: Callable[[], Order], *, key_required: bool) -> OrderAnswer:
    principal = principal_of(request)  # checked by the serve path against the route's scope
    order = order_of()
    if gw.symbols is not None and not gw.symbols.is_known("order", order.symbol):  # never sent to KIS
        raise ApiError(400, f"unknown symbol {order.symbol}: not in the symbol master", field="symbol",
                       code="unknown_symbol")
    key = idempotency_key(request, required=key_required)
    try:
        answer = gw.orders.place(order, idempotency_key=key, caller=principal.id)
    except IdempotencyConflict as exc:
        code = "idempotency_in_progress" if exc.in_progress else "idempotency_mismatch"
        raise ApiError(409, str(exc), field=IDEMPOTENCY_HEADER, code=code,
                       headers={"Retry-After": "1"} if exc.in_progress else None) from None
    if answer.status >= 500 or answer.status == 429:  # not sent: the caller may retry, not a stored answer
        err = answer.body["error"]
        retry = answer.body.get("retry_after_s")
        raise ApiError(answer.status, err["message"], code=err["code"],
                       headers={"Retry-After": str(retry)} if retry else None)
    return answer


def place_order(gw: Gateway, request: Request) -> Reply:
    """POST /v1/orders {"side", "symbol", "quantity", "order_type", "price"} + Idempotency-Key."""
    answer = _place(gw, request, lambda: parse_order(_order_body(request)), key_required=True)
    return answer.body, answer.status


def _legacy_order(gw: Gateway, request: Request, side: str) -> Reply:
    answer = _place(gw, request, lambda: parse_legacy_order(_order_body(request), side), key_required=False)
    return {"success": answer.body.get("outcome") == "accepted", **answer.body}, answer.status


def legacy_buy(gw: Gateway, request: Request) -> Reply:
    """POST /api/trading/buy {"stock_code", "quantity", "price"?, "order_type"?} (older gateway)."""
    return _legacy_order(gw, request, "buy")


def legacy_sell(gw: Gateway, request: Request) -> Reply:
    """POST /api/trading/sell, as legacy_buy."""
    return _legacy_order(gw, request, "sell")


def _balance(gw: Gateway) -> dict[str, Any]:
    try:
        return gw.orders.balance()
    except NotSentError as exc:
        raise ApiError(exc.status, str(exc), code=exc.code,
                       headers={"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None) from None
    except KISError as exc:
        # A read: the caller may simply ask again. msg_cd only; KIS messages are not passed through.
        raise ApiError(502, f"KIS could not answer the balance ({exc.msg_cd or type(exc).__name__})",
                       code="kis_error", headers={"Retry-After": "1"}) from None


def account_balance(gw: Gateway, request: Request) -> Reply:
    """GET /v1/account/balance: every page of holdings and the account totals, straight from KIS."""
    principal_of(request)
    return _balance(gw), 200


def legacy_balance(gw: Gateway, request: Request) -> Reply:
    """POST /api/account/balance (older gateway): an empty JSON body."""
    principal_of(request)
    models.parse(models.Empty, json_body(request.get_data()))
    return {"success": True, "data": _balance(gw)}, 200
