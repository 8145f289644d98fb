"""Access control: API key scopes, revocation, dev key, Google ID tokens, inbound rate limit, CORS."""

from __future__ import annotations

import datetime as dt
import json
import time
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask import Flask, Request
from google.auth import crypt, jwt

from shared.api.access import (
    AccessControl,
    IdTokenVerifier,
    InboundLimiter,
    add_cors_headers,
    authorize,
    cors_headers,
    preflight_response,
)
from shared.api.errors import ApiError
from shared.config import Secret, SettingsError, load_settings
from shared.orders.api_keys import ApiKeys, MemoryApiKeyStore

AUDIENCE = "https://gateway.example/internal/drain"
TASKS_SA = "tasks@proj.iam.gserviceaccount.com"
app = Flask(__name__)


def make_request(method: str = "GET", path: str = "/v1/quotes", headers: dict | None = None) -> Request:
    with app.test_request_context(path, method=method, headers=headers or {}) as ctx:
        return ctx.request


# ---- a local signer standing in for Google's ------------------------------------------------------

@pytest.fixture(scope="module")
def signer():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    certs = {"kid-1": cert.public_bytes(serialization.Encoding.PEM).decode()}
    return crypt.RSASigner.from_string(pem_key, key_id="kid-1"), certs


class CertFetcher:
    """A google-auth transport answering the certs URL from memory (no network)."""

    def __init__(self, certs):
        self.certs = certs
        self.calls = 0

    def __call__(self, url, method="GET", **kwargs):
        self.calls += 1
        return SimpleNamespace(status=200, data=json.dumps(self.certs).encode(), headers={})


def id_token(signer_and_certs, *, email=TASKS_SA, aud=AUDIENCE, iss="https://accounts.google.com",
             expires_in=600, verified=True) -> str:
    signer_, _ = signer_and_certs
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "sub": "1234", "email": email, "email_verified": verified,
               "iat": now - 5, "exp": now + expires_in}
    return jwt.encode(signer_, payload).decode()


# ---- fixtures -------------------------------------------------------------------------------------

def settings(redis_prefix, **kw):
    # Cloud mode refuses an empty API key pepper.
    base = {"redis_prefix": redis_prefix, "inbound_rate_per_key": 50, "cors_origins": ("https://app.example",),
            "api_key_pepper": "test-pepper"}
    base.update(kw)
    return load_settings({}, **base)


@pytest.fixture
def keys():
    return ApiKeys(MemoryApiKeyStore())


@pytest.fixture
def control(redis_client, redis_prefix, keys, signer):
    s = settings(redis_prefix)
    verifier = IdTokenVerifier(AUDIENCE, {TASKS_SA: frozenset({"internal", "market:read"})},
                               request=CertFetcher(signer[1]))
    limiter = InboundLimiter(redis_client, prefix=redis_prefix, rate_per_s=50)
    return AccessControl(s, keys=keys, limiter=limiter, id_tokens=verifier)


def status_of(fn) -> int:
    try:
        fn()
    except ApiError as exc:
        return exc.status
    return 200


# ---- API keys -------------------------------------------------------------------------------------

def test_no_credentials_is_401_naming_the_header(control):
    with pytest.raises(ApiError) as err:
        control.authorize(make_request(), "market:read")
    assert err.value.status == 401 and err.value.field == "X-API-Key"
    assert err.value.body()["error"]["code"] == "unauthorized"


def test_scope_matrix(control, keys):
    read_key, _ = keys.create("market:read", name="dashboard")
    trade_key, _ = keys.create(["market:read", "orders:write"], name="bot")
    read = {"X-API-Key": read_key}
    trade = {"X-API-Key": trade_key}
    assert status_of(lambda: control.authorize(make_request(headers=read), "market:read")) == 200
    assert status_of(lambda: control.authorize(make_request("POST", "/v1/orders", read), "orders:write")) == 403
    assert status_of(lambda: control.authorize(make_request("POST", "/v1/orders", trade), "orders:write")) == 200
    assert status_of(lambda: control.authorize(make_request(headers=trade), "admin")) == 403
    assert status_of(lambda: control.authorize(make_request("POST", "/internal/drain", trade), "internal")) == 403
    assert status_of(lambda: control.authorize(make_request("GET", "/health"), None)) == 200


def test_principal_is_the_key_id_never_the_key(control, keys):
    key, record = keys.create("market:read")
    principal = control.authorize(make_request(headers={"X-API-Key": key}), "market:read")
    assert principal.id == f"key:{record.key_id}" and key not in repr(principal)


