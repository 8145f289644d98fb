"""KIS fidelity fixes in the client: real-only TRs on paper, the order exchange field, MCA00124."""

from __future__ import annotations

import pytest

from shared.kis.errors import KISBusinessError, KISConfigError
from shared.kis.http import REAL_ONLY_TRS, classify
from tests.kis.fake_kis import Reply, make_client, ok

MCA00124 = {"rt_cd": "1", "msg_cd": "MCA00124", "msg1": "해당 서비스를 찾을수 없습니다."}


def test_index_price_on_paper_is_refused_without_a_kis_call():
    gated = []
    client, fake = make_client(lambda s: ok({"bstp_nmix_prpr": "2650.12"}), paper=True,
                               gate=lambda cc, tr: gated.append(tr))
    with pytest.raises(KISConfigError, match="FHPUP02100000 is not offered to paper-trading keys"):
        client.get_index_price("0001")
    assert fake.seen == [] and gated == []  # no call, no rate slot, no token


def test_every_real_only_tr_is_refused_on_paper_and_sent_on_real():
    assert {"FHPUP02100000", "FHKST11300006", "CTPF1002R"} <= REAL_ONLY_TRS
    paper, fake = make_client(lambda s: ok({}), paper=True)
    with pytest.raises(KISConfigError):
        paper.get_multi_quotes(["005930"])
    assert fake.seen == []
    real, fake = make_client(lambda s: ok({"bstp_nmix_prpr": "2650.12"}))
    assert str(real.get_index_price("0001").value) == "2650.12"
    assert fake.seen[0].headers["tr_id"] == "FHPUP02100000"


@pytest.mark.parametrize("status", [200, 500])
def test_mca00124_is_a_configuration_error_whatever_the_status(status):
    error = classify(status, MCA00124, "FHKST01010100")
    assert isinstance(error, KISConfigError) and not isinstance(error, KISBusinessError)
    client, _ = make_client(lambda s: Reply(status, MCA00124))
    with pytest.raises(KISConfigError):
        client.get_current_price("005930")


def test_other_200_refusals_stay_business_errors():
    assert type(classify(200, {"rt_cd": "7", "msg_cd": "APBK0919", "msg1": "주문가능금액을 초과 했습니다."})) \
        is KISBusinessError


@pytest.mark.parametrize("paper", [False, True])
def test_orders_send_the_exchange_field(paper):
    accepted = ok({"KRX_FWDG_ORD_ORGNO": "06590", "ODNO": "0000000001", "ORD_TMD": "100000"})
    client, fake = make_client(lambda s: accepted, paper=paper)
    client.place_cash_order("sell", "005930", 1, "market", None)
    assert fake.seen[0].body["EXCG_ID_DVSN_CD"] == "KRX"
