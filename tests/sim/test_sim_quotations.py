"""Quotation TRs over HTTP: KIS field names, string numbers, unknown codes, paper refusals, errors."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from shared.sim.ticks import on_tick, price_limits
from tests.sim.conftest import CHART, DAILY, INDEX, INFO, MULTI, PRICE, Kis


def multi_params(codes: list[str]) -> dict[str, str]:
    params = {}
    for n, code in enumerate(codes, start=1):
        params[f"FID_COND_MRKT_DIV_CODE_{n}"] = "J"
        params[f"FID_INPUT_ISCD_{n}"] = code
    return params


def test_inquire_price_envelope_and_fields(kis):
    resp = kis.price("005930")
    body = resp.json()
    assert resp.status_code == 200
    assert (body["rt_cd"], body["msg_cd"], body["msg1"]) == ("0", "MCA00000", "정상처리 되었습니다.")
    out = body["output"]
    assert all(isinstance(v, str) for v in out.values())
    price, prev = int(out["stck_prpr"]), int(out["stck_sdpr"])
    assert on_tick(price)
    assert (int(out["stck_mxpr"]), int(out["stck_llam"])) == price_limits(prev)
    assert int(out["stck_llam"]) <= int(out["stck_lwpr"]) <= price <= int(out["stck_hgpr"]) <= int(out["stck_mxpr"])
    assert int(out["prdy_vrss"]) == price - prev
    sign = "2" if price > prev else "5" if price < prev else "3"
    assert out["prdy_vrss_sign"] in (sign, "1", "4")
    assert out["stck_shrn_iscd"] == "005930"
    assert resp.headers["tr_id"] == "FHKST01010100"


def test_unknown_code_answers_a_zeroed_output(kis):
    body = kis.price("999999").json()
    assert body["rt_cd"] == "0"
    out = body["output"]
    assert out["stck_prpr"] == "0" and out["prdy_vrss"] == "0"
    assert out["bstp_kor_isnm"] == "" and out["w52_hgpr_date"] == "" and out["stck_shrn_iscd"] == ""
    assert set(out) == set(kis.price("005930").json()["output"])


def test_multi_quote_rows_keyed_by_code_and_unknown_codes_absent(kis):
    body = kis.get(MULTI, "FHKST11300006", multi_params(["005930", "999999", "000660"])).json()
    assert body["rt_cd"] == "0"
    rows = {r["inter_shrn_iscd"]: r for r in body["output"]}
    assert set(rows) == {"005930", "000660"}
    assert rows["005930"]["inter_kor_isnm"] == "삼성전자"
    assert rows["000660"]["inter_kor_isnm"] == "SK하이닉스"
    single = kis.price("005930").json()["output"]
    assert rows["005930"]["inter2_prpr"] == single["stck_prpr"]
    assert rows["005930"]["inter2_prdy_clpr"] == single["stck_sdpr"]


def test_multi_quote_takes_30_and_refuses_31(sim, kis, clock):
    codes = [s["code"] for s in sim.symbols()[:31]]
    body = kis.get(MULTI, "FHKST11300006", multi_params(codes[:30])).json()
    assert body["rt_cd"] == "0" and len(body["output"]) == 30
    resp = kis.get(MULTI, "FHKST11300006", multi_params(codes))
    assert resp.status_code == 200
    assert resp.json() == {"rt_cd": "2", "msg_cd": "OPSQ2002", "msg1": "ERROR : INPUT INVALID_CHECK_FIELD_LENGTH"}
    assert sim.stats()["errors"] == {"OPSQ2002": 1}


def test_paper_refuses_real_only_trs(make_sim, clock):
    sim = make_sim(clock=clock, env="paper")
    kis = Kis(sim).login()
    resp = kis.get(MULTI, "FHKST11300006", multi_params(["005930"]))
    assert resp.status_code == 500
    assert resp.json()["rt_cd"] == "1" and resp.json()["msg1"] == "모의투자 TR 이 아닙니다."
    clock.advance(1.1)
    resp = kis.get(INFO, "CTPF1002R", {"PRDT_TYPE_CD": "300", "PDNO": "005930"})
    assert resp.status_code == 500 and resp.json()["msg1"] == "모의투자 TR 이 아닙니다."
    clock.advance(1.1)
    assert kis.price("005930").json()["rt_cd"] == "0"  # quotation TRs are shared by both hosts
    assert sim.stats()["calls"] == {"FHKST01010100": 1}


def test_index_prices(kis):
    levels = {}
    for code in ("0001", "1001", "2001"):
        out = kis.get(INDEX, "FHPUP02100000", {"FID_COND_MRKT_DIV_CODE": "U", "FID_INPUT_ISCD": code}).json()["output"]
        levels[code] = float(out["bstp_nmix_prpr"])
        assert float(out["bstp_nmix_lwpr"]) <= levels[code] <= float(out["bstp_nmix_hgpr"])
    assert levels["0001"] > levels["1001"] > levels["2001"] > 0
    out = kis.get(INDEX, "FHPUP02100000", {"FID_COND_MRKT_DIV_CODE": "U", "FID_INPUT_ISCD": "9999"}).json()
    assert out["rt_cd"] == "0" and out["output"]["bstp_nmix_prpr"] == "0"


def test_daily_price_30_rows_newest_first(kis):
    for period in ("D", "W", "M"):
        rows = kis.get(DAILY, "FHKST01010400", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930",
                                                "FID_PERIOD_DIV_CODE": period, "FID_ORG_ADJ_PRC": "1"}).json()["output"]
        assert len(rows) == 30
        days = [datetime.strptime(r["stck_bsop_date"], "%Y%m%d").date() for r in rows]
        assert days == sorted(days, reverse=True) and len(set(days)) == 30
        assert all(d.weekday() < 5 for d in days)
        for r in rows:
            assert int(r["stck_lwpr"]) <= min(int(r["stck_oprc"]), int(r["stck_clpr"]))
            assert int(r["stck_hgpr"]) >= max(int(r["stck_oprc"]), int(r["stck_clpr"]))
        for newer, older in zip(rows, rows[1:], strict=False):
            assert int(newer["prdy_vrss"]) == int(newer["stck_clpr"]) - int(older["stck_clpr"])
    assert days[0] == date(2026, 5, 13)  # the live day is the newest row


def test_period_chart_window_pages_of_100(kis):
    params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "000660", "FID_INPUT_DATE_1": "20250101",
              "FID_INPUT_DATE_2": "20260513", "FID_PERIOD_DIV_CODE": "D", "FID_ORG_ADJ_PRC": "0"}
    body = kis.get(CHART, "FHKST03010100", params).json()
    assert body["output1"]["hts_kor_isnm"] == "SK하이닉스"
    first = body["output2"]
    assert len(first) == 100 and first[0]["stck_bsop_date"] == "20260513"
    oldest = datetime.strptime(first[-1]["stck_bsop_date"], "%Y%m%d").date()
    params["FID_INPUT_DATE_2"] = (oldest - timedelta(days=1)).strftime("%Y%m%d")  # KIS's way to page back
    second = kis.get(CHART, "FHKST03010100", params).json()["output2"]
    assert len(second) == 100
    previous_weekday = oldest - timedelta(days=3 if oldest.weekday() == 0 else 1)
    assert second[0]["stck_bsop_date"] == previous_weekday.strftime("%Y%m%d")
    assert int(first[-1]["prdy_vrss"]) == int(first[-1]["stck_clpr"]) - int(second[0]["stck_clpr"])
    short = kis.get(CHART, "FHKST03010100", {**params, "FID_INPUT_DATE_1": "20260504",
                                             "FID_INPUT_DATE_2": "20260508"}).json()["output2"]
    assert [r["stck_bsop_date"] for r in short] == ["20260508", "20260507", "20260506", "20260505", "20260504"]
    unknown = kis.get(CHART, "FHKST03010100", {**params, "FID_INPUT_ISCD": "999999"}).json()
    assert unknown["rt_cd"] == "0" and unknown["output2"] == [] and unknown["output1"]["hts_kor_isnm"] == ""


def test_search_stock_info(kis):
    out = kis.get(INFO, "CTPF1002R", {"PRDT_TYPE_CD": "300", "PDNO": "005930"}).json()["output"]
    assert out["prdt_name"] == "삼성전자" and out["prdt_abrv_name"] == "삼성전자"
    assert out["std_pdno"] == "KR7005930003" and out["mket_id_cd"] == "STK"
    unknown = kis.get(INFO, "CTPF1002R", {"PRDT_TYPE_CD": "300", "PDNO": "999999"}).json()
    assert unknown["rt_cd"] == "0" and unknown["output"]["prdt_name"] == ""


def test_request_errors_are_kis_like(sim, kis, clock):
    resp = kis.get(PRICE, "FHKST01010400", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"})
    assert resp.status_code == 200
    assert resp.json() == {"rt_cd": "1", "msg_cd": "OPSQ0002", "msg1": "없는 서비스 코드 입니다."}
    resp = kis.get(PRICE, "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "J"})
    assert resp.json() == {"rt_cd": "2", "msg_cd": "OPSQ2001", "msg1": "ERROR INPUT FIELD NOT FOUND [FID_INPUT_ISCD]"}
    resp = kis.get(PRICE, "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "X", "FID_INPUT_ISCD": "005930"})
    assert resp.json()["msg1"] == "ERROR INVALID FID_COND_MRKT_DIV_CODE"
    lower = kis.get(PRICE, "FHKST01010100", {"fid_cond_mrkt_div_code": "J", "fid_input_iscd": "005930"})
    assert lower.json()["rt_cd"] == "0"
    assert kis.price("005930", custtype=None).json()["rt_cd"] == "0"  # optional, as python-kis never sends it
    assert kis.price("005930", custtype="X").json()["msg_cd"] == "EGW00208"
    assert kis.price("005930", authorization=None).json()["msg_cd"] == "EGW00205"
    resp = kis.http.get(sim.base_url + "/uapi/domestic-stock/v1/quotations/nope", headers=kis.headers("X"))
    assert resp.status_code == 404
    stats = sim.stats()
    assert stats["errors"] == {"OPSQ0002": 1, "OPSQ2001": 2}
    assert stats["refused"] == {"EGW00208": 1, "EGW00205": 1}
