"""Orders and balance through HTTP handlers, a full gateway and the KIS simulator (loopback, real Redis)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask, request

try:
    import shared.gateway as gateway_mod
    import shared.sim.server as sim_server
except ImportError as exc:  # other parts of the gateway still landing in this checkout
    pytest.skip(f"gateway or simulator not importable: {exc}", allow_module_level=True)

from shared.api.routes import ROUTES  # noqa: E402
from shared.api.serve import serve  # noqa: E402
from shared.backends import api_keys_from_settings  # noqa: E402
from shared.config import load_settings  # noqa: E402
from shared.sim.config import SimConfig  # noqa: E402

APP_KEY = "PSsimAppKey0123456789abcdefXYZ"
APP_SECRET = "simSecretValue/0123456789+abcdefghijklmnopqrstuvwxyz=="
ACCOUNT = "50123456-01"
DEV_KEY = "dev-local-key-7f3a9c"
TR_BUY = "TTTC0012U"


@pytest.fixture
def sim():
    server = sim_server.SimServer(SimConfig(env="real", timeout_hold_s=3.0), port=0).start()
    yield server
    server.stop()


@pytest.fixture
def stack(sim, redis_client, redis_prefix):
    settings = load_settings({
        "KIS_BASE_URL": sim.base_url, "KIS_APP_KEY": APP_KEY, "KIS_APP_SECRET": APP_SECRET,
        "KIS_ACCOUNT_NO": ACCOUNT, "REDIS_PREFIX": redis_prefix, "TASK_QUEUE": "local://",
        "KIS_HTTP_TIMEOUT_S": "1.5", "GATEWAY_MODE": "local", "GATEWAY_DEV_API_KEY": DEV_KEY,
        "INBOUND_RATE_PER_KEY": "1000", "BREAKER_STORE": "memory://", "TOKEN_STORE": "redis://",
    })
    gw = gateway_mod.build_gateway(settings, redis_client=redis_client)
    gateway_mod.set_gateway(gw)
    app = Flask(__name__)

    @app.route("/<path:_>", methods=["GET", "POST"])
    def view(_):
        return serve(request, ROUTES.table[(request.method, request.path)])

    keys = api_keys_from_settings(settings, redis_client=redis_client)
    trade_key, _ = keys.create("market:read,orders:write", name="test bot")
    read_key, _ = keys.create("market:read", name="dashboard")
    yield {"gw": gw, "app": app, "trade": trade_key, "read": read_key, "keys": keys, "sim": sim}
    gateway_mod.set_gateway(None)
    gw.close()


ORDER = {"side": "buy", "symbol": "005930", "quantity": 3, "order_type": "limit", "price": 70000}


def post_order(app, key, body=ORDER, idem: str | None = "order-0001", path="/v1/orders"):
    headers = {"X-API-Key": key}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    resp = app.test_client().post(path, data=json.dumps(body), headers=headers, content_type="application/json")
    return resp.status_code, resp.get_json(), resp.headers


def test_repeat_gets_the_stored_answer_and_one_order(stack):
    app, key, sim = stack["app"], stack["trade"], stack["sim"]
    first = post_order(app, key)
    again = post_order(app, key)
    assert first[0] == 200 and first[1]["outcome"] == "accepted" and first[1]["order"]["order_no"]
    assert again[:2] == first[:2]
    assert sim.stats()["orders"] == 1


def test_twenty_concurrent_posts_one_key_one_order_twenty_identical_answers(stack):
    app, key, sim = stack["app"], stack["trade"], stack["sim"]
    barrier = threading.Barrier(20)

    def one(_):
        barrier.wait(timeout=10)
        status, body, _h = post_order(app, key, idem="order-concurrent-1")
        return status, json.dumps(body, sort_keys=True)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert sim.stats()["orders"] == 1
    assert len(set(answers)) == 1 and answers[0][0] == 200


def test_different_body_same_key_is_409(stack):
    app, key, sim = stack["app"], stack["trade"], stack["sim"]
    post_order(app, key)
    status, body, _ = post_order(app, key, body={**ORDER, "quantity": 4})
    assert status == 409 and body["error"]["code"] == "idempotency_mismatch"
    assert body["error"]["field"] == "Idempotency-Key"
    assert sim.stats()["orders"] == 1


def test_timeout_after_sending_is_202_unknown_and_never_resent(stack):
    app, key, sim = stack["app"], stack["trade"], stack["sim"]
    post_order(app, key, idem="warm-up-0001")  # token issued, connection pooled
    sim.set_faults(timeout_rate=1.0, timeout_hold_s=3.0)
    before = sim.stats()["calls"].get(TR_BUY, 0)
    first = post_order(app, key, idem="order-timeout-1")
    sim.set_faults(timeout_rate=0.0)
    again = post_order(app, key, idem="order-timeout-1")
    assert first[0] == 202 and first[1]["outcome"] == "unknown" and first[1]["check"] == "/v1/account/balance"
    assert again[:2] == first[:2]
    assert sim.stats()["calls"].get(TR_BUY, 0) - before == 1  # reached KIS once, never resent


def test_missing_key_and_validation_errors_name_the_field(stack):
    app, key = stack["app"], stack["trade"]
    status, body, _ = post_order(app, key, idem=None)
    assert status == 400 and body["error"]["field"] == "Idempotency-Key"
    cases = [({**ORDER, "side": "hold"}, "side"), ({**ORDER, "symbol": "5930"}, "symbol"),
             ({**ORDER, "quantity": 0}, "quantity"), ({**ORDER, "quantity": 1_000_001}, "quantity"),
             ({**ORDER, "quantity": 2.5}, "quantity"), ({**ORDER, "price": None}, "price"),
             ({**ORDER, "price": 70000.5}, "price"), ({**ORDER, "order_type": "market"}, "price"),
             ({**ORDER, "order_type": "stop"}, "order_type"), ({**ORDER, "note": "x"}, "note")]
    for n, (body_in, field) in enumerate(cases):
        status, body, _ = post_order(app, key, body=body_in, idem=f"invalid-{n:04d}")
        assert status == 400 and body["error"]["field"] == field, (body_in, body)
    big = {**ORDER, "symbol": "0" * 5000}
    assert post_order(app, key, body=big, idem="too-big-0001")[0] == 413
    assert stack["sim"].stats()["orders"] == 0


def test_auth_matrix_on_order_routes(stack):
    app, keys = stack["app"], stack["keys"]
    client = app.test_client()
    assert client.post("/v1/orders", json=ORDER, headers={"Idempotency-Key": "auth-0001"}).status_code == 401
    assert post_order(app, stack["read"], idem="auth-0002")[0] == 403
    assert client.get("/v1/account/balance", headers={"X-API-Key": stack["read"]}).status_code == 403
    revoked, record = keys.create("orders:write")
    keys.revoke(record.key_id)
    assert post_order(app, revoked, idem="auth-0003")[0] == 401
    assert post_order(app, DEV_KEY, idem="auth-0004")[0] == 200  # local mode: the dev key has every scope
    assert stack["sim"].stats()["orders"] == 1


def test_balance_all_pages_and_legacy_routes(stack):
    app, key, sim = stack["app"], stack["trade"], stack["sim"]
    client = app.test_client()
    resp = client.get("/v1/account/balance", headers={"X-API-Key": key})
    bal = resp.get_json()
    assert resp.status_code == 200 and bal["count"] == len(bal["positions"]) > 0
    assert "cash" in bal["totals"]
    assert len({p["symbol"] for p in bal["positions"]}) == bal["count"]

    legacy = client.post("/api/account/balance", json={}, headers={"X-API-Key": key})
    assert legacy.status_code == 200 and legacy.get_json()["success"] is True
    assert legacy.get_json()["data"]["count"] == bal["count"]

    buy = post_order(app, key, body={"stock_code": "005930", "quantity": 1, "price": 70000},
                     idem=None, path="/api/trading/buy")
    sell = post_order(app, key, body={"stock_code": "005930", "quantity": 1, "order_type": "market"},
                      idem="legacy-sell-1", path="/api/trading/sell")
    sell_again = post_order(app, key, body={"stock_code": "005930", "quantity": 1, "order_type": "market"},
                            idem="legacy-sell-1", path="/api/trading/sell")
    assert buy[0] == 200 and buy[1]["success"] is True and buy[1]["order"]["side"] == "buy"
    assert sell[0] == 200 and sell[1]["order"]["side"] == "sell" and sell[1]["order"]["price"] is None
    assert sell_again[:2] == sell[:2]
    assert sim.stats()["orders"] == 2


def test_a_balance_refused_for_the_rate_is_asked_again_and_an_order_is_not(stack, monkeypatch):
    """KIS refusing a call for the rate (EGW00201) certainly did not act on it: the balance, a read, is asked
    again within its deadline and the limiter is told; an order refused so is answered not sent, never resent."""
    from shared.kis.errors import KISRateLimitError

    app, key, gw, sim = stack["app"], stack["trade"], stack["gw"], stack["sim"]
    real_balance, real_order = gw.kis.get_balance, gw.kis.place_cash_order
    asked: list[str] = []
    told: list[int] = []

    def refused_once(real):
        def call(*args, **kwargs):
            asked.append(real.__name__)
            if asked.count(real.__name__) == 1:
                raise KISRateLimitError("초당 거래건수를 초과하였습니다.", msg_cd="EGW00201")
            return real(*args, **kwargs)
        return call

    report = gw.limiter.report_rate_limited
    monkeypatch.setattr(gw.kis, "get_balance", refused_once(real_balance))
    monkeypatch.setattr(gw.kis, "place_cash_order", refused_once(real_order))
    monkeypatch.setattr(gw.limiter, "report_rate_limited", lambda: (told.append(1), report())[1])
    resp = app.test_client().get("/v1/account/balance", headers={"X-API-Key": key})
    assert resp.status_code == 200 and resp.get_json()["count"] > 0
    assert asked.count("get_balance") == 2 and told
    status, body, _ = post_order(app, key, idem="rate-refused-1")
    assert status == 503 and "not taken" in body["error"]["message"] and asked.count("place_cash_order") == 1
    assert sim.stats()["orders"] == 0


def test_a_balance_refused_for_its_token_is_asked_again_once_after_one_refresh(stack, monkeypatch):
    """The balance's token rule is the market reads' (the gate's retry policy): one refresh, one more try."""
    from shared.kis.errors import KISTokenExpiredError

    app, key, gw = stack["app"], stack["trade"], stack["gw"]
    real_balance = gw.kis.get_balance
    asked: list[int] = []
    refreshed: list[int] = []

    def expired_once():
        asked.append(1)
        if len(asked) == 1:
            raise KISTokenExpiredError("기간이 만료된 token 입니다.", msg_cd="EGW00123")
        return real_balance()

    monkeypatch.setattr(gw.kis, "get_balance", expired_once)
    monkeypatch.setattr(gw.tokens, "on_rejected", lambda *a: refreshed.append(1))  # the token itself is fine
    resp = app.test_client().get("/v1/account/balance", headers={"X-API-Key": key})
    assert resp.status_code == 200 and resp.get_json()["count"] > 0
    assert len(asked) == 2 and len(refreshed) == 1


def test_no_secret_in_any_log_or_answer(stack, caplog):
    app, key, gw, sim = stack["app"], stack["trade"], stack["gw"], stack["sim"]
    caplog.set_level(logging.DEBUG)
    root = logging.getLogger()
    captured: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            captured.append(self.format(record))

    extra = Collect(level=logging.DEBUG)
    root.addHandler(extra)
    answers: list[str] = []
    try:
        client = app.test_client()
        for path, body, idem in (("/v1/orders", ORDER, "secret-scan-1"), ("/v1/orders", ORDER, "secret-scan-1"),
                                 ("/api/trading/sell", {"stock_code": "000660", "quantity": 1}, None)):
            status, answer, _ = post_order(app, key, body=body, idem=idem, path=path)
            answers.append(json.dumps(answer))
        answers.append(client.get("/v1/account/balance", headers={"X-API-Key": key}).get_data(as_text=True))
        answers.append(client.post("/api/account/balance", json={}, headers={"X-API-Key": key}).get_data(True))
        sim.set_faults(timeout_rate=1.0, timeout_hold_s=3.0)
        answers.append(json.dumps(post_order(app, key, idem="secret-scan-timeout")[1]))
        sim.set_faults(timeout_rate=0.0)
        answers.append(json.dumps(post_order(app, "kgw_000000000000_wrong", idem="secret-scan-2")[1]))
    finally:
        root.removeHandler(extra)
    token = gw.tokens.current().access_token
    secrets = {"app key": APP_KEY, "app secret": APP_SECRET, "token": token, "account": ACCOUNT,
               "account digits": ACCOUNT.replace("-", ""), "account cano": ACCOUNT[:8], "api key": key,
               "api key secret": key.split("_", 2)[2], "dev key": DEV_KEY}
    logs = caplog.text + "\n".join(captured) + "\n".join(repr(r.__dict__) for r in caplog.records)
    assert captured, "nothing was logged: the scan would prove nothing"
    for name, value in secrets.items():
        assert value not in logs, f"{name} appears in the logs"
        assert all(value not in a for a in answers), f"{name} appears in an answer"


def test_unique_idempotency_keys_give_separate_orders(stack):
    app, key, sim = stack["app"], stack["trade"], stack["sim"]
    for _ in range(3):
        assert post_order(app, key, idem=uuid.uuid4().hex)[0] == 200
    assert sim.stats()["orders"] == 3


def test_unknown_symbol_order_is_refused_before_kis(stack):
    from shared.market.symbol_master import refresh_from_settings

    app, key, sim, gw = stack["app"], stack["trade"], stack["sim"], stack["gw"]
    unknown = {**ORDER, "symbol": "99999Z"}
    sim.reset_stats()
    post_order(app, key, body=unknown, idem="unknown-before")  # no master yet: sent, and KIS says no
    assert sim.stats()["calls"].get("TTTC0012U") == 1
    assert refresh_from_settings(gw.symbols, gw.settings)["loaded"]
    sim.reset_stats()
    status, body, _ = post_order(app, key, body=unknown, idem="unknown-after")
    assert status == 400 and body["error"]["code"] == "unknown_symbol" and body["error"]["field"] == "symbol"
    legacy = post_order(app, key, body={"stock_code": "99999Z", "quantity": 1, "price": 70000}, idem=None,
                        path="/api/trading/buy")
    assert legacy[0] == 400
    assert sim.stats()["total_calls"] == 0 and sim.stats()["orders"] == 0
    assert post_order(app, key, idem="known-after")[0] == 200
