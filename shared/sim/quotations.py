"""Quotation TRs: parameters checked the way KIS's query server does, answers from the price model.

Query keys are matched case-insensitively (KIS accepts both). A missing required parameter answers
OPSQ2001 "ERROR INPUT FIELD NOT FOUND [NAME]", a bad value OPSQ2001 "ERROR INVALID NAME" (both HTTP 200).
Unknown codes are not errors: single-symbol TRs answer rt_cd "0" with a zeroed layout (numbers "0",
text ""), the daily TRs with no rows, the multi-quote with no row for that code, search-stock-info
with an empty prdt_name. This is the simulator's model of KIS.
"""

from __future__ import annotations

import threading
from datetime import date, datetime
from functools import lru_cache

from shared.config import KIS_MULTI_QUOTE_MAX
from shared.sim import envelopes as E
from shared.sim import quote_fields as F
from shared.sim.envelopes import Reply
from shared.sim.prices import KST, Bar, PriceModel, session_position
from shared.sim.universe import Instrument, Universe

STOCK_MARKETS = ("J", "NX", "UN")
Params = dict[str, str]


class MissingField(Exception):
    def __init__(self, error: tuple[str, str, str]) -> None:
        self.error = error
        super().__init__(error[2])


def need(params: Params, name: str, allowed: tuple[str, ...] | None = None) -> str:
    if name not in params:
        raise MissingField(E.missing_field(name))
    value = params[name].strip()
    if allowed is not None and value not in allowed:
        raise MissingField(E.invalid_field(name))
    return value


def need_code(params: Params, name: str) -> str:
    value = need(params, name)
    if not value:
        raise MissingField(E.missing_field(name))
    return value.upper()


