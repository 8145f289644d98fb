"""The production shape, end to end: each finding of the deploy review, shown against the local stack that runs
the deployed topology (one process per function with exactly its secrets and identity; stand-ins that check
roles; real ID tokens)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid

import grpc
import pytest
import requests
from google.api_core import exceptions as gexc

from shared.cloud.identity import LOCAL_API_AUDIENCE
from shared.config import load_settings
from shared.deployment import INVOKERS, function_for_path, functions, secret_id

pytestmark = pytest.mark.slow

KIS_SECRET_ENV = ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_ACCOUNT_NO")
PUBLIC_READERS = ("quotes", "daily_prices", "symbol_info", "index_quotes", "health", "stats", "openapi",
                  "dashboard")


def dev(stack):
    return {"X-API-Key": stack.dev_api_key}


def sm_client(stack, function):
    from shared.cloud.secret_manager import local_secret_client

    fp = stack.functions[function]
    return local_secret_client(stack.secret_manager.address, fp.env["LOCAL_CREDENTIAL"])


@contextlib.contextmanager
def function_process_env(stack, function):
    """Build a function's parts in this process as its process does (the Firestore client reads the emulator
    host from the environment)."""
    env = stack.functions[function].env
    old = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if env.get("FIRESTORE_EMULATOR_HOST"):
        os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
    try:
        yield load_settings(env)
    finally:
        if old is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = old


def secret_name(key):
    return f"projects/local-project/secrets/{secret_id(key)}"


@pytest.fixture(scope="module")
def api_keys(stack):
    """Real API keys in the stack's key store (Firestore emulator or Redis), made as an operator would."""
    from shared.backends import api_keys_from_settings

    env = stack.functions["orders"].env  # holds the pepper; an operator's tool has full access
    old = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if env.get("FIRESTORE_EMULATOR_HOST"):
        os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
    try:
        settings = load_settings({**env, "GATEWAY_FUNCTION": ""})
        import redis

        keys = api_keys_from_settings(settings, redis_client=redis.Redis.from_url(settings.redis_url.get()))
        admin, _ = keys.create("admin", name="e2e-admin")
        reader, _ = keys.create("market:read", name="e2e-reader")
        trader, _ = keys.create("orders:write", name="e2e-trader")
        yield {"admin": admin, "reader": reader, "trader": trader}
    finally:
        if old is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = old


# ---- finding 1: one token writer ------------------------------------------------------------------

def test_scheduled_refresh_stores_a_token_that_every_function_then_reads(stack):
    # The stack ran the refresh job once at start (as after a deploy): one version, written by refresh_token.
    versions = list(sm_client(stack, "refresh_token").list_secret_versions(
        request={"parent": secret_name("kis_token"), "filter": "state:ENABLED"}))
    assert len(versions) == 1
    issued = stack.sim.stats()["tokens_issued"]
    assert issued >= 1
    # Readers use it: the drain (quotes), orders, balance and the older gateway's routes all reach KIS.
    assert requests.get(stack.base_url + "/v1/quotes?symbols=005380", headers=dev(stack),
                        timeout=10).json()["quotes"]["005380"]["status"] == "fresh"
    assert requests.get(stack.base_url + "/v1/account/balance", headers=dev(stack), timeout=10).status_code == 200
    r = requests.post(stack.base_url + "/api/account/balance", json={}, headers=dev(stack), timeout=10)
    assert r.status_code == 200 and r.json()["success"] is True
    # A scheduled run inside the token's life is a no-op; nobody else issued one.
    again = stack.scheduler.run_now("refresh-token")
    assert again.status == 200
    assert stack.sim.stats()["tokens_issued"] == issued


def test_only_the_refresh_function_may_write_token_versions(stack):
    payload = {"data": json.dumps({"access_token": "x", "expires_at": 1, "issued_at": 1}).encode()}
    for reader in ("drain", "orders", "balance", "legacy_api"):
        with pytest.raises(gexc.PermissionDenied):
            sm_client(stack, reader).add_secret_version(request={"parent": secret_name("kis_token"),
                                                                 "payload": payload})
    # Readers hold no issue path either: their token manager is not the writer.
    from shared.gateway import build_gateway

    with function_process_env(stack, "drain") as settings:
        gw = build_gateway(settings)
        assert gw.tokens.writer is False
        gw.close()


# ---- finding 2: Cloud Scheduler's ID token is accepted ----------------------------------------------

def test_scheduler_jobs_reach_their_internal_functions_with_an_id_token(stack):
    assert stack.scheduler.run_now("refresh-token").status == 200
    preload = stack.scheduler.run_now("preload")
    assert preload.status == 200  # the handler decides (not a trading time: skipped), no 401


