"""Daily bars (last 30) and period OHLCV with date-window paging."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from shared.kis.errors import KISUnknownSymbolError
from tests.kis.fake_kis import make_client, ok


def bar_row(day: date, close: int = 1000) -> dict:
    return {"stck_bsop_date": day.strftime("%Y%m%d"), "stck_oprc": str(close - 10), "stck_hgpr": str(close + 20),
            "stck_lwpr": str(close - 20), "stck_clpr": str(close), "acml_vol": "500", "acml_tr_pbmn": "500000",
            "prdy_vrss": "-5", "prdy_vrss_sign": "5"}


def weekdays(start: date, end: date) -> list[date]:
    out, d = [], start
    while d <= end:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


class ChartServer:
    """KIS itemchartprice behaviour: ≤100 rows, newest first, within [DATE_1, DATE_2]."""

    def __init__(self, days: list[date], page: int = 100):
        self.days, self.page = days, page

    def __call__(self, seen):
        lo = datetime.strptime(seen.params["FID_INPUT_DATE_1"], "%Y%m%d").date()
        hi = datetime.strptime(seen.params["FID_INPUT_DATE_2"], "%Y%m%d").date()
        rows = [bar_row(d) for d in sorted(self.days, reverse=True) if lo <= d <= hi][: self.page]
        return ok(None, output1={"hts_kor_isnm": "삼성전자", "stck_prpr": "71000"},
                  output2=rows or [{"stck_bsop_date": "", "stck_clpr": ""}])


def test_period_ohlcv_walks_back_by_date_window():
    days = weekdays(date(2025, 1, 1), date(2025, 12, 31))  # 261 rows: pages of 100, 100, 61
    server = ChartServer(days)
    client, fake = make_client(server)
    bars = client.get_period_ohlcv("005930", date(2025, 1, 1), date(2025, 12, 31))
    assert [b.date for b in bars] == days  # every day once, oldest first
    assert len(fake.seen) == 3
    ends = [s.params["FID_INPUT_DATE_2"] for s in fake.seen]
    assert ends[0] == "20251231"
    # each next window ends the day before the oldest row received
    oldest_first_page = sorted(days, reverse=True)[99]
    assert ends[1] == (oldest_first_page - timedelta(days=1)).strftime("%Y%m%d")
    assert all(s.params["FID_INPUT_DATE_1"] == "20250101" for s in fake.seen)
    assert all(s.params["FID_ORG_ADJ_PRC"] == "0" and s.params["FID_PERIOD_DIV_CODE"] == "D" for s in fake.seen)
    assert all(s.headers["tr_id"] == "FHKST03010100" for s in fake.seen)
    b = bars[-1]
    assert (b.open, b.high, b.low, b.close, b.volume, b.change) == (990, 1020, 980, 1000, 500, -5)


def test_period_ohlcv_stops_when_window_exhausted_on_a_full_page():
    days = weekdays(date(2025, 1, 1), date(2025, 5, 31))
    start = sorted(days, reverse=True)[99]  # exactly 100 rows in range
    client, fake = make_client(ChartServer(days))
    bars = client.get_period_ohlcv("005930", start, date(2025, 5, 31), adjusted=False)
    assert len(bars) == 100
    assert len(fake.seen) == 1
    assert fake.seen[0].params["FID_ORG_ADJ_PRC"] == "1"


def test_period_ohlcv_stops_if_server_ignores_the_window():
    days = weekdays(date(2025, 1, 1), date(2025, 12, 31))

    def stuck(seen):  # always the same 100 newest rows
        rows = [bar_row(d) for d in sorted(days, reverse=True)[:100]]
        return ok(None, output1={"hts_kor_isnm": "x"}, output2=rows)

    client, fake = make_client(stuck)
    client.get_period_ohlcv("005930", date(2025, 1, 1), date(2025, 12, 31))
    assert len(fake.seen) == 2


def test_period_ohlcv_empty_window_vs_unknown_symbol():
    client, _ = make_client(ChartServer([]))
    assert client.get_period_ohlcv("005930", date(2025, 1, 4), date(2025, 1, 5)) == []
    client, _ = make_client(lambda s: ok(None, output1={"hts_kor_isnm": "", "stck_prpr": "0"}, output2=[]))
    with pytest.raises(KISUnknownSymbolError):
        client.get_period_ohlcv("999999", date(2025, 1, 1), date(2025, 2, 1))


def test_period_ohlcv_argument_checks():
    client, fake = make_client(ChartServer([]))
    with pytest.raises(ValueError):
        client.get_period_ohlcv("005930", date(2025, 2, 1), date(2025, 1, 1))
    with pytest.raises(ValueError):
        client.get_period_ohlcv("005930", date(2025, 1, 1), date(2025, 2, 1), period="X")
    assert fake.seen == []


def test_daily_prices_last_30_oldest_first():
    days = weekdays(date(2025, 3, 1), date(2025, 4, 30))[-30:]
    gated = []
    client, fake = make_client(lambda s: ok([bar_row(d) for d in reversed(days)]),
                               gate=lambda cc, tr: gated.append((cc, tr)))
    bars = client.get_daily_prices("005930", period="W", adjusted=True)
    assert [b.date for b in bars] == days
    assert fake.seen[0].params == {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930",
                                   "FID_PERIOD_DIV_CODE": "W", "FID_ORG_ADJ_PRC": "1"}
    assert gated == [("reference", "FHKST01010400")]


def test_daily_prices_unknown_symbol():
    client, _ = make_client(lambda s: ok([{"stck_bsop_date": "", "stck_clpr": ""}]))
    with pytest.raises(KISUnknownSymbolError):
        client.get_daily_prices("999999")
