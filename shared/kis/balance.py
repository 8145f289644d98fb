"""Account balance: TTTC8434R (VTTC8434R on paper), every page via tr_cont."""

from __future__ import annotations

from typing import Any

from shared.config import Secret
from shared.kis.account import account_parts
from shared.kis.errors import KISServerError
from shared.kis.fields import first_row, rows, text, to_decimal, to_int
from shared.kis.http import KISHttp
from shared.kis.models import AccountSummary, Balance, Position

BALANCE_PATH = "/uapi/domestic-stock/v1/trading/inquire-balance"
BALANCE_TR = "TTTC8434R"
MAX_BALANCE_PAGES = 50  # 50 rows a page on real: 2,500 holdings is far beyond any account we serve


def get_balance(http: KISHttp, account_no: Secret) -> Balance:
    cano, product = account_parts(account_no)
    params = {
        "CANO": cano,
        "ACNT_PRDT_CD": product,
        "AFHR_FLPR_YN": "N",
        "OFL_YN": "",
        "INQR_DVSN": "02",  # by symbol
        "UNPR_DVSN": "01",
        "FUND_STTL_ICLD_YN": "N",
        "FNCG_AMT_AUTO_RDPT_YN": "N",
        "PRCS_DVSN": "00",  # include yesterday's trades
        "CTX_AREA_FK100": "",
        "CTX_AREA_NK100": "",
    }
    positions: dict[str, Position] = {}
    summary: dict[str, Any] = {}
    tr_cont = ""
    for _ in range(MAX_BALANCE_PAGES):
        resp = http.get(BALANCE_PATH, BALANCE_TR, "orders", params, tr_cont=tr_cont)
        for row in rows(resp.body.get("output1")):
            position = _position(row)
            if position.symbol and position.quantity > 0:  # sold-out rows linger for two days at zero
                positions.setdefault(position.symbol, position)
        summary = first_row(resp.body.get("output2")) or summary
        if not resp.has_more:
            return Balance(positions=list(positions.values()), totals=_summary(summary))
        tr_cont = "N"
        params = {**params, "CTX_AREA_FK100": text(resp.body.get("ctx_area_fk100")),
                  "CTX_AREA_NK100": text(resp.body.get("ctx_area_nk100"))}
    # Returning a partial balance would look like "fewer holdings"; say it did not finish instead.
    raise KISServerError(f"balance paging did not end after {MAX_BALANCE_PAGES} pages", tr_id=BALANCE_TR)


def _position(row: dict[str, Any]) -> Position:
    return Position(
        symbol=text(row.get("pdno")),
        name=text(row.get("prdt_name")),
        quantity=to_int(row.get("hldg_qty")),
        orderable_quantity=to_int(row.get("ord_psbl_qty")),
        avg_price=to_decimal(row.get("pchs_avg_pric")),
        purchase_amount=to_int(row.get("pchs_amt")),
        current_price=to_int(row.get("prpr")),
        eval_amount=to_int(row.get("evlu_amt")),
        profit_loss=to_int(row.get("evlu_pfls_amt")),
        profit_loss_rate=to_decimal(row.get("evlu_pfls_rt")),
    )


def _summary(row: dict[str, Any]) -> AccountSummary:
    return AccountSummary(
        cash=to_int(row.get("dnca_tot_amt")),
        cash_d2=to_int(row.get("prvs_rcdl_excc_amt")),
        purchase_total=to_int(row.get("pchs_amt_smtl_amt")),
        eval_total=to_int(row.get("evlu_amt_smtl_amt")),
        profit_loss_total=to_int(row.get("evlu_pfls_smtl_amt")),
        total_eval=to_int(row.get("tot_evlu_amt")),
        net_assets=to_int(row.get("nass_amt")),
    )