# ---- /internal/* boundaries (findings 2, 7) ----------------------------------------------------------

def test_internal_routes_refuse_missing_wrong_identity_and_wrong_audience(stack):
    drain = stack.url("drain") + "/internal/drain"
    body = {"kind": "quote"}
    tasks_sa = stack.email(INVOKERS["tasks"])
    assert requests.post(drain, json=body, timeout=10).status_code == 401
    wrong_identity = stack.issuer.id_token(stack.email("fn-quotes"), stack.url("drain"))
    assert requests.post(drain, json=body, headers={"Authorization": f"Bearer {wrong_identity}"},
                         timeout=10).status_code == 401
    wrong_audience = stack.issuer.id_token(tasks_sa, stack.url("refresh_token"))
    assert requests.post(drain, json=body, headers={"Authorization": f"Bearer {wrong_audience}"},
                         timeout=10).status_code == 401
    right = stack.issuer.id_token(tasks_sa, stack.url("drain"))
    assert requests.post(drain, json=body, headers={"Authorization": f"Bearer {right}"},
                         timeout=10).status_code == 200
    # A token signed by someone else (not the issuer at ID_TOKEN_CERTS_URL) is refused too.
    from shared.cloud.identity import LocalIssuer

    forged = LocalIssuer().id_token(tasks_sa, stack.url("drain"))
    assert requests.post(drain, json=body, headers={"Authorization": f"Bearer {forged}"},
                         timeout=10).status_code == 401


def test_internal_routes_are_not_reachable_through_public_functions(stack):
    for path in ("/internal/drain", "/internal/refresh-token", "/internal/preload"):
        assert requests.post(stack.base_url + path, json={"kind": "quote"}, headers=dev(stack),
                             timeout=10).status_code == 404  # the front routes no public function there
        r = requests.post(stack.url("legacy_api") + path, json={"kind": "quote"}, headers=dev(stack), timeout=10)
        assert r.status_code == 404, path  # legacy_api serves only /api/...
    assert all(not f.public for f in functions().values() if any(p.startswith("/internal") for p in f.paths))


# ---- finding 3: /metrics -------------------------------------------------------------------------

def test_metrics_with_an_admin_key_and_with_the_scraper_identity(stack, api_keys):
    url = stack.url("metrics") + "/metrics"
    assert requests.get(url, headers={"X-API-Key": api_keys["admin"]}, timeout=10).status_code == 200
    scraper = stack.issuer.id_token(stack.email(INVOKERS["scraper"]), stack.url("metrics"))
    r = requests.get(url, headers={"Authorization": f"Bearer {scraper}"}, timeout=10)
    assert r.status_code == 200 and "kisgw_" in r.text
    other = stack.issuer.id_token(stack.email(INVOKERS["tasks"]), stack.url("metrics"))
    assert requests.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=10).status_code == 401
    assert requests.get(url, headers={"X-API-Key": api_keys["reader"]}, timeout=10).status_code == 403


# ---- finding 4: /dashboard/feed ------------------------------------------------------------------

def test_dashboard_feed_with_a_real_admin_key(stack, api_keys):
    r = requests.get(stack.base_url + "/dashboard/feed", headers={"X-API-Key": api_keys["admin"]}, timeout=10)
    assert r.status_code == 200 and "token" in r.json()
    assert requests.get(stack.base_url + "/stats", headers={"X-API-Key": api_keys["admin"]},
                        timeout=10).status_code == 200
    assert requests.get(stack.base_url + "/dashboard", timeout=10).status_code == 200


# ---- finding 5: token state without the token secret ---------------------------------------------

def test_health_reports_the_token_without_holding_the_secret(stack):
    token = requests.get(stack.base_url + "/health", timeout=10).json()["checks"]["token"]
    assert token["state"] == "valid" and token["expires_in_s"] > 0
    with pytest.raises(gexc.PermissionDenied):
        sm_client(stack, "health").access_secret_version(request={"name": secret_name("kis_token") +
                                                                  "/versions/latest"})


# ---- finding 6: legacy trading routes --------------------------------------------------------------

def test_older_gateway_trading_and_balance_routes(stack, api_keys):
    before = stack.sim.stats()["orders"]
    r = requests.post(stack.base_url + "/api/trading/buy", json={"stock_code": "005930", "quantity": 1},
                      headers={"X-API-Key": api_keys["trader"], "Idempotency-Key": uuid.uuid4().hex}, timeout=10)
    assert r.status_code == 200, r.text
    assert stack.sim.stats()["orders"] == before + 1
    r = requests.post(stack.base_url + "/api/account/balance", json={}, headers={"X-API-Key": api_keys["trader"]},
                      timeout=10)
    assert r.status_code == 200 and r.json()["success"] is True
    r = requests.post(stack.base_url + "/api/market-data/daily-prices", json={"stock_code": "005930"},
                      headers={"X-API-Key": api_keys["reader"]}, timeout=10)
    assert r.status_code == 200 and r.json()["data"]["bars"]


