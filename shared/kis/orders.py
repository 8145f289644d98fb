"""Cash orders: TTTC0012U buy / TTTC0011U sell (V-prefixed on paper). Sent once, never retried."""

from __future__ import annotations

from decimal import Decimal

from shared.config import Secret
from shared.kis.account import account_parts
from shared.kis.errors import KISBusinessError, KISOrderRejectedError
from shared.kis.fields import check_symbol, first_row, text, to_time
from shared.kis.http import KISHttp
from shared.kis.models import OrderResult, OrderType, Side

ORDER_PATH = "/uapi/domestic-stock/v1/trading/order-cash"
ORDER_TRS: dict[str, str] = {"buy": "TTTC0012U", "sell": "TTTC0011U"}
ORDER_DIVISIONS: dict[str, str] = {"limit": "00", "market": "01"}


def order_price(order_type: str, price: Decimal | int | None) -> int | None:
    """KRX stock prices are whole won; a market order carries no price (ORD_UNPR "0")."""
    if order_type == "market":
        if price not in (None, 0):
            raise ValueError("a market order takes no price")
        return None
    if price is None or isinstance(price, bool):
        raise ValueError("a limit order needs a price")
    value = Decimal(price)
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise ValueError(f"limit price {price} must be a positive whole number of won")
    return int(value)


def place_cash_order(http: KISHttp, account_no: Secret, side: Side, symbol: str, quantity: int,
                     order_type: OrderType, price: Decimal | int | None) -> OrderResult:
    if side not in ORDER_TRS:
        raise ValueError(f"side {side!r} must be 'buy' or 'sell'")
    if order_type not in ORDER_DIVISIONS:
        raise ValueError(f"order_type {order_type!r} must be 'limit' or 'market'")
    check_symbol(symbol)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"quantity {quantity!r} must be a positive integer")
    unit_price = order_price(order_type, price)
    cano, product = account_parts(account_no)
    body = {  # POST keys upper-case, values strings
        "CANO": cano,
        "ACNT_PRDT_CD": product,
        "PDNO": symbol,
        "ORD_DVSN": ORDER_DIVISIONS[order_type],
        "ORD_QTY": str(quantity),
        "ORD_UNPR": str(unit_price or 0),
        # Exchange: the official sample order_cash.py requires it (raises when empty) since 2025-07; the portal
        # marks it optional. KRX is the only value paper accepts.
        "EXCG_ID_DVSN_CD": "KRX",
    }
    try:
        resp = http.post(ORDER_PATH, ORDER_TRS[side], "orders", body)
    except KISOrderRejectedError:
        raise
    except KISBusinessError as exc:  # HTTP 200 with rt_cd != "0": KIS looked at the order and said no
        raise KISOrderRejectedError(exc.msg1, msg_cd=exc.msg_cd, http_status=exc.http_status,
                                    tr_id=exc.tr_id) from None
    row = first_row(resp.body.get("output"))
    return OrderResult(
        order_no=text(row.get("ODNO") or row.get("odno")),
        org_no=text(row.get("KRX_FWDG_ORD_ORGNO") or row.get("krx_fwdg_ord_orgno")),
        time=to_time(row.get("ORD_TMD") or row.get("ord_tmd")),
        side=side,
        symbol=symbol,
        quantity=quantity,
        price=unit_price,
    )
