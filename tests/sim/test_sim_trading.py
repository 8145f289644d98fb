"""Cash orders and the paged balance, with orders reflected in the holdings."""

from __future__ import annotations

import pytest

from shared.sim import SimConfig
from tests.sim.conftest import BALANCE, ORDER, Kis


@pytest.fixture
def sim(make_sim, clock):
    """These tests make many account calls at one fake instant: no ledger window (it has its own tests)."""
    return make_sim(clock=clock, ledger_tps=0)


def test_ledger_limit_is_on_by_default(make_sim, clock):
    assert SimConfig().ledger_tps > 0
    sim = make_sim(clock=clock)
    kis = Kis(sim).login()
    answers = [kis.get(BALANCE, "TTTC8434R", BALANCE_PARAMS).json()["msg_cd"] for _ in range(SimConfig.ledger_tps + 1)]
    assert answers[:-1] == ["MCA00000"] * SimConfig.ledger_tps and answers[-1] == "EGW00215"
    clock.advance(1.1)
    assert kis.get(BALANCE, "TTTC8434R", BALANCE_PARAMS).json()["rt_cd"] == "0"

ACCOUNT = {"CANO": "12345678", "ACNT_PRDT_CD": "01"}
BALANCE_PARAMS = {**ACCOUNT, "AFHR_FLPR_YN": "N", "OFL_YN": "", "INQR_DVSN": "02", "UNPR_DVSN": "01",
                  "FUND_STTL_ICLD_YN": "N", "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00",
                  "CTX_AREA_FK100": "", "CTX_AREA_NK100": ""}


def all_pages(kis: Kis, tr_id: str, clock=None) -> list[tuple[str, dict]]:
    """(response tr_cont, body) of every page, following KIS's tr_cont / CTX_AREA protocol."""
    pages = []
    params, tr_cont = dict(BALANCE_PARAMS), ""
    for _ in range(10):
        resp = kis.get(BALANCE, tr_id, params, tr_cont=tr_cont)
        body = resp.json()
        assert body["rt_cd"] == "0", body
        pages.append((resp.headers["tr_cont"], body))
        if resp.headers["tr_cont"] != "M":
            break
        if clock is not None:
            clock.advance(1.1)  # paper allows one call a second
        tr_cont = "N"
        params.update(CTX_AREA_FK100=body["ctx_area_fk100"], CTX_AREA_NK100=body["ctx_area_nk100"])
    return pages


def holdings(pages: list[tuple[str, dict]]) -> dict[str, dict]:
    rows = [row for _, body in pages for row in body["output1"]]
    codes = [r["pdno"] for r in rows]
    assert len(codes) == len(set(codes)), "a holding appeared on two pages"
    return {r["pdno"]: r for r in rows}


def order(side: str, code: str, qty: int, price: int, division: str = "00") -> dict[str, str]:
    return {**ACCOUNT, "PDNO": code, "ORD_DVSN": division, "ORD_QTY": str(qty), "ORD_UNPR": str(price)}


def test_real_balance_pages_of_50(kis):
    pages = all_pages(kis, "TTTC8434R")
    assert [t for t, _ in pages] == ["M", "D"]
    assert [len(b["output1"]) for _, b in pages] == [50, 15]
    rows = holdings(pages)
    assert list(rows) == sorted(rows)
    summary = pages[-1][1]["output2"][0]
    assert int(summary["scts_evlu_amt"]) == sum(int(r["evlu_amt"]) for r in rows.values())
    assert int(summary["dnca_tot_amt"]) == 100_000_000


def test_paper_balance_pages_of_20(make_sim, clock):
    kis = Kis(make_sim(clock=clock, env="paper")).login()
    pages = all_pages(kis, "VTTC8434R", clock)
    assert [t for t, _ in pages] == ["M", "D"]
    assert [len(b["output1"]) for _, b in pages] == [20, 5]


def test_first_page_again_without_tr_cont(kis):
    params = {**BALANCE_PARAMS, "CTX_AREA_NK100": "ZZZZZZ^"}
    first = kis.get(BALANCE, "TTTC8434R", params).json()  # no tr_cont N: context ignored, page one
    assert len(first["output1"]) == 50