def test_orders_and_balance(stack, api_keys):
    headers = {"X-API-Key": api_keys["trader"], "Idempotency-Key": uuid.uuid4().hex}
    body = {"side": "buy", "symbol": "000660", "quantity": 1, "order_type": "market"}
    first = requests.post(stack.base_url + "/v1/orders", json=body, headers=headers, timeout=10)
    again = requests.post(stack.base_url + "/v1/orders", json=body, headers=headers, timeout=10)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert requests.get(stack.base_url + "/v1/account/balance", headers={"X-API-Key": api_keys["trader"]},
                        timeout=10).status_code == 200


def test_fresh_quotes_with_a_read_key(stack, api_keys):
    r = requests.get(stack.base_url + "/v1/quotes?symbols=035420,051910", headers={"X-API-Key": api_keys["reader"]},
                     timeout=10)
    assert r.status_code == 200
    assert {q["status"] for q in r.json()["quotes"].values()} == {"fresh"}
    assert requests.get(stack.base_url + "/v1/orders", headers={"X-API-Key": api_keys["reader"]},
                        timeout=10).status_code in (403, 405)


# ---- finding 8: least privilege ------------------------------------------------------------------

@pytest.mark.parametrize("function", PUBLIC_READERS)
def test_a_public_read_function_holds_no_kis_secret(stack, function):
    env = stack.functions[function].env
    assert not any(env.get(name) for name in KIS_SECRET_ENV)
    client = sm_client(stack, function)
    for key in ("kis_app_key", "kis_app_secret", "kis_account_no", "kis_token"):
        with pytest.raises(gexc.PermissionDenied):
            client.access_secret_version(request={"name": secret_name(key) + "/versions/latest"})


def test_a_public_read_function_cannot_write_api_keys_or_orders(stack):
    from shared.cloud.grants import AccessDenied
    from shared.gateway import build_gateway

    env = stack.functions["quotes"].env
    if not env.get("FIRESTORE_EMULATOR_HOST"):
        pytest.skip("the key store is Firestore only with the Cloud SDK's emulator; Redis stand-ins hold no grants")
    old = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
    try:
        gw = build_gateway(load_settings(env))
        with pytest.raises(AccessDenied):
            gw.access.keys.create("orders:write", name="attacker")
        with pytest.raises(AccessDenied):  # order records and breaker state: read-only here
            gw.firestore.collection("order_idempotency").document("k").create({"x": 1})
        assert gw.firestore.collection("order_idempotency").document("k").get().exists is False  # reads work
        gw.close()
    finally:
        if old is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = old


def test_a_public_read_function_cannot_enqueue_a_token_refresh(stack):
    from google.cloud import tasks_v2

    from shared.cloud.tasks import REFRESH_QUEUE_ID, tasks_client

    settings = load_settings(stack.functions["quotes"].env)
    client = tasks_client(settings, stack.functions["quotes"].env["LOCAL_CREDENTIAL"])
    parent = f"projects/local-project/locations/{settings.gcp_region}/queues/{REFRESH_QUEUE_ID}"
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=stack.url("refresh_token") + "/internal/refresh-token"))
    with pytest.raises(gexc.PermissionDenied):
        client.create_task(parent=parent, task=task)
    anonymous = tasks_client(settings, None)
    with pytest.raises(gexc.Unauthenticated):
        anonymous.create_task(parent=parent, task=task)


def test_every_function_runs_under_its_own_identity(stack):
    emails = {fp.email for fp in stack.functions.values()}
    assert len(emails) == len(stack.functions)
    for name, fp in stack.functions.items():
        claims = stack.issuer.verify(fp.env["LOCAL_CREDENTIAL"], LOCAL_API_AUDIENCE)
        assert claims["email"] == fp.email and fp.env["GATEWAY_FUNCTION"] == name
        assert function_for_path(functions()[name].paths[0]).name == name


def test_grpc_status_of_a_denied_call_names_no_secret(stack):
    try:
        sm_client(stack, "quotes").access_secret_version(request={"name": secret_name("kis_app_key") +
                                                                  "/versions/latest"})
    except gexc.PermissionDenied as exc:
        assert exc.grpc_status_code == grpc.StatusCode.PERMISSION_DENIED
        assert stack.secret_values["kis_app_key"] not in str(exc)