def test_revoked_unknown_and_tampered_keys_are_401(control, keys):
    key, record = keys.create("market:read")
    tampered = key[:-2] + ("AA" if not key.endswith("AA") else "BB")
    for bad in (tampered, "kgw_000000000000_nope", "not-a-key", key + "x"):
        with pytest.raises(ApiError) as err:
            control.authorize(make_request(headers={"X-API-Key": bad}), "market:read")
        assert err.value.status == 401 and bad not in err.value.message
    assert keys.revoke(record.key_id)
    assert status_of(lambda: control.authorize(make_request(headers={"X-API-Key": key}), "market:read")) == 401


def test_dev_key_has_every_scope_in_local_mode_only(redis_client, redis_prefix, keys):
    local = settings(redis_prefix, gateway_mode="local", gateway_dev_api_key=Secret("dev-key-123456"))
    control = AccessControl(local, keys=keys, limiter=None, id_tokens=None)
    dev = {"X-API-Key": "dev-key-123456"}
    for scope in ("market:read", "orders:write", "admin", "internal"):
        assert control.authorize(make_request(headers=dev), scope).kind == "dev_key"
    assert status_of(lambda: control.authorize(make_request(headers={"X-API-Key": "dev-key-12345"}),
                                               "market:read")) == 401
    with pytest.raises(SettingsError):
        settings(redis_prefix, gateway_mode="cloud", gateway_dev_api_key=Secret("dev-key-123456"))


def test_internal_routes_are_closed_without_an_id_token_in_either_mode(redis_prefix, keys):
    local = AccessControl(settings(redis_prefix, gateway_mode="local"), keys=keys, limiter=None, id_tokens=None)
    cloud = AccessControl(settings(redis_prefix, gateway_mode="cloud"), keys=keys, limiter=None, id_tokens=None)
    assert status_of(lambda: local.authorize(make_request("POST", "/internal/drain"), "internal")) == 401
    assert status_of(lambda: cloud.authorize(make_request("POST", "/internal/drain"), "internal")) == 401
    assert status_of(lambda: local.authorize(make_request(), "market:read")) == 401


# ---- Google ID tokens -----------------------------------------------------------------------------

def test_google_id_token_of_allowed_account_is_accepted(control, signer):
    req = make_request("POST", "/internal/drain", {"Authorization": f"Bearer {id_token(signer)}"})
    principal = control.authorize(req, "internal")
    assert principal.kind == "id_token" and principal.id == f"sa:{TASKS_SA}"
    req = make_request("POST", "/v1/orders", {"Authorization": f"Bearer {id_token(signer)}"})
    assert status_of(lambda: control.authorize(req, "orders:write")) == 403


BAD_CLAIMS = [{"aud": "https://other.example"}, {"email": "intruder@proj.iam.gserviceaccount.com"},
              {"iss": "https://evil.example"}, {"expires_in": -3600}, {"verified": False}]


@pytest.mark.parametrize("claims", BAD_CLAIMS)
def test_bad_id_tokens_are_refused(control, signer, claims):
    req = make_request("POST", "/internal/drain", {"Authorization": f"Bearer {id_token(signer, **claims)}"})
    assert status_of(lambda: control.authorize(req, "internal")) == 401


def test_id_token_signed_by_another_key_is_refused(control, signer):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    forged = id_token((crypt.RSASigner.from_string(pem, key_id="kid-1"), None))
    req = make_request("POST", "/internal/drain", {"Authorization": f"Bearer {forged}"})
    assert status_of(lambda: control.authorize(req, "internal")) == 401


def test_from_settings_trusts_the_cloud_tasks_account(redis_client, redis_prefix, signer):
    s = settings(redis_prefix, task_target_url=AUDIENCE, task_oidc_service_account=TASKS_SA)
    control = AccessControl.from_settings(s, redis_client=redis_client, id_token_request=CertFetcher(signer[1]))
    req = make_request("POST", "/internal/drain", {"Authorization": f"Bearer {id_token(signer)}"})
    assert control.authorize(req, "internal").id == f"sa:{TASKS_SA}"


def test_a_function_accepts_its_configured_audience_and_accounts_only(redis_client, redis_prefix, signer):
    """ID_TOKEN_AUDIENCE / ID_TOKEN_ALLOWED_EMAILS are settings: the scheduler's token for the refresh function."""
    sched = "sched@p.iam.gserviceaccount.com"
    s = settings(redis_prefix, gateway_function="refresh_token", id_token_audience="https://fn.example/refresh",
                 id_token_allowed_emails=(sched,), task_target_url=AUDIENCE, task_oidc_service_account=TASKS_SA)
    control = AccessControl.from_settings(s, redis_client=redis_client, id_token_request=CertFetcher(signer[1]))

    def status(email, aud):
        req = make_request("POST", "/internal/refresh-token",
                           {"Authorization": f"Bearer {id_token(signer, email=email, aud=aud)}"})
        return status_of(lambda: control.authorize(req, "internal"))

    assert status(sched, "https://fn.example/refresh") == 200
    assert status(sched, AUDIENCE) == 401                         # wrong audience
    assert status(TASKS_SA, "https://fn.example/refresh") == 401  # not this function's invoker