def test_buy_fills_and_shows_in_the_balance(sim, kis):
    before = holdings(all_pages(kis, "TTTC8434R"))
    price = int(kis.price("005930").json()["output"]["stck_prpr"])
    resp = kis.post(ORDER, "TTTC0012U", order("buy", "005930", 10, price))
    body = resp.json()
    assert resp.status_code == 200
    assert (body["rt_cd"], body["msg_cd"], body["msg1"]) == ("0", "APBK0013", "주문 전송 완료 되었습니다.")
    out = body["output"]
    assert set(out) == {"KRX_FWDG_ORD_ORGNO", "ODNO", "ORD_TMD"}
    assert len(out["ODNO"]) == 10 and out["ORD_TMD"] == "103000"
    after_pages = all_pages(kis, "TTTC8434R")
    after = holdings(after_pages)
    held_before = int(before["005930"]["hldg_qty"]) if "005930" in before else 0
    assert int(after["005930"]["hldg_qty"]) == held_before + 10
    assert int(after_pages[-1][1]["output2"][0]["dnca_tot_amt"]) == 100_000_000 - 10 * price
    assert sim.stats()["orders"] == 1


def test_sell_reduces_and_overselling_is_rejected(sim, kis):
    rows = holdings(all_pages(kis, "TTTC8434R"))
    code, row = next(iter(rows.items()))
    qty = int(row["hldg_qty"])
    resp = kis.post(ORDER, "TTTC0011U", order("sell", code, qty + 1, 0, "01"))
    assert resp.status_code == 200 and resp.json()["rt_cd"] == "7"
    assert kis.post(ORDER, "TTTC0011U", order("sell", code, qty, 0, "01")).json()["rt_cd"] == "0"
    after = holdings(all_pages(kis, "TTTC8434R"))
    assert code not in after or int(after[code]["hldg_qty"]) == 0
    assert sim.stats()["orders"] == 1


def test_price_above_upper_limit_is_a_business_rejection(sim, kis):
    upper = int(kis.price("005930").json()["output"]["stck_mxpr"])
    resp = kis.post(ORDER, "TTTC0012U", order("buy", "005930", 1, upper + 1000))
    assert resp.status_code == 200
    assert resp.json() == {"rt_cd": "7", "msg_cd": "APBK0406", "msg1": "주문가격이 상한가를 초과합니다."}
    stats = sim.stats()
    assert stats["orders"] == 0 and stats["errors"] == {"APBK0406": 1}
    assert stats["calls"]["TTTC0012U"] == 1


def test_order_body_keys_must_be_upper_case(kis):
    body = {k.lower(): v for k, v in order("buy", "005930", 1, 0, "01").items()}
    resp = kis.post(ORDER, "TTTC0012U", body)
    assert resp.json() == {"rt_cd": "2", "msg_cd": "OPSQ2001", "msg1": "ERROR INPUT FIELD NOT FOUND [CANO]"}


def test_paper_orders_use_v_tr_ids(make_sim, clock):
    sim = make_sim(clock=clock, env="paper")
    kis = Kis(sim).login()
    resp = kis.post(ORDER, "TTTC0012U", order("buy", "005930", 1, 0, "01"))
    assert resp.status_code == 500 and resp.json()["msg1"] == "모의투자 TR 이 아닙니다."
    clock.advance(1.1)
    body = kis.post(ORDER, "VTTC0012U", order("buy", "005930", 1, 0, "01")).json()
    assert (body["rt_cd"], body["msg_cd"], body["msg1"]) == ("0", "40600000", "모의투자 매수주문이 완료 되었습니다.")
    assert body["output"]["KRX_FWDG_ORD_ORGNO"] == "00950"


def test_bad_account_number(kis):
    resp = kis.get(BALANCE, "TTTC8434R", {**BALANCE_PARAMS, "CANO": "1234"})
    assert resp.json()["msg_cd"] == "OPSQ2000"
