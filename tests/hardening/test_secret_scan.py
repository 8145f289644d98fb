"""A full order, balance and error scenario logged at DEBUG through the production formatter: no secret in any line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared.backends import api_keys_from_settings
from shared.config import SettingsError, load_settings
from shared.observability.logs import CloudJSONFormatter, scrub
from tests.hardening.conftest import DEV_KEY, post_order

APP_KEY = "PSscanAppKey0123456789abcdefXYZ"
APP_SECRET = "scanSecretValue/0123456789+abcdefghijklmnopqrstuvwxyz=="
ACCOUNT = "50123456-01"
REDIS_AUTH = "9f8e7d6c-memorystore-auth-5b4a"
PEPPER = "pepper-value-0f1e2d3c4b5a"


@pytest.fixture
def captured():
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CloudJSONFormatter())
    handler.setLevel(logging.DEBUG)
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old)


def test_order_balance_and_errors_at_debug_leak_nothing(make_gateway, sim, captured, redis_client):
    from flask import Flask, request

    import shared.gateway as gateway_mod
    from shared.api.routes import ROUTES
    from shared.api.serve import serve

    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY=DEV_KEY, INBOUND_RATE_PER_KEY="1000",
                      KIS_APP_KEY=APP_KEY, KIS_APP_SECRET=APP_SECRET, KIS_ACCOUNT_NO=ACCOUNT,
                      GATEWAY_API_KEY_PEPPER=PEPPER, KIS_HTTP_TIMEOUT_S="0.5")
    gateway_mod.set_gateway(gw)
    app = Flask(__name__)

    @app.route("/<path:_>", methods=["GET", "POST"])
    def view(_):
        return serve(request, ROUTES.table[(request.method, request.path)])

    key, _ = api_keys_from_settings(gw.settings, redis_client=redis_client).create("market:read,orders:write")
    answers: list[str] = []
    try:
        for idem in ("scan-1", "scan-1"):
            answers.append(json.dumps(post_order(app, idem, key=key)[1]))
        answers.append(app.test_client().get("/v1/account/balance", headers={"X-API-Key": key}).get_data(True))
        sim.set_faults(timeout_rate=1.0, timeout_hold_s=0.8)
        answers.append(json.dumps(post_order(app, "scan-timeout", key=key)[1]))
        sim.set_faults(timeout_rate=0.0, error_rate=1.0)
        answers.append(app.test_client().get("/v1/account/balance", headers={"X-API-Key": key}).get_data(True))
        sim.set_faults(error_rate=0.0)
        answers.append(json.dumps(post_order(app, "scan-2", key=key[:-3] + "xyz")[1]))
        token = gw.tokens.current().access_token
        # Careless lines a future change might add: dict reprs, JSON, headers, URLs, settings, exceptions.
        log = logging.getLogger("shared.scan")
        headers = {"authorization": f"Bearer {token}", "appkey": APP_KEY, "appsecret": APP_SECRET,
                   "tr_id": "TTTC0012U"}
        body = {"CANO": ACCOUNT[:8], "ACNT_PRDT_CD": ACCOUNT[-2:], "PDNO": "005930"}
        log.debug("request headers %r body %r", headers, body)
        log.debug("request json %s", json.dumps({"headers": headers, "body": body}))
        log.debug("nested json %s", json.dumps(json.dumps(body)))
        log.info("token answer %s", json.dumps({"access_token": token, "token_type": "Bearer"}))
        log.info("caller key %s and key record %r", key, {"api_key": key})
        log.info("connecting to rediss://:%s@10.1.2.3:6378/0", REDIS_AUTH)
        log.info("settings %r", load_settings({"REDIS_URL": f"rediss://:{REDIS_AUTH}@10.1.2.3:6378/0"}).redacted())
        try:
            load_settings({"REDIS_URL": f"http://:{REDIS_AUTH}@host"})
        except SettingsError as exc:
            log.error("bad settings: %s", exc)
        try:
            raise RuntimeError(f"failed with account {ACCOUNT} and appkey={APP_KEY}")
        except RuntimeError:
            log.exception("unexpected")
    finally:
        gateway_mod.set_gateway(None)
    text = captured.getvalue()
    assert text.count("\n") > 20, "too little was logged for the scan to mean anything"
    assert "kis TTTC0012U" in text or "TTTC0012U" in text  # the DEBUG lines of the KIS client are in
    secrets = {"app key": APP_KEY, "app secret": APP_SECRET, "token": token, "account": ACCOUNT,
               "account digits": ACCOUNT.replace("-", ""), "CANO": ACCOUNT[:8], "api key": key,
               "api key secret": key.split("_", 2)[2], "dev key": DEV_KEY, "redis auth": REDIS_AUTH,
               "pepper": PEPPER}
    for name, value in secrets.items():
        assert value not in text, f"{name} appears in the logs"
        assert all(value not in a for a in answers), f"{name} appears in an answer"


@pytest.mark.parametrize("line, secret", [
    ("{'appkey': 'PSa1b2c3d4e5', 'x': 1}", "PSa1b2c3d4e5"),
    ('{"appsecret": "sec/ret+value=="}', "sec/ret+value=="),
    ("{'CANO': '87654321', 'ACNT_PRDT_CD': '01'}", "87654321"),
    ('{"access_token": "eyJhbGciOi.payload.sig"}', "eyJhbGciOi.payload.sig"),
    ("{'token': 'tok-abcdef-123'}", "tok-abcdef-123"),
    ('"{\\"appkey\\": \\"PSescaped99\\"}"', "PSescaped99"),
    ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
    ("key kgw_0123456789ab_Zx9-secretpart_A", "Zx9-secretpart_A"),
    ("url rediss://:authstring-123@10.0.0.1:6378/0", "authstring-123"),
    ("url https://user:pw-9876@example.invalid/x", "pw-9876"),
    ("account 87654321-01", "87654321"),
    ("CANO=87654321&ACNT_PRDT_CD=01", "87654321"),
    ("x-api-key: live-key-777", "live-key-777"),
])
def test_scrub_covers_every_shape(line, secret):
    assert secret not in scrub(line)


def test_redis_url_is_a_secret_and_errors_do_not_echo_it():
    s = load_settings({"REDIS_URL": "rediss://:hunter2-auth@10.0.0.5:6378/0"})
    assert "hunter2-auth" not in repr(s) and "hunter2-auth" not in json.dumps(s.redacted())
    assert s.redacted()["redis_url"] == "rediss://***@10.0.0.5:6378/0"
    assert s.redis_url.get().endswith("@10.0.0.5:6378/0")
    with pytest.raises(SettingsError) as info:
        load_settings({"REDIS_URL": "http://:hunter2-auth@10.0.0.5"})
    assert "hunter2-auth" not in str(info.value) and "REDIS_URL" in str(info.value)


def test_dashboard_refuses_a_key_in_the_query_string(make_gateway):
    import shared.gateway as gateway_mod
    from shared.api.dashboard import dashboard
    from shared.api.serve import serve

    gw = make_gateway()
    gateway_mod.set_gateway(gw)
    try:
        from flask import Flask, request

        app = Flask(__name__)

        @app.route("/dashboard")
        def view():
            return serve(request, dashboard)

        bad = app.test_client().get("/dashboard?key=kgw_0123456789ab_secret")
        good = app.test_client().get("/dashboard")
    finally:
        gateway_mod.set_gateway(None)
    assert bad.status_code == 400 and "kgw_" not in bad.get_data(True)
    assert good.status_code == 200 and "sessionStorage" in good.get_data(True)
    assert "localStorage.setItem(KEY_STORE" not in good.get_data(True)


def test_empty_pepper_is_refused_in_cloud_mode_only(redis_client, redis_prefix):
    import io

    from shared.keys_cli import run

    cloud = load_settings({}, redis_prefix=redis_prefix)
    with pytest.raises(SettingsError, match="GATEWAY_API_KEY_PEPPER"):
        api_keys_from_settings(cloud, redis_client=redis_client)
    err = io.StringIO()
    assert run(["list"], settings=cloud, redis_client=redis_client, out=io.StringIO(), err=err) == 2
    assert "GATEWAY_API_KEY_PEPPER" in err.getvalue()
    local = load_settings({"GATEWAY_MODE": "local"}, redis_prefix=redis_prefix)
    assert api_keys_from_settings(local, redis_client=redis_client) is not None
