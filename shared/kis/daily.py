"""Daily bars: FHKST01010400 (last 30 periods) and FHKST03010100 (a date range, paged by date window)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from shared.kis.errors import KISUnknownSymbolError
from shared.kis.fields import check_symbol, first_row, rows, signed, text, to_date, to_int
from shared.kis.http import KISHttp
from shared.kis.models import DailyBar

DAILY_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-price"
DAILY_TR = "FHKST01010400"
PERIOD_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
PERIOD_TR = "FHKST03010100"
PERIOD_PAGE_ROWS = 100  # KIS returns at most 100 rows per itemchartprice call
MAX_PERIOD_PAGES = 200  # a backstop against a server that never shortens its answer
DAILY_PERIODS = ("D", "W", "M")
CHART_PERIODS = ("D", "W", "M", "Y")


def get_daily_prices(http: KISHttp, market: str, symbol: str, period: str = "D",
                     adjusted: bool = True) -> list[DailyBar]:
    """The last 30 days/weeks/months, oldest first."""
    check_symbol(symbol)
    if period not in DAILY_PERIODS:
        raise ValueError(f"period {period!r} must be one of {DAILY_PERIODS}")
    params = {
        "FID_COND_MRKT_DIV_CODE": market,
        "FID_INPUT_ISCD": symbol,
        "FID_PERIOD_DIV_CODE": period,
        # This TR reads 1 as adjusted (current portal and official sample; an old Postman file says the reverse).
        "FID_ORG_ADJ_PRC": "1" if adjusted else "0",
    }
    resp = http.get(DAILY_PATH, DAILY_TR, "reference", params)
    bars = _bars(resp.body.get("output"))
    if not bars:
        raise KISUnknownSymbolError(symbol, msg_cd=text(resp.body.get("msg_cd")), http_status=resp.status,
                                    tr_id=DAILY_TR)
    return sorted(bars.values(), key=lambda b: b.date)


def get_period_ohlcv(http: KISHttp, market: str, symbol: str, start: date, end: date, period: str = "D",
                     adjusted: bool = True) -> list[DailyBar]:
    """Bars from start to end inclusive, oldest first, however many calls of ≤100 rows that takes.

    No tr_cont paging on this TR: the next call asks for the window ending the day before the oldest row
    received, and the walk stops on a short page or when the window is used up.
    """
    check_symbol(symbol)
    if period not in CHART_PERIODS:
        raise ValueError(f"period {period!r} must be one of {CHART_PERIODS}")
    if start > end:
        raise ValueError(f"start {start} is after end {end}")
    found: dict[date, DailyBar] = {}
    window_end = end
    for page in range(MAX_PERIOD_PAGES):
        params = {
            "FID_COND_MRKT_DIV_CODE": market,
            "FID_INPUT_ISCD": symbol,
            "FID_INPUT_DATE_1": start.strftime("%Y%m%d"),
            "FID_INPUT_DATE_2": window_end.strftime("%Y%m%d"),
            "FID_PERIOD_DIV_CODE": period,
            "FID_ORG_ADJ_PRC": "0" if adjusted else "1",  # here 0 is adjusted, in every source
        }
        resp = http.get(PERIOD_PATH, PERIOD_TR, "reference", params)
        page_rows = rows(resp.body.get("output2"))
        bars = _bars(page_rows)
        if page == 0 and not bars and not _known_symbol(resp.body.get("output1")):
            raise KISUnknownSymbolError(symbol, msg_cd=text(resp.body.get("msg_cd")), http_status=resp.status,
                                        tr_id=PERIOD_TR)
        found.update({d: b for d, b in bars.items() if start <= d <= end})
        if len(page_rows) < PERIOD_PAGE_ROWS or not bars:
            break
        next_end = min(bars) - timedelta(days=1)
        if next_end < start or next_end >= window_end:  # window used up, or the server did not move back
            break
        window_end = next_end
    return sorted(found.values(), key=lambda b: b.date)


def _known_symbol(summary: Any) -> bool:
    row = first_row(summary)
    return bool(text(row.get("hts_kor_isnm"))) or to_int(row.get("stck_prpr")) > 0


def _bars(payload: Any) -> dict[date, DailyBar]:
    out: dict[date, DailyBar] = {}
    for row in rows(payload):
        day = to_date(row.get("stck_bsop_date"))
        if day is None:  # KIS pads an empty answer with one blank row
            continue
        sign = text(row.get("prdy_vrss_sign"))
        out[day] = DailyBar(
            date=day,
            open=to_int(row.get("stck_oprc")),
            high=to_int(row.get("stck_hgpr")),
            low=to_int(row.get("stck_lwpr")),
            close=to_int(row.get("stck_clpr")),
            volume=to_int(row.get("acml_vol")),
            trade_value=to_int(row.get("acml_tr_pbmn")),
            change=signed(to_int(row.get("prdy_vrss")), sign),
            sign=sign,
        )
    return out
