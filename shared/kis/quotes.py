"""Current prices: FHKST01010100 (one symbol, real and paper) and FHKST11300006 (up to 30, real only)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.config import KIS_MULTI_QUOTE_MAX
from shared.kis.errors import KISUnknownSymbolError
from shared.kis.fields import check_symbol, first_row, rows, signed, text, to_decimal, to_int
from shared.kis.http import KISHttp
from shared.kis.models import Quote

PRICE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-price"
PRICE_TR = "FHKST01010100"
MULTI_PATH = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
MULTI_TR = "FHKST11300006"


def get_current_price(http: KISHttp, market: str, symbol: str) -> Quote:
    check_symbol(symbol)
    resp = http.get(PRICE_PATH, PRICE_TR, "quotes", {"FID_COND_MRKT_DIV_CODE": market, "FID_INPUT_ISCD": symbol})
    row = first_row(resp.body.get("output"))
    # KIS answers rt_cd "0" with a zeroed or empty output for a code it does not know.
    if to_int(row.get("stck_prpr")) <= 0:
        raise KISUnknownSymbolError(symbol, msg_cd=text(resp.body.get("msg_cd")), http_status=resp.status,
                                    tr_id=PRICE_TR)
    return quote_from_price_row(symbol, row, resp.received_at)


def get_multi_quotes(http: KISHttp, market: str, symbols: Sequence[str]) -> dict[str, Quote]:
    """One call for up to 30 symbols. Symbols KIS returns no row (or a zero price) for are absent."""
    wanted = list(dict.fromkeys(check_symbol(s) for s in symbols))
    if len(wanted) > KIS_MULTI_QUOTE_MAX:
        raise ValueError(f"multi-quote takes at most {KIS_MULTI_QUOTE_MAX} symbols, got {len(wanted)}")
    if not wanted:
        return {}
    params: dict[str, str] = {}
    for n, symbol in enumerate(wanted, start=1):
        params[f"FID_COND_MRKT_DIV_CODE_{n}"] = market
        params[f"FID_INPUT_ISCD_{n}"] = symbol
    resp = http.get(MULTI_PATH, MULTI_TR, "quotes", params)
    out: dict[str, Quote] = {}
    # Documented as an object, observed as a list of rows: accept both, match rows by code, not position.
    for row in rows(resp.body.get("output")):
        symbol = text(row.get("inter_shrn_iscd"))
        if symbol in wanted and symbol not in out and to_int(row.get("inter2_prpr")) > 0:
            out[symbol] = quote_from_multi_row(symbol, row, resp.received_at)
    return out


def quote_from_price_row(symbol: str, row: dict[str, Any], as_of: datetime | None) -> Quote:
    sign = text(row.get("prdy_vrss_sign"))
    price = to_int(row.get("stck_prpr"))
    change = signed(to_int(row.get("prdy_vrss")), sign)
    return Quote(
        symbol=symbol,
        name=text(row.get("hts_kor_isnm")),  # inquire-price carries no name; multi-quote does
        price=price,
        change=change,
        change_rate=signed(to_decimal(row.get("prdy_ctrt")), sign),
        sign=sign,
        open=to_int(row.get("stck_oprc")),
        high=to_int(row.get("stck_hgpr")),
        low=to_int(row.get("stck_lwpr")),
        volume=to_int(row.get("acml_vol")),
        prev_close=price - change,  # no previous-close field here; stck_sdpr differs after ex-rights
        upper_limit=to_int(row.get("stck_mxpr")),
        lower_limit=to_int(row.get("stck_llam")),
        trade_value=to_int(row.get("acml_tr_pbmn")),
        as_of=as_of,
    )


def quote_from_multi_row(symbol: str, row: dict[str, Any], as_of: datetime | None) -> Quote:
    sign = text(row.get("prdy_vrss_sign"))
    price = to_int(row.get("inter2_prpr"))
    change = signed(to_int(row.get("inter2_prdy_vrss")), sign)
    prev_close = to_int(row.get("inter2_prdy_clpr")) or price - change
    return Quote(
        symbol=symbol,
        name=text(row.get("inter_kor_isnm")),
        price=price,
        change=change,
        change_rate=signed(to_decimal(row.get("prdy_ctrt")), sign),
        sign=sign,
        open=to_int(row.get("inter2_oprc")),
        high=to_int(row.get("inter2_hgpr")),
        low=to_int(row.get("inter2_lwpr")),
        volume=to_int(row.get("acml_vol")),
        prev_close=prev_close,
        upper_limit=to_int(row.get("inter2_mxpr")),
        lower_limit=to_int(row.get("inter2_llam")),
        trade_value=to_int(row.get("acml_tr_pbmn")),
        as_of=as_of,
    )
