"""Stock basic info (CTPF1002R, real only)."""

from __future__ import annotations

from datetime import date

import pytest

from shared.kis.errors import KISConfigError, KISUnknownSymbolError
from tests.kis.fake_kis import egw, make_client, ok

INFO_ROW = {"pdno": "00000A005930", "prdt_name": "삼성전자보통주", "prdt_abrv_name": "삼성전자",
            "prdt_eng_name": "SamsungElectronics", "mket_id_cd": "STK", "lstg_stqt": "5969782550", "papr": "100",
            "kospi200_item_yn": "Y", "scts_mket_lstg_dt": "19750611", "tr_stop_yn": "N", "admn_item_yn": "N",
            "std_pdno": "KR7005930003", "std_idst_clsf_cd_name": "통신 및 방송 장비 제조업", "bfdy_clpr": "71500"}


def test_stock_info_fields():
    gated = []
    client, fake = make_client(lambda s: ok(INFO_ROW), gate=lambda cc, tr: gated.append((cc, tr)))
    info = client.get_stock_info("005930")
    assert (info.symbol, info.name, info.market, info.listed_shares) == ("005930", "삼성전자", "STK", 5969782550)
    assert info.isin == "KR7005930003" and info.kospi200 and not info.trading_halted
    assert info.listed_on == date(1975, 6, 11) and info.par_value == 100 and info.prev_close == 71500
    assert fake.seen[0].params == {"PRDT_TYPE_CD": "300", "PDNO": "005930"}
    assert gated == [("reference", "CTPF1002R")]


def test_stock_info_unknown_symbol():
    client, _ = make_client(lambda s: ok({"pdno": "", "prdt_name": "", "prdt_abrv_name": ""}))
    with pytest.raises(KISUnknownSymbolError):
        client.get_stock_info("999999")


def test_stock_info_on_paper_is_refused_without_calling_kis():
    client, fake = make_client(lambda s: egw("", "모의투자 TR 이 아닙니다."), paper=True)
    with pytest.raises(KISConfigError, match="CTPF1002R is not offered to paper-trading keys"):
        client.get_stock_info("005930")
    assert fake.seen == []  # real-only: KIS would refuse it, so it is never sent
