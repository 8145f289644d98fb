"""A client written the way KIS's official sample reads headers and bodies, against the simulator.

Why the sample could not talk to the simulator before: the simulator sent `content-type` and
`content-length` in lower case, and the sample turns every all-lower-case response header name into a
namedtuple field (a hyphen is not allowed there, so every call raised); and only the balance answered a
`tr_cont` header, which the sample reads after index, stock-info and balance calls.
"""

from __future__ import annotations

import pytest
import requests

from tests.sim.conftest import PRICE, Kis
from tests.sim.sample_style_client import Answer, Failure, SampleStyleClient

CANO, PRODUCT = "50001234", "01"


def client_for(sim, clock, paper: bool) -> SampleStyleClient:
    # paper allows one call a second: the client pauses like the sample's smart_sleep, on the sim's clock
    client = SampleStyleClient(sim.base_url, "sample-app-key", "sample-app-secret", paper=paper,
                               pause=(lambda: clock.advance(1.05)) if paper else (lambda: None))
    client.auth()
    return client


def ok(res: Answer | Failure) -> Answer:
    assert isinstance(res, Answer), f"HTTP {res.status}: {res.text}"
    assert res.ok(), res.body
    return res


def test_every_lower_case_header_is_an_identifier(sim, kis):
    resp = kis.price("005930")
    lower = [k for k in resp.headers if k.islower()]
    assert lower and all(k.isidentifier() for k in lower), lower
    assert {"tr_id", "tr_cont", "gt_uid"} <= set(lower)
    assert resp.headers["Content-Type"].startswith("application/json")


def test_the_eight_calls_on_real(make_sim, clock):
    sim = make_sim(clock=clock, env="real")
    c = client_for(sim, clock, paper=False)
    assert c.token_expires is not None

    price = ok(c.inquire_price("005930"))
    assert int(price.body.output["stck_prpr"]) > 0 and price.header.tr_cont in ("D", "E", "")

    multi = ok(c.intstock_multprice(["005930", "000660", "035420"]))
    assert [row["inter_shrn_iscd"] for row in multi.body.output] == ["005930", "000660", "035420"]

    chart = ok(c.inquire_daily_itemchartprice("000660", "20260101", "20260513"))
    assert chart.body.output1["hts_kor_isnm"] == "SK하이닉스" and len(chart.body.output2) == 95  # weekdays from 2 Jan

    daily = ok(c.inquire_daily_price("005930"))
    assert len(daily.body.output) == 30

    index_pages = c.inquire_index_price("0001")
    assert len(index_pages) == 1 and float(ok(index_pages[0]).body.output["bstp_nmix_prpr"]) > 0

    info_pages = c.search_stock_info("005930")
    assert len(info_pages) == 1 and ok(info_pages[0]).body.output["prdt_name"] == "삼성전자"

    pages = [ok(p) for p in c.inquire_balance(CANO, PRODUCT)]
    assert [p.header.tr_cont for p in pages] == ["M", "D"]  # 65 holdings, 50 a page
    held = {row["pdno"] for p in pages for row in p.body.output1}
    assert len(held) == 65 and pages[0].body.output2[0]["dnca_tot_amt"]

    code = sorted(held)[0]
    order = ok(c.order_cash("sell", CANO, PRODUCT, code, 1, "01", 0, with_hashkey=True))
    assert order.body.msg_cd == "APBK0013" and len(order.body.output["ODNO"]) == 10
    assert sim.stats()["calls"]["TTTC0011U"] == 1


def test_the_calls_kis_serves_on_paper_and_the_refusals(make_sim, clock):
    sim = make_sim(clock=clock, env="paper")
    c = client_for(sim, clock, paper=True)
    assert int(ok(c.inquire_price("005930")).body.output["stck_prpr"]) > 0
    assert len(ok(c.inquire_daily_itemchartprice("000660", "20260101", "20260513")).body.output2) == 95
    assert len(ok(c.inquire_daily_price("005930")).body.output) == 30
    pages = [ok(p) for p in c.inquire_balance(CANO, PRODUCT)]
    assert [p.header.tr_cont for p in pages] == ["M", "D"]  # 25 holdings, 20 a page
    code = pages[0].body.output1[0]["pdno"]
    order = ok(c.order_cash("sell", CANO, PRODUCT, code, 1, "01", 0))
    assert order.body.msg1 == "모의투자 매도주문이 완료 되었습니다."
    assert sim.stats()["calls"]["VTTC0011U"] == 1 and sim.stats()["calls"]["VTTC8434R"] == 2

    # Not offered on paper: the sample sees an error (its isOK is False), never data.
    multi = c.intstock_multprice(["005930"])
    assert isinstance(multi, Failure) and multi.status == 500 and "모의투자 TR" in multi.text
    info = c.search_stock_info("005930")[0]  # the sample turns CTPF1002R into VTPF1002R on paper: no such TR
    assert isinstance(info, Answer) and not info.ok() and info.body.msg_cd == "OPSQ0002"
    index = c.inquire_index_price("0001")[0]
    assert isinstance(index, Answer) and not index.ok() and index.body.msg_cd == "MCA00124"


def test_custtype_is_optional_like_for_python_kis(sim, kis):
    assert kis.price("005930", custtype=None).json()["rt_cd"] == "0"
    assert kis.price("005930", custtype="B").json()["rt_cd"] == "0"


def test_tr_cont_on_every_rest_answer_including_refusals(sim, kis):
    assert kis.price("005930").headers["tr_cont"] == "D"
    refused = kis.price("005930", authorization="Bearer nope")
    assert refused.status_code == 500 and refused.headers["tr_cont"] == "D"
    bad = requests.get(sim.base_url + PRICE, timeout=5)
    assert bad.headers.get("Content-Type", "").startswith("application/json")


@pytest.mark.parametrize("name", ["kospi_code.mst.zip", "kosdaq_code.mst.zip", "konex_code.mst.zip"])
def test_master_files_are_served(sim, name):
    resp = requests.get(f"{sim.base_url}/common/master/{name}", timeout=5)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/zip"
    assert resp.content[:2] == b"PK"
    assert requests.get(f"{sim.base_url}/common/master/nope.zip", timeout=5).status_code == 404


def test_product_info_for_python_kis(make_sim, clock):
    sim = make_sim(clock=clock, env="real")
    kis_ = Kis(sim).login()
    path = "/uapi/domestic-stock/v1/quotations/search-info"
    out = kis_.get(path, "CTPF1604R", {"PDNO": "005930", "PRDT_TYPE_CD": "300"}, custtype=None).json()["output"]
    assert (out["shtn_pdno"], out["prdt_abrv_name"], out["std_pdno"]) == ("005930", "삼성전자", "KR7005930003")
    assert out["prdt_eng_abrv_name"] == "Samsung Electronics" and out["prdt_type_cd"] == "300"
    assert kis_.get(path, "CTPF1604R", {"PDNO": "999990", "PRDT_TYPE_CD": "300"}).json()["output"]["pdno"] == ""
    paper = make_sim(clock=clock, env="paper")
    refused = Kis(paper).login().get(path, "CTPF1604R", {"PDNO": "005930", "PRDT_TYPE_CD": "300"})
    assert refused.status_code == 500 and refused.json()["msg1"] == "모의투자 TR 이 아닙니다."
