"""Token issue/revoke, hashkey, and the standalone token kept by the client."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.kis.errors import KISServerError, KISTokenExpiredError, KISTokenIssueThrottledError
from shared.kis.fields import KST
from shared.kis.models import AccessToken
from tests.kis.fake_kis import APP_KEY, APP_SECRET, TOKEN, Reply, egw, make_client, ok, token_reply

PRICE_ROW = {"stck_prpr": "71000", "prdy_vrss": "500", "prdy_vrss_sign": "2", "prdy_ctrt": "0.71"}


def test_issue_token_reads_expiry_from_the_answer_not_expires_in():
    # a re-issue within 6 h returns the old token: expires_in no longer says when it dies
    client, fake = make_client(lambda s: token_reply(expires="2026-09-02 10:15:00", expires_in=86400))
    token = client.issue_token()
    assert token.value == TOKEN
    assert token.expires_at == datetime(2026, 9, 2, 10, 15, tzinfo=KST)
    assert token.expires_at.utcoffset() == timedelta(hours=9)
    assert token.issued_at.tzinfo is not None
    seen = fake.seen[0]
    assert (seen.method, seen.path) == ("POST", "/oauth2/tokenP")
    assert seen.body == {"grant_type": "client_credentials", "appkey": APP_KEY, "appsecret": APP_SECRET}
    assert "authorization" not in seen.headers


def test_issue_token_is_not_gated():
    gated = []
    client, _ = make_client(lambda s: token_reply(), gate=lambda cc, tr: gated.append(tr))
    client.issue_token()
    assert gated == []


def test_token_repr_hides_the_value():
    token = AccessToken(value=TOKEN, expires_at=datetime(2026, 9, 2, tzinfo=KST),
                        issued_at=datetime(2026, 9, 1, tzinfo=KST))
    assert TOKEN not in repr(token) and TOKEN not in str(token)


def test_issue_throttled_is_its_own_class():
    throttled = {"error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)", "error_code": "EGW00133"}
    client, _ = make_client(lambda s: Reply(403, throttled))
    with pytest.raises(KISTokenIssueThrottledError) as info:
        client.issue_token()
    assert info.value.msg_cd == "EGW00133" and not info.value.retryable


def test_token_answer_without_token_is_a_server_error():
    client, _ = make_client(lambda s: Reply(200, {"token_type": "Bearer"}))
    with pytest.raises(KISServerError):
        client.issue_token()


def test_revoke_accepts_int_code():
    client, fake = make_client(lambda s: Reply(200, {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"}))
    client.revoke_token("old-token")
    assert fake.seen[0].path == "/oauth2/revokeP"
    assert fake.seen[0].body == {"appkey": APP_KEY, "appsecret": APP_SECRET, "token": "old-token"}


def test_hashkey_is_gated_as_orders_and_sends_app_key():
    gated = []
    client, fake = make_client(lambda s: Reply(200, {"JsonBody": s.body, "HASH": "abc123"}),
                               gate=lambda cc, tr: gated.append((cc, tr)))
    assert client.hashkey({"CANO": "x"}) == "abc123"
    assert gated == [("orders", "hashkey")]
    assert fake.seen[0].headers["appkey"] == APP_KEY
    assert "authorization" not in fake.seen[0].headers


def test_standalone_client_issues_once_and_reuses():
    now = datetime(2026, 9, 1, 12, 0, tzinfo=KST)

    def handler(seen):
        return token_reply(expires="2026-09-02 10:15:00") if seen.path == "/oauth2/tokenP" else ok(PRICE_ROW)

    client, fake = make_client(handler, token_provider=None, now=lambda: now)
    for _ in range(3):
        client.get_current_price("005930")
    assert fake.paths().count("/oauth2/tokenP") == 1
    assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in fake.seen[1:])


def test_standalone_client_reissues_near_expiry_and_after_rejection():
    clock = {"now": datetime(2026, 9, 2, 10, 0, tzinfo=KST)}
    state = {"expired_once": False}

    def handler(seen):
        if seen.path == "/oauth2/tokenP":
            return token_reply(expires="2026-09-02 10:15:00")
        if not state["expired_once"] and clock["now"].minute == 5:
            state["expired_once"] = True
            return egw("EGW00123", "기간이 만료된 token 입니다.")
        return ok(PRICE_ROW)

    client, fake = make_client(handler, token_provider=None, now=lambda: clock["now"])
    client.get_current_price("005930")
    assert fake.paths().count("/oauth2/tokenP") == 1
    clock["now"] = datetime(2026, 9, 2, 10, 5, tzinfo=KST)
    with pytest.raises(KISTokenExpiredError):  # the client never retries; it forgets the token
        client.get_current_price("005930")
    client.get_current_price("005930")
    assert fake.paths().count("/oauth2/tokenP") == 2
    clock["now"] = datetime(2026, 9, 2, 10, 14, 30, tzinfo=KST)  # within a minute of expiry
    client.get_current_price("005930")
    assert fake.paths().count("/oauth2/tokenP") == 3
