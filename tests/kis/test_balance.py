"""Balance: every tr_cont page, continuation keys, totals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.kis.errors import KISServerError
from tests.kis.fake_kis import ACCOUNT, Reply, make_client

SUMMARY = {"dnca_tot_amt": "1000000", "prvs_rcdl_excc_amt": "900000", "pchs_amt_smtl_amt": "500000",
           "evlu_amt_smtl_amt": "550000", "evlu_pfls_smtl_amt": "50000", "tot_evlu_amt": "1550000",
           "nass_amt": "1540000"}


def holding(symbol, qty):
    return {"pdno": symbol, "prdt_name": f"종목{symbol}", "hldg_qty": str(qty), "ord_psbl_qty": str(qty),
            "pchs_avg_pric": "1000.5000", "pchs_amt": str(1000 * qty), "prpr": "1100", "evlu_amt": str(1100 * qty),
            "evlu_pfls_amt": str(100 * qty), "evlu_pfls_rt": "9.99"}


def paged_balance(pages):
    def handler(seen):
        index = 0 if not seen.params["CTX_AREA_NK100"] else int(seen.params["CTX_AREA_NK100"].split("-")[1])
        last = index == len(pages) - 1
        body = {"rt_cd": "0", "msg_cd": "KIOK0510", "msg1": "조회가 완료되었습니다", "output1": pages[index],
                "output2": [SUMMARY], "ctx_area_fk100": f"FK-{index + 1}", "ctx_area_nk100": f"NK-{index + 1}"}
        return Reply(200, body, headers={"tr_cont": "D" if last else ("F" if index == 0 else "M")})
    return handler


def test_balance_reads_every_page():
    pages = [[holding(f"{i:06d}", 1 + i) for i in range(50)],
             [holding(f"{i:06d}", 1 + i) for i in range(50, 100)],
             [holding("200000", 7), holding("200001", 0)]]
    gated = []
    client, fake = make_client(paged_balance(pages), gate=lambda cc, tr: gated.append((cc, tr)))
    balance = client.get_balance()
    assert len(balance.positions) == 101  # the zero-quantity row is not a holding
    assert balance.positions[0].symbol == "000000"
    assert balance.positions[0].avg_price == Decimal("1000.5000")
    assert balance.totals.cash == 1000000 and balance.totals.total_eval == 1550000
    assert balance.totals.net_assets == 1540000 and balance.totals.profit_loss_total == 50000
    assert [s.headers["tr_cont"] for s in fake.seen] == ["", "N", "N"]
    assert [s.params["CTX_AREA_FK100"] for s in fake.seen] == ["", "FK-1", "FK-2"]
    assert all(s.params["CANO"] == ACCOUNT[:8] and s.params["ACNT_PRDT_CD"] == ACCOUNT[8:] for s in fake.seen)
    assert gated == [("orders", "TTTC8434R")] * 3


def test_balance_on_paper_uses_v_tr():
    client, fake = make_client(paged_balance([[holding("005930", 3)]]), paper=True)
    assert len(client.get_balance().positions) == 1
    assert fake.seen[0].headers["tr_id"] == "VTTC8434R"


def test_endless_paging_is_an_error_not_a_partial_balance():
    def endless(seen):
        body = {"rt_cd": "0", "msg_cd": "", "msg1": "", "output1": [holding("005930", 1)], "output2": [SUMMARY],
                "ctx_area_fk100": "a", "ctx_area_nk100": "b"}
        return Reply(200, body, headers={"tr_cont": "M"})

    client, fake = make_client(endless)
    with pytest.raises(KISServerError):
        client.get_balance()
    assert len(fake.seen) == 50
