"""Token rules per app key, on a fake clock: 1 issue per 60 s, same token within 6 h, 24 h life."""

from __future__ import annotations

from datetime import datetime

from tests.sim.conftest import KST, Kis


def kst(ts: float) -> str:
    return datetime.fromtimestamp(ts, KST).strftime("%Y-%m-%d %H:%M:%S")


def test_issue_answers_kis_token_fields(sim, clock):
    resp = Kis(sim).issue()
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"access_token", "access_token_token_expired", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert body["access_token_token_expired"] == kst(clock.now + 86400)
    assert body["access_token"].startswith("eyJ") and body["access_token"].count(".") == 2


def test_second_issue_within_60s_is_refused_with_oauth_shape(sim, clock):
    client = Kis(sim)
    assert client.issue().status_code == 200
    clock.advance(59)
    resp = client.issue()
    assert resp.status_code == 403
    assert resp.json() == {"error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
                           "error_code": "EGW00133"}
    assert sim.stats()["refused"] == {"EGW00133": 1}


def test_refused_issue_does_not_restart_the_minute(sim, clock):
    client = Kis(sim)
    assert client.issue().status_code == 200
    clock.advance(40)
    assert client.issue().status_code == 403
    clock.advance(21)  # 61 s after the granted issue, 21 s after the refused one
    assert client.issue().status_code == 200


def test_the_limit_is_per_app_key(sim):
    assert Kis(sim, "key-a", "secret-a").issue().status_code == 200
    assert Kis(sim, "key-b", "secret-b").issue().status_code == 200


def test_reissue_within_6h_returns_same_token_and_expiry(sim, clock):
    client = Kis(sim)
    first = client.issue().json()
    clock.advance(5 * 3600)
    again = client.issue().json()
    assert again["access_token"] == first["access_token"]
    assert again["access_token_token_expired"] == first["access_token_token_expired"]
    assert again["expires_in"] == 86400
    stats = sim.stats()
    assert stats["tokens_issued"] == 2 and stats["tokens_new"] == 1


def test_after_6h_a_new_token_and_the_old_one_still_works(sim, clock):
    client = Kis(sim)
    old = client.issue().json()["access_token"]
    clock.advance(6 * 3600 + 1)
    new = client.issue().json()
    assert new["access_token"] != old
    assert new["access_token_token_expired"] == kst(clock.now + 86400)
    client.token = old
    assert client.price("005930").json()["rt_cd"] == "0"


def test_token_expires_after_24h_with_configured_status(make_sim, clock):
    for status in (500, 200):
        sim = make_sim(clock=clock, token_status_expired=status)
        client = Kis(sim).login()
        assert client.price("005930").status_code == 200
        clock.advance(86400)
        resp = client.price("005930")
        assert resp.status_code == status
        assert resp.json() == {"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "기간이 만료된 token 입니다."}


def test_unknown_token_and_another_keys_token_are_invalid(sim):
    owner = Kis(sim, "key-a", "secret-a").login()
    other = Kis(sim, "key-b", "secret-b")
    other.token = owner.token
    for client in (other, Kis(sim)):
        client.token = client.token or "eyJnot.a.token"
        resp = client.price("005930")
        assert resp.status_code == 500
        assert resp.json()["msg_cd"] == "EGW00121"


def test_expire_tokens_then_a_fresh_token_after_the_minute(sim, clock):
    client = Kis(sim).login()
    old = client.token
    assert sim.expire_tokens() == 1
    assert client.price("005930").json()["msg_cd"] == "EGW00123"
    clock.advance(61)
    client.login()
    assert client.token != old
    assert client.price("005930").json()["rt_cd"] == "0"


def test_revoked_token_is_invalid(sim):
    client = Kis(sim).login()
    resp = client.http.post(sim.base_url + "/oauth2/revokeP", json={
        "appkey": client.app_key, "appsecret": client.app_secret, "token": client.token})
    assert resp.status_code == 200 and resp.json()["code"] == 200
    assert client.price("005930").json()["msg_cd"] == "EGW00121"


def test_registered_apps_bad_key_and_wrong_environment(make_sim, clock):
    sim = make_sim(clock=clock, apps={"real-key": ("real-secret", "real"), "paper-key": ("paper-secret", "paper")})
    resp = Kis(sim, "nobody", "x").issue()
    assert resp.status_code == 403
    assert resp.json() == {"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}
    resp = Kis(sim, "paper-key", "paper-secret").issue()
    assert resp.status_code == 500
    assert resp.json()["msg_cd"] == "EGW02004"
    assert resp.json()["msg1"] == "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다."
    assert Kis(sim, "real-key", "wrong").issue().json()["error_code"] == "EGW00105"
    assert Kis(sim, "real-key", "real-secret").issue().status_code == 200


def test_open_mode_pins_the_first_secret(sim):
    assert Kis(sim, "any-key", "first-secret").issue().status_code == 200
    resp = Kis(sim, "any-key", "other-secret").issue()
    assert resp.status_code == 403 and resp.json()["error_code"] == "EGW00105"


def test_rest_call_with_a_bad_app_key_or_secret(make_sim, clock):
    sim = make_sim(clock=clock, apps={"real-key": ("real-secret", "real")})
    client = Kis(sim, "real-key", "real-secret").login()
    resp = client.price("005930", appkey="wrong-key")
    assert resp.status_code == 403 and resp.json()["msg_cd"] == "EGW00103"
    resp = client.price("005930", appsecret="wrong-secret")
    assert resp.status_code == 403 and resp.json()["msg_cd"] == "EGW00105"


def test_bad_grant_type(sim):
    resp = Kis(sim).issue(grant_type="password")
    assert resp.status_code == 403 and resp.json()["error_code"] == "EGW00116"
