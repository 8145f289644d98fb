"""Envelope parsing, error mapping, headers, gate and observer of the HTTP layer."""

from __future__ import annotations

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from shared.kis.errors import (
    KISAuthError,
    KISBusinessError,
    KISConfigError,
    KISError,
    KISRateLimitError,
    KISServerError,
    KISTimeoutError,
    KISTokenExpiredError,
    KISTokenInvalidError,
    KISTokenIssueThrottledError,
    KISTransportError,
)
from shared.kis.http import classify, paper_tr_id
from tests.kis.fake_kis import ACCOUNT, APP_KEY, APP_SECRET, TOKEN, Reply, egw, make_client, ok

PRICE_ROW = {"stck_prpr": "71000", "prdy_vrss": "-500", "prdy_vrss_sign": "5", "prdy_ctrt": "-0.70"}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"rt_cd": "1", "msg_cd": "EGW00201", "msg1": "초당 거래건수를 초과하였습니다."}, KISRateLimitError),
        (200, {"rt_cd": "1", "msg_cd": "EGW00201", "msg1": "초당 거래건수를 초과하였습니다."}, KISRateLimitError),
        (500, {"rt_cd": "1", "msg_cd": "EGW00215", "msg1": "원장 초과"}, KISRateLimitError),
        (500, {"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "기간이 만료된 token 입니다."}, KISTokenExpiredError),
        (200, {"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "기간이 만료된 token 입니다."}, KISTokenExpiredError),
        (500, {"rt_cd": "1", "msg1": "유효하지 않은 token 입니다.", "msg_cd": "EGW00121"}, KISTokenInvalidError),
        (403, {"error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)", "error_code": "EGW00133"},
         KISTokenIssueThrottledError),
        (403, {"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}, KISConfigError),
        (500, {"rt_cd": "1", "msg1": "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다.", "msg_cd": "EGW02004"},
         KISConfigError),
        (500, {"rt_cd": "1", "msg_cd": "", "msg1": "모의투자 TR 이 아닙니다."}, KISConfigError),
        (500, {"rt_cd": "1", "msg_cd": "", "msg1": ""}, KISServerError),
        (502, None, KISServerError),
        (200, None, KISServerError),
        (429, {"message": "too many"}, KISRateLimitError),
        (200, {"rt_cd": "7", "msg_cd": "APBK0406", "msg1": "주문가격이 상한가를 초과합니다."}, KISBusinessError),
        (403, {"error_description": "unknown", "error_code": "EGW09999"}, KISConfigError),
        (404, {"rt_cd": "1", "msg_cd": "", "msg1": "not found"}, KISConfigError),
        (200, {"rt_cd": "1", "msg_cd": "OPSQ0002", "msg1": "없는 서비스 코드 입니다."}, KISConfigError),
        (200, {"rt_cd": "2", "msg_cd": "OPSQ2001", "msg1": "ERROR INVALID FID_INPUT_ISCD"}, KISBusinessError),
        (401, {"rt_cd": "1", "msg_cd": "X", "msg1": "no"}, KISAuthError),
        (500, {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": ""}, KISServerError),
    ],
)
def test_classify_maps_every_error_shape(status, body, expected):
    error = classify(status, body, "FHKST01010100")
    assert type(error) is expected
    assert error.http_status == status
    if body and body.get("msg_cd"):
        assert error.msg_cd == body["msg_cd"]
    if body and body.get("error_code"):
        assert error.msg_cd == body["error_code"]


@pytest.mark.parametrize("body", [
    {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상", "output": {}},
    {"access_token": "t", "access_token_token_expired": "2026-09-02 10:15:00"},
    {"code": 200, "message": "ok"},
])
def test_classify_success(body):
    assert classify(200, body) is None


def test_paper_tr_ids_get_v_prefix_only_for_t_j_c():
    assert paper_tr_id("TTTC8434R") == "VTTC8434R"
    assert paper_tr_id("TTTC0012U") == "VTTC0012U"
    assert paper_tr_id("CTSC9115R") == "VTSC9115R"
    assert paper_tr_id("CTPF1002R") == "CTPF1002R"  # real-only: no twin, sent as is
    assert paper_tr_id("JTTT1002U") == "VTTT1002U"
    assert paper_tr_id("FHKST01010100") == "FHKST01010100"
    assert paper_tr_id("HHKCM113004C7") == "HHKCM113004C7"


def test_rest_headers_and_gate_before_every_call():
    calls = []
    client, fake = make_client(lambda s: ok(PRICE_ROW), gate=lambda cc, tr: calls.append((cc, tr, len(fake.seen))))
    client.get_current_price("005930")
    client.get_current_price("000660")
    seen = fake.seen[0]
    assert seen.method == "GET"
    assert seen.path == "/uapi/domestic-stock/v1/quotations/inquire-price"
    assert seen.params == {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
    assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["appkey"] == APP_KEY
    assert seen.headers["appsecret"] == APP_SECRET
    assert seen.headers["tr_id"] == "FHKST01010100"
    assert seen.headers["custtype"] == "P"
    assert seen.headers["content-type"].startswith("application/json")
    # the gate ran before each request left (nothing had been sent at the time of the first call)
    assert calls == [("quotes", "FHKST01010100", 0), ("quotes", "FHKST01010100", 1)]


def test_gate_refusal_stops_the_call():
    class Denied(Exception):
        pass

    def gate(cc, tr):
        raise Denied()

    client, fake = make_client(lambda s: ok(PRICE_ROW), gate=gate)
    with pytest.raises(Denied):
        client.get_current_price("005930")
    assert fake.seen == []


def test_token_provider_called_before_each_request():
    tokens = iter(["tok-1", "tok-2"])
    client, fake = make_client(lambda s: ok(PRICE_ROW), token_provider=lambda: next(tokens))
    client.get_current_price("005930")
    client.get_current_price("005930")
    assert [s.headers["authorization"] for s in fake.seen] == ["Bearer tok-1", "Bearer tok-2"]
    assert "/oauth2/tokenP" not in fake.paths()


def test_observer_gets_a_record_for_success_error_and_transport_failure():
    records = []
    replies = iter([ok(PRICE_ROW), egw("EGW00201", "초당 거래건수를 초과하였습니다.")])

    def handler(seen):
        try:
            return next(replies)
        except StopIteration:
            raise requests.ReadTimeout("read timed out") from None

    client, _ = make_client(handler, observer=records.append)
    client.get_current_price("005930")
    with pytest.raises(KISRateLimitError):
        client.get_current_price("005930")
    with pytest.raises(KISTimeoutError):
        client.get_current_price("005930")
    assert [(r.tr_id, r.call_class, r.status, r.msg_cd, r.ok) for r in records] == [
        ("FHKST01010100", "quotes", 200, "MCA00000", True),
        ("FHKST01010100", "quotes", 500, "EGW00201", False),
        ("FHKST01010100", "quotes", None, "", False),
    ]
    assert all(r.duration_s >= 0 for r in records)


def test_broken_observer_does_not_break_the_call():
    def observer(record):
        raise RuntimeError("metrics down")

    client, _ = make_client(lambda s: ok(PRICE_ROW), observer=observer)
    assert client.get_current_price("005930").price == 71000


def test_read_timeout_means_sent_and_connect_failure_means_not_sent():
    def read_timeout(seen):
        raise requests.ReadTimeout(f"HTTPSConnectionPool: Read timed out. {seen.params}")

    client, _ = make_client(read_timeout)
    with pytest.raises(KISTimeoutError) as info:
        client.get_current_price("005930")
    assert info.value.sent is True and info.value.retryable

    def connect_timeout(seen):
        raise requests.ConnectTimeout("connect timed out")

    client, _ = make_client(connect_timeout)
    with pytest.raises(KISTimeoutError) as info:
        client.get_current_price("005930")
    assert info.value.sent is False

    def refused(seen):
        reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
        raise requests.ConnectionError(MaxRetryError(None, "/uapi", reason))

    client, _ = make_client(refused)
    with pytest.raises(KISTransportError) as info:
        client.get_current_price("005930")
    assert not isinstance(info.value, KISTimeoutError)
    assert info.value.sent is False

    def reset(seen):
        raise requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))

    client, _ = make_client(reset)
    with pytest.raises(KISTransportError) as info:
        client.get_current_price("005930")
    assert info.value.sent is True


def test_transport_errors_do_not_leak_url_or_account():
    def fail(seen):
        # requests puts the full URL (query included) in its messages
        raise requests.ReadTimeout(f"Read timed out: /inquire-balance?CANO={seen.params.get('CANO')}")

    client, _ = make_client(fail)
    with pytest.raises(KISTimeoutError) as info:
        client.get_balance()
    error = info.value
    for text in (str(error), repr(error), str(error.__cause__), str(error.__context__) if
                 not error.__suppress_context__ else ""):
        assert ACCOUNT[:8] not in text
        assert TOKEN not in text and APP_SECRET not in text


def test_oauth_error_body_is_parsed_on_403():
    client, _ = make_client(lambda s: Reply(403, {"error_description": "유효하지 않은 AppKey입니다.",
                                                  "error_code": "EGW00103"}))
    with pytest.raises(KISConfigError) as info:
        client.issue_token()
    assert info.value.msg_cd == "EGW00103"
    assert info.value.http_status == 403


def test_error_messages_name_code_and_tr_but_no_secret():
    client, _ = make_client(lambda s: egw("EGW00121", "유효하지 않은 token 입니다."))
    with pytest.raises(KISTokenInvalidError) as info:
        client.get_balance()
    text = str(info.value)
    assert "EGW00121" in text and "TTTC8434R" in text
    assert ACCOUNT[:8] not in text and TOKEN not in text and APP_KEY not in text


def test_every_kis_error_is_a_kis_error():
    for status, body in [(500, None), (403, {"error_code": "EGW00133"}), (200, {"rt_cd": "9"})]:
        assert isinstance(classify(status, body), KISError)