class Quotations:
    def __init__(self, universe: Universe, model: PriceModel) -> None:
        self.universe = universe
        self.model = model
        self._extremes = lru_cache(maxsize=20_000)(self._extremes_uncached)
        self._template_lock = threading.Lock()
        self._blanks: dict[str, dict[str, str]] = {}

    # ---- FHKST01010100 ---------------------------------------------------------------------
    def inquire_price(self, params: Params, now: float) -> Reply:
        need(params, "FID_COND_MRKT_DIV_CODE", STOCK_MARKETS)
        inst = self.universe.stock(need_code(params, "FID_INPUT_ISCD"))
        if inst is None:
            return E.ok({"output": self._blank("price", now)})
        return E.ok({"output": self._price_output(inst, now)})

    def _price_output(self, inst: Instrument, now: float) -> dict[str, str]:
        q = self.model.quote(inst, now)
        n, _ = session_position(now)
        return F.price_output(inst, q, self._extremes(inst, n))

    def _extremes_uncached(self, inst: Instrument, n: int) -> dict[str, tuple[int, str]]:
        """Highs/lows over the 250 and 260 (52-week) trading days before day n, and this year so far."""
        bars = [self.model.bar(inst, m) for m in range(n - 260, n)]
        year = [b for b in bars if b.day.year == bars[-1].day.year] or bars[-1:]

        def high(seq: list[Bar]) -> tuple[int, str]:
            b = max(seq, key=lambda x: x.high)
            return b.high, b.day.strftime("%Y%m%d")

        def low(seq: list[Bar]) -> tuple[int, str]:
            b = min(seq, key=lambda x: x.low)
            return b.low, b.day.strftime("%Y%m%d")

        return {"w52_high": high(bars), "w52_low": low(bars), "d250_high": high(bars[-250:]),
                "d250_low": low(bars[-250:]), "year_high": high(year), "year_low": low(year)}

    # ---- FHKST11300006 ---------------------------------------------------------------------
    def multi_price(self, params: Params, now: float) -> Reply:
        numbers = sorted({int(k.rsplit("_", 1)[1]) for k in params
                          if k.startswith(("FID_INPUT_ISCD_", "FID_COND_MRKT_DIV_CODE_"))
                          and k.rsplit("_", 1)[1].isdigit()})
        if not numbers:
            raise MissingField(E.missing_field("FID_COND_MRKT_DIV_CODE_1"))
        if numbers[-1] > KIS_MULTI_QUOTE_MAX or numbers[0] < 1:
            return E.business_error(E.TOO_MANY_SYMBOLS)
        rows = []
        for n in numbers:
            code = params.get(f"FID_INPUT_ISCD_{n}", "").strip().upper()
            if not code:
                continue
            need(params, f"FID_COND_MRKT_DIV_CODE_{n}", STOCK_MARKETS)
            inst = self.universe.stock(code)
            if inst is not None:
                rows.append(F.multi_row(inst, self.model.quote(inst, now)))
        return E.ok({"output": rows})

    # ---- FHPUP02100000 ---------------------------------------------------------------------
    def index_price(self, params: Params, now: float) -> Reply:
        need(params, "FID_COND_MRKT_DIV_CODE", ("U",))
        inst = self.universe.index(need_code(params, "FID_INPUT_ISCD"))
        if inst is None:
            return E.ok({"output": self._blank("index", now)})
        return E.ok({"output": self._index_output(inst, now)})

    def _index_output(self, inst: Instrument, now: float) -> dict[str, str]:
        q = self.model.quote(inst, now)
        n, _ = session_position(now)
        ext = self._extremes(inst, n)
        year = (max(ext["year_high"][0], q.high), ext["year_high"][1], min(ext["year_low"][0], q.low),
                ext["year_low"][1])
        return F.index_output(q, self.model.bar(inst, n - 1).volume, year)

    # ---- FHKST01010400 ---------------------------------------------------------------------
    def daily_price(self, params: Params, now: float) -> Reply:
        need(params, "FID_COND_MRKT_DIV_CODE", STOCK_MARKETS)
        code = need_code(params, "FID_INPUT_ISCD")
        period = need(params, "FID_PERIOD_DIV_CODE", ("D", "W", "M"))
        need(params, "FID_ORG_ADJ_PRC", ("0", "1"))
        inst = self.universe.stock(code)
        if inst is None:
            return E.ok({"output": []})
        today = datetime.fromtimestamp(now, KST).date()
        bars = self.model.history(inst, now, None, today, period, 31)
        return E.ok({"output": F.daily_rows(bars, inst)[:30]})

    # ---- FHKST03010100 ---------------------------------------------------------------------
    def period_chart(self, params: Params, now: float) -> Reply:
        need(params, "FID_COND_MRKT_DIV_CODE", STOCK_MARKETS)
        code = need_code(params, "FID_INPUT_ISCD")
        start = _date_param(params, "FID_INPUT_DATE_1")
        end = _date_param(params, "FID_INPUT_DATE_2")
        period = need(params, "FID_PERIOD_DIV_CODE", ("D", "W", "M", "Y"))
        need(params, "FID_ORG_ADJ_PRC", ("0", "1"))
        inst = self.universe.stock(code)
        if inst is None:
            return E.ok({"output1": self._blank("chart", now), "output2": []})
        q = self.model.quote(inst, now)
        n, _ = session_position(now)
        bars = self.model.history(inst, now, start, end, period, 100) if start <= end else []
        return E.ok({"output1": F.chart_summary(inst, q, self.model.bar(inst, n - 1)),
                     "output2": F.chart_rows(bars)})

    # ---- CTPF1002R -------------------------------------------------------------------------
    def stock_info(self, params: Params, now: float) -> Reply:
        need(params, "PRDT_TYPE_CD", ("300", "301", "302", "306"))
        inst = self.universe.stock(need_code(params, "PDNO"))
        if inst is None:
            return E.ok({"output": self._blank("info", now)})
        listed = inst.listed.strftime("%Y%m%d")
        return E.ok({"output": F.stock_info(inst, self.model.quote(inst, now), listed)})

    # ---- CTPF1604R -------------------------------------------------------------------------
    def product_info(self, params: Params, now: float) -> Reply:
        """상품기본조회 (python-kis asks it before quoting); stocks (PRDT_TYPE_CD 300) only."""
        product_type = need(params, "PRDT_TYPE_CD")
        inst = self.universe.stock(need_code(params, "PDNO")) if product_type == "300" else None
        if inst is None:  # KIS's answer for a product it does not hold is unconfirmed: no row
            return E.ok({"output": F.blank(F.product_info(self.universe.stock("005930") or
                                                           next(iter(self.universe.stocks.values()))))})
        return E.ok({"output": F.product_info(inst)})

    # ---- unknown codes -----------------------------------------------------------------------
    def _blank(self, kind: str, now: float) -> dict[str, str]:
        """A layout with every value zeroed, built once from a real symbol."""
        if kind not in self._blanks:
            inst = self.universe.stock("005930") or next(iter(self.universe.stocks.values()))
            if kind == "price":
                layout = self._price_output(inst, now)
            elif kind == "index":
                layout = self._index_output(next(iter(self.universe.indices.values())), now)
            elif kind == "chart":
                n, _ = session_position(now)
                layout = F.chart_summary(inst, self.model.quote(inst, now), self.model.bar(inst, n - 1))
            else:
                layout = F.stock_info(inst, self.model.quote(inst, now), "")
            with self._template_lock:
                self._blanks[kind] = F.blank(layout)
        return dict(self._blanks[kind])


def _date_param(params: Params, name: str) -> date:
    value = need(params, name)
    try:
        day = datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise MissingField(E.invalid_field(name)) from None
    return day