def test_metrics_take_an_admin_key_or_the_scraper_identity(redis_client, redis_prefix, signer, keys):
    scraper = "scraper@p.iam.gserviceaccount.com"
    s = settings(redis_prefix, gateway_function="metrics", id_token_audience=AUDIENCE,
                 id_token_allowed_emails=(scraper,))
    control = AccessControl.from_settings(s, redis_client=redis_client, id_token_request=CertFetcher(signer[1]))
    control.keys = keys
    admin, _ = keys.create("admin")
    reader, _ = keys.create("market:read")
    token = id_token(signer, email=scraper)
    assert control.authorize(make_request("GET", "/metrics", {"Authorization": f"Bearer {token}"}), "metrics")
    assert control.authorize(make_request("GET", "/metrics", {"X-API-Key": admin}), "metrics").kind == "api_key"
    assert status_of(lambda: control.authorize(make_request("GET", "/metrics", {"X-API-Key": reader}),
                                               "metrics")) == 403


# ---- inbound rate limit ---------------------------------------------------------------------------

def test_inbound_limit_answers_429_with_retry_after_per_key(redis_client, redis_prefix, keys):
    control = AccessControl(settings(redis_prefix, inbound_rate_per_key=1), keys=keys,
                            limiter=InboundLimiter(redis_client, prefix=redis_prefix, rate_per_s=1), id_tokens=None)
    key_a, _ = keys.create("market:read")
    key_b, _ = keys.create("market:read")
    control.authorize(make_request(headers={"X-API-Key": key_a}), "market:read")
    with pytest.raises(ApiError) as err:
        control.authorize(make_request(headers={"X-API-Key": key_a}), "market:read")
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "1"
    control.authorize(make_request(headers={"X-API-Key": key_b}), "market:read")  # its own budget


def test_inbound_limit_admits_the_rate_then_refuses(redis_client, redis_prefix):
    limiter = InboundLimiter(redis_client, prefix=redis_prefix, rate_per_s=5)
    results = [limiter.check("caller") for _ in range(8)]
    assert [r == 0 for r in results].count(True) == 5  # a burst of one second's worth
    assert all(0 < r <= 1.0 for r in results[5:])


def test_authorize_counts_a_request_once(redis_client, redis_prefix, keys):
    key, _ = keys.create("orders:write")
    gw = SimpleNamespace(settings=settings(redis_prefix, inbound_rate_per_key=1), redis=redis_client)
    gw.access = AccessControl(gw.settings, keys=keys, id_tokens=None,
                              limiter=InboundLimiter(redis_client, prefix=redis_prefix, rate_per_s=1))
    req = make_request("POST", "/v1/orders", {"X-API-Key": key})
    authorize(gw, req, "orders:write")
    authorize(gw, req, "orders:write")  # serve() and the handler both check: still one request


# ---- route scopes and CORS ------------------------------------------------------------------------

def test_required_scopes_fail_closed():
    def unknown_handler(gw, request):
        return {}, 200

    from shared.api import orders
    from shared.api.routes import ROUTES

    assert ROUTES.scope_of(orders.place_order) == "orders:write"
    assert ROUTES.scope_of(orders.account_balance) == "orders:write"
    assert ROUTES.scope_of(unknown_handler) == "admin"


def test_preflight_for_a_listed_origin(redis_prefix):
    s = settings(redis_prefix)
    req = make_request("OPTIONS", "/v1/orders", {"Origin": "https://app.example",
                                                  "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "idempotency-key,x-api-key"})
    resp = preflight_response(s, req)
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Idempotency-Key" in resp.headers["Access-Control-Allow-Headers"]
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]


def test_preflight_and_responses_for_other_origins_get_no_allow_origin(redis_prefix):
    s = settings(redis_prefix)
    req = make_request("OPTIONS", "/v1/quotes", {"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "GET"})
    resp = preflight_response(s, req)
    assert resp.status_code == 403 and "Access-Control-Allow-Origin" not in resp.headers
    assert "Access-Control-Allow-Origin" not in cors_headers(s, "https://evil.example")
    assert "Access-Control-Allow-Origin" not in cors_headers(s, None)
    listed = make_request("GET", "/v1/quotes", {"Origin": "https://app.example"})
    resp = add_cors_headers(s, listed, app.response_class("{}"))
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]
