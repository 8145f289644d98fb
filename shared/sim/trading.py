"""Accounts: cash orders and the paged balance.

An account (CANO + ACNT_PRDT_CD, any 8 + 2 digits) is opened on first use with cash and a deterministic
set of holdings, enough for more than one balance page. Orders fill at once — limit orders at their
price, other divisions at the current price — so a following balance shows them; market hours are not
enforced. Balance pages: 50 rows real / 20 paper, sorted by code; the response header tr_cont is "M"
when another page follows and "D" on the last; ctx_area_nk100 carries the last code sent, and the
next page wants request header tr_cont "N" with CTX_AREA_NK100 echoed back.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import datetime

from shared.sim import envelopes as E
from shared.sim.config import SimConfig
from shared.sim.envelopes import Reply
from shared.sim.prices import KST, PriceModel
from shared.sim.quotations import MissingField, Params, need
from shared.sim.ticks import on_tick
from shared.sim.universe import Instrument, Universe

ORDER_SIDES = {"TTTC0012U": "buy", "TTTC0802U": "buy", "TTTC0011U": "sell", "TTTC0801U": "sell"}
ORDER_DIVISIONS = frozenset({"00", "01", "02", "03", "04", "05", "06", "07", "11", "12", "13", "14", "15", "16",
                             "21", "22", "23", "24"})
BALANCE_PARAMS = ("AFHR_FLPR_YN", "OFL_YN", "INQR_DVSN", "UNPR_DVSN", "FUND_STTL_ICLD_YN",
                  "FNCG_AMT_AUTO_RDPT_YN", "PRCS_DVSN")


def order_side(tr_id: str) -> str | None:
    """buy/sell for a real or paper (V-prefixed) order TR id."""
    return ORDER_SIDES.get("T" + tr_id[1:] if tr_id.startswith("V") else tr_id)


@dataclass
class Holding:
    code: str
    qty: int
    avg_price: float
    bought_today: int = 0
    sold_today: int = 0


@dataclass
class Account:
    cash: int
    holdings: dict[str, Holding] = field(default_factory=dict)
    bought_today: int = 0
    sold_today: int = 0


class Accounts:
    def __init__(self, cfg: SimConfig, universe: Universe, model: PriceModel) -> None:
        self.cfg = cfg
        self.universe = universe
        self.model = model
        self._accounts: dict[tuple[str, str], Account] = {}
        self._order_no = 0
        self._lock = threading.Lock()
        # Instant of each account's last first-page balance inquiry: its continuation pages are priced at it,
        # so one paged inquiry is one snapshot (positions and totals agree across pages).
        self._inquiry_at: dict[tuple[str, str], float] = {}

    def reset(self) -> None:
        with self._lock:
            self._accounts.clear()
            self._order_no = 0

    def _account(self, cano: str, product: str, now: float) -> Account:
        key = (cano, product)
        account = self._accounts.get(key)
        if account is None:
            account = self._open(cano, now)
            self._accounts[key] = account
        return account

    def _open(self, cano: str, now: float) -> Account:
        rng = random.Random(f"account:{self.cfg.seed}:{cano}")
        codes = rng.sample(sorted(self.universe.stocks), min(self.cfg.position_count, len(self.universe.stocks)))
        holdings = {}
        for code in codes:
            inst = self.universe.stocks[code]
            price = self.model.quote(inst, now).prev_close
            qty = rng.randint(1, 300)
            holdings[code] = Holding(code, qty, round(price * rng.uniform(0.8, 1.2), 4))
        return Account(cash=self.cfg.cash, holdings=holdings)

    # ---- order-cash -------------------------------------------------------------------------
    def order(self, tr_id: str, body: dict[str, object], now: float) -> Reply:
        side = order_side(tr_id)
        if side is None:
            return E.business_error(E.UNKNOWN_TR)
        fields = {k: str(v).strip() for k, v in body.items() if isinstance(v, str | int)}
        cano, product = _account_no(fields)
        code = need(fields, "PDNO").upper()
        division = need(fields, "ORD_DVSN")
        if division not in ORDER_DIVISIONS:
            raise MissingField(E.invalid_field("ORD_DVSN"))
        qty = _positive_int(fields, "ORD_QTY")
        unit_price = _int(fields, "ORD_UNPR")
        inst = self.universe.stock(code)
        if inst is None:
            return E.business_error(E.NO_SUCH_SYMBOL)
        quote = self.model.quote(inst, now)
        if division == "00":  # limit order: the price must be on the grid and inside the day's band
            if unit_price <= 0:
                raise MissingField(E.invalid_field("ORD_UNPR"))
            if unit_price > quote.upper:
                return E.business_error(E.ABOVE_UPPER)
            if unit_price < quote.lower:
                return E.business_error(E.BELOW_LOWER)
            if not on_tick(unit_price):
                return E.business_error(E.OFF_TICK)
            fill = unit_price
        else:
            fill = quote.price
        with self._lock:
            account = self._account(cano, product, now)
            held: Holding | None
            if side == "buy":
                cost = fill * qty
                if cost > account.cash:
                    return E.business_error(E.CASH_SHORT)
                account.cash -= cost
                account.bought_today += cost
                held = account.holdings.get(code) or Holding(code, 0, 0.0)
                held.avg_price = (held.avg_price * held.qty + cost) / (held.qty + qty)
                held.qty += qty
                held.bought_today += qty
                account.holdings[code] = held
            else:
                held = account.holdings.get(code)
                if held is None or held.qty < qty:
                    return E.business_error(E.HOLDING_SHORT)
                held.qty -= qty
                held.sold_today += qty
                account.cash += fill * qty
                account.sold_today += fill * qty
            self._order_no += 1
            order_no = self._order_no
        org = "06590" if self.cfg.env == "real" else "00950"
        output = {"KRX_FWDG_ORD_ORGNO": org, "ODNO": f"{order_no:010d}",
                  "ORD_TMD": datetime.fromtimestamp(now, KST).strftime("%H%M%S")}
        message = E.OK_ORDER_REAL if self.cfg.env == "real" else E.OK_ORDER_PAPER[side]
        return E.ok({"output": output}, message)

    # ---- inquire-balance ---------------------------------------------------------------------
    def balance(self, params: Params, tr_cont: str, now: float) -> Reply:
        cano, product = _account_no(params)
        for name in BALANCE_PARAMS:
            need(params, name)
        after = params.get("CTX_AREA_NK100", "").strip() if tr_cont == "N" else ""
        after = after.split("^")[0].strip()
        with self._lock:
            if after:
                now = self._inquiry_at.get((cano, product), now)
            else:
                self._inquiry_at[(cano, product)] = now
            account = self._account(cano, product, now)
            # sold-out rows stay (at zero) for the day, as KIS keeps them until D+2
            rows = sorted((h for h in account.holdings.values() if h.qty > 0 or h.sold_today),
                          key=lambda h: h.code)
            snapshot = [Holding(h.code, h.qty, h.avg_price, h.bought_today, h.sold_today) for h in rows]
            cash, bought, sold = account.cash, account.bought_today, account.sold_today
        remaining = [h for h in snapshot if h.code > after] if after else snapshot
        page = remaining[:self.cfg.page_size]
        more = len(remaining) > len(page)
        output1 = [self._holding_row(h, now) for h in page]
        totals = self._totals(snapshot, cash, bought, sold, now)
        fk = f"{cano}^{product}^N^N^01^01^N^"
        nk = f"{page[-1].code}^" if more and page else ""
        reply = E.ok({"ctx_area_fk100": fk, "ctx_area_nk100": nk, "output1": output1, "output2": [totals]})
        reply.headers["tr_cont"] = "M" if more else "D"
        return reply

    def _holding_row(self, h: Holding, now: float) -> dict[str, str]:
        inst = self._inst(h.code)
        q = self.model.quote(inst, now)
        bought = int(h.avg_price * h.qty)
        value = q.price * h.qty
        return {
            "pdno": h.code, "prdt_name": inst.name, "trad_dvsn_name": "현금", "bfdy_buy_qty": "0",
            "bfdy_sll_qty": "0", "thdt_buyqty": str(h.bought_today), "thdt_sll_qty": str(h.sold_today),
            "hldg_qty": str(h.qty), "ord_psbl_qty": str(h.qty), "pchs_avg_pric": f"{h.avg_price:.4f}",
            "pchs_amt": str(bought), "prpr": str(q.price), "evlu_amt": str(value),
            "evlu_pfls_amt": str(value - bought), "evlu_pfls_rt": f"{(value - bought) / bought * 100:.2f}"
            if bought else "0.00", "evlu_erng_rt": "0.00000000", "loan_dt": "", "loan_amt": "0",
            "stln_slng_chgs": "0", "expd_dt": "", "fltt_rt": f"{(q.price - q.prev_close) / q.prev_close * 100:.8f}",
            "bfdy_cprs_icdc": str(q.price - q.prev_close), "item_mgna_rt_name": "20%", "grta_rt_name": "",
            "sbst_pric": str(q.prev_close * 7 // 10), "stck_loan_unpr": "0.0000",
        }

    def _inst(self, code: str) -> Instrument:
        inst = self.universe.stock(code)
        if inst is None:  # holdings only ever hold listed codes
            raise KeyError(code)
        return inst

    def _totals(self, holdings: list[Holding], cash: int, bought: int, sold: int, now: float) -> dict[str, str]:
        purchase = sum(int(h.avg_price * h.qty) for h in holdings)
        value = sum(self.model.quote(self._inst(h.code), now).price * h.qty for h in holdings)
        return {
            "dnca_tot_amt": str(cash), "nxdy_excc_amt": str(cash), "prvs_rcdl_excc_amt": str(cash),
            "cma_evlu_amt": "0", "bfdy_buy_amt": "0", "thdt_buy_amt": str(bought), "nxdy_auto_rdpt_amt": "0",
            "bfdy_sll_amt": "0", "thdt_sll_amt": str(sold), "d2_auto_rdpt_amt": "0", "bfdy_tlex_amt": "0",
            "thdt_tlex_amt": "0", "tot_loan_amt": "0", "scts_evlu_amt": str(value),
            "tot_evlu_amt": str(cash + value), "nass_amt": str(cash + value), "fncg_gld_auto_rdpt_yn": "",
            "pchs_amt_smtl_amt": str(purchase), "evlu_amt_smtl_amt": str(value),
            "evlu_pfls_smtl_amt": str(value - purchase), "tot_stln_slng_chgs": "0",
            "bfdy_tot_asst_evlu_amt": str(cash + value), "asst_icdc_amt": "0", "asst_icdc_erng_rt": "0.00000000",
        }


def _account_no(fields: Params) -> tuple[str, str]:
    cano = need(fields, "CANO")
    product = need(fields, "ACNT_PRDT_CD")
    if len(cano) != 8 or not cano.isdigit() or len(product) != 2 or not product.isdigit():
        raise MissingField(E.BAD_ACCOUNT)
    return cano, product


def _int(fields: Params, name: str) -> int:
    value = need(fields, name)
    if not value.isdigit():
        raise MissingField(E.invalid_field(name))
    return int(value)


def _positive_int(fields: Params, name: str) -> int:
    value = _int(fields, name)
    if value <= 0:
        raise MissingField(E.invalid_field(name))
    return value
