"""Cash orders: TR ids, body, validation, rejection, and no resend on timeout."""

from __future__ import annotations

from datetime import time
from decimal import Decimal

import pytest
import requests

from shared.kis.errors import KISConfigError, KISOrderRejectedError, KISRateLimitError, KISTimeoutError
from tests.kis.fake_kis import ACCOUNT, Reply, egw, make_client

ACCEPTED = Reply(200, {"rt_cd": "0", "msg_cd": "APBK0013", "msg1": "주문 전송 완료 되었습니다.",
                       "output": {"KRX_FWDG_ORD_ORGNO": "06590", "ODNO": "0000006555", "ORD_TMD": "151059"}})


def test_limit_buy_body_and_result():
    gated = []
    client, fake = make_client(lambda s: ACCEPTED, gate=lambda cc, tr: gated.append((cc, tr)))
    result = client.place_cash_order("buy", "005930", 10, "limit", Decimal("71000"))
    seen = fake.seen[0]
    assert (seen.method, seen.path) == ("POST", "/uapi/domestic-stock/v1/trading/order-cash")
    assert seen.headers["tr_id"] == "TTTC0012U"
    assert seen.body == {"CANO": ACCOUNT[:8], "ACNT_PRDT_CD": ACCOUNT[8:], "PDNO": "005930", "ORD_DVSN": "00",
                         "ORD_QTY": "10", "ORD_UNPR": "71000", "EXCG_ID_DVSN_CD": "KRX"}
    assert gated == [("orders", "TTTC0012U")]
    assert (result.order_no, result.org_no, result.time) == ("0000006555", "06590", time(15, 10, 59))
    assert (result.side, result.symbol, result.quantity, result.price) == ("buy", "005930", 10, 71000)
    assert ACCOUNT[:8] not in repr(result)


def test_market_sell_on_paper_uses_v_tr():
    client, fake = make_client(lambda s: ACCEPTED, paper=True)
    result = client.place_cash_order("sell", "000660", 3, "market", None)
    assert fake.seen[0].headers["tr_id"] == "VTTC0011U"
    assert fake.seen[0].body["ORD_DVSN"] == "01" and fake.seen[0].body["ORD_UNPR"] == "0"
    assert result.price is None


@pytest.mark.parametrize(("args", "kwargs"), [
    (("hold", "005930", 1, "limit", 100), {}),
    (("buy", "005930", 0, "limit", 100), {}),
    (("buy", "005930", 1.5, "limit", 100), {}),
    (("buy", "005930", 1, "limit", None), {}),
    (("buy", "005930", 1, "limit", Decimal("100.5")), {}),
    (("buy", "005930", 1, "limit", -5), {}),
    (("buy", "005930", 1, "market", 100), {}),
    (("buy", "5930", 1, "limit", 100), {}),
    (("buy", "005930", 1, "stop", 100), {}),
])
def test_invalid_orders_never_reach_kis(args, kwargs):
    client, fake = make_client(lambda s: ACCEPTED)
    with pytest.raises(ValueError):
        client.place_cash_order(*args, **kwargs)
    assert fake.seen == []


def test_missing_account_is_config_error_without_a_call():
    client, fake = make_client(lambda s: ACCEPTED, settings={"kis_account_no": ""})
    with pytest.raises(KISConfigError) as info:
        client.place_cash_order("buy", "005930", 1, "limit", 100)
    assert fake.seen == []
    assert "KIS_ACCOUNT_NO" in str(info.value)


def test_business_refusal_is_order_rejected():
    client, _ = make_client(lambda s: Reply(200, {"rt_cd": "7", "msg_cd": "APBK0406",
                                                  "msg1": "주문가격이 상한가를 초과합니다."}))
    with pytest.raises(KISOrderRejectedError) as info:
        client.place_cash_order("buy", "005930", 1, "limit", 999999)
    assert info.value.msg_cd == "APBK0406" and not info.value.retryable


def test_rate_limit_on_order_keeps_its_class():
    client, fake = make_client(lambda s: egw("EGW00215", "원장에서 허용 가능한 초당 거래건수를 초과하였습니다."))
    with pytest.raises(KISRateLimitError) as info:
        client.place_cash_order("buy", "005930", 1, "limit", 100)
    assert info.value.ledger
    assert len(fake.seen) == 1  # the client itself never retries


def test_timeout_is_unknown_outcome_and_sent_once():
    def hang(seen):
        raise requests.ReadTimeout("read timed out")

    client, fake = make_client(hang)
    with pytest.raises(KISTimeoutError) as info:
        client.place_cash_order("buy", "005930", 1, "limit", 100)
    assert info.value.sent is True
    assert len(fake.seen) == 1
