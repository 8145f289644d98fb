"""Who may call what: API keys with scopes, Google-signed ID tokens, CORS and a per-caller inbound rate.

`authorize(gw, request, scope)` is the one check every route passes, with the scope its route declares in
`shared.api.routes` (None = public; a handler missing there needs admin). Callers
present `X-API-Key` (keys from `kisgw keys create`; in local mode also GATEWAY_DEV_API_KEY, which holds
every scope) or, for Google Cloud callers, `Authorization: Bearer <Google-signed ID token>`. Internal
routes (Cloud Tasks / Scheduler pushes) and /metrics (a scraper) take an ID token of an allowed service
account for this function's audience, verified against ID_TOKEN_CERTS_URL (Google's certificates; the local
issuer's on the local stack, the same code path). No route is open because the mode is local.
No credential → 401, a credential without the scope → 403, too many requests → 429 with
Retry-After. Nothing secret (keys, tokens) is ever echoed or logged.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from flask import Request, Response

from shared.api import key_limits
from shared.api.errors import ApiError
from shared.backends import api_keys_from_settings
from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings
from shared.market import redis_keys
from shared.orders.api_keys import SCOPES, ApiKeys

log = logging.getLogger(__name__)

INTERNAL = "internal"
METRICS = "metrics"  # read /metrics: admin keys and the scraper's identity
ALL_SCOPES = frozenset((*SCOPES, INTERNAL, METRICS))
ID_TOKEN_SCOPES = frozenset((INTERNAL, "market:read", METRICS))
PRINCIPAL_ENV = "kisgw.principal"

CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Content-Type, X-API-Key, Idempotency-Key, Authorization, X-Request-Id"
CORS_EXPOSE = "Retry-After, X-Request-Id"
CORS_MAX_AGE_S = 600

@dataclass(frozen=True)
class Principal:
    id: str  # opaque: "key:<id>", "dev", "sa:<email>", "local", "public"
    scopes: frozenset[str]
    kind: str  # api_key | dev_key | id_token | local | public
    rate_per_s: int = 0  # an API key's own limits (0 = the default of its scopes)
    max_concurrent: int = 0
    origins: tuple[str, ...] = ()  # a browser key: the only web origins it may be used from


@dataclass(frozen=True)
class Credential:
    """An API key or ID token a request presents, still to be verified (never logged: it is a secret)."""

    kind: str  # api_key | id_token
    value: str = field(repr=False)


def principal_of(request: Request) -> Principal:
    """The caller the serve path identified for this request (401 when it ran no check: fail closed)."""
    principal = request.environ.get(PRINCIPAL_ENV)
    if not isinstance(principal, Principal):
        raise ApiError(401, "no credentials: send an X-API-Key header", field="X-API-Key", code="unauthorized",
                       headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
    return principal


class InboundLimiter:
    """Requests per second per caller (GCRA in Redis, burst = one second's worth); not the KIS budget."""

    def __init__(self, client: redis.Redis, *, prefix: str, rate_per_s: int) -> None:
        self._redis = client
        self._prefix = prefix
        self._interval_us = 1_000_000 / rate_per_s
        self._script = client.register_script(redis_keys.lua_source("inbound_gcra"))

    def check(self, caller: str, rate_per_s: int | None = None) -> float:
        """0 when admitted, else seconds until the caller may try again (at its own rate when given)."""
        return self.wait_s(self._script(keys=self.keys(caller), args=self.args(rate_per_s)))

    # The async read path runs the same script in its own pipeline (with the cache read): same key and numbers.
    source = redis_keys.lua_source("inbound_gcra")

    def keys(self, caller: str) -> list[str]:
        return [redis_keys.inbound(self._prefix, caller)]

    def args(self, rate_per_s: int | None = None) -> list[str]:
        interval = self._interval_us if not rate_per_s else 1_000_000 / rate_per_s
        return [f"{interval:.3f}", f"{1_000_000 - interval:.3f}"]

    @staticmethod
    def wait_s(reply: Any) -> float:
        allowed, wait_us = reply
        return 0.0 if int(allowed) else int(wait_us) / 1_000_000


class CachedCertsRequest:
    """A google-auth transport that keeps Google's signing certs for an hour instead of fetching per token."""

    def __init__(self, inner: Any = None, *, ttl_s: float = 3600.0, clock: Clock = SYSTEM_CLOCK) -> None:
        if inner is None:
            import google.auth.transport.requests

            inner = google.auth.transport.requests.Request()
        self._inner = inner
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        if method != "GET":
            return self._inner(url, method=method, **kwargs)
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None and self._clock.monotonic() < hit[0]:
                return hit[1]
        response = self._inner(url, method=method, **kwargs)
        if getattr(response, "status", None) == 200:
            with self._lock:
                self._cache[url] = (self._clock.monotonic() + self._ttl_s, response)
        return response


class IdTokenVerifier:
    """Google-signed ID tokens of allowed service accounts (Cloud Tasks, Scheduler, other services)."""

    def __init__(self, audience: str | list[str], allowed_emails: Mapping[str, frozenset[str]], *,
                 request: Any = None, clock_skew_s: int = 10,
                 certs_url: str = "https://www.googleapis.com/oauth2/v1/certs",
                 issuers: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")) -> None:
        self.audience = audience
        self.allowed = dict(allowed_emails)
        self._request: Any = request or CachedCertsRequest()
        self._skew = clock_skew_s
        self._certs_url = certs_url
        self._issuers = issuers

    def verify(self, token: str) -> Principal | None:
        from google.auth import exceptions as gauth
        from google.oauth2 import id_token

        try:
            claims = id_token.verify_token(token, self._request, audience=self.audience, certs_url=self._certs_url,
                                           clock_skew_in_seconds=self._skew)
            if claims.get("iss") not in self._issuers:
                raise ValueError("wrong issuer")
        except gauth.TransportError:
            raise ApiError(503, "cannot fetch Google's token certificates; try again", code="auth_unavailable",
                           headers={"Retry-After": "5"}) from None
        except (ValueError, gauth.GoogleAuthError) as exc:
            log.info("ID token refused: %s", type(exc).__name__)
            return None
        email = str(claims.get("email") or "")
        if not claims.get("email_verified") or email not in self.allowed:
            log.info("ID token of a service account that is not allowed")
            return None
        return Principal(f"sa:{email}", self.allowed[email], "id_token")


class AccessControl:
    def __init__(self, settings: Settings, *, keys: ApiKeys, limiter: InboundLimiter | None,
                 id_tokens: IdTokenVerifier | None, inflight: key_limits.ConcurrencyGate | None = None) -> None:
        self.settings = settings
        self.keys = keys
        self.limiter = limiter
        self.id_tokens = id_tokens
        self.inflight = inflight

    @classmethod
    def from_settings(cls, settings: Settings, *, redis_client: redis.Redis, firestore_client: Any = None,
                      id_token_request: Any = None, keys: ApiKeys | None = None) -> AccessControl:
        """`keys`: the API keys this function may check (the composition root's); by default those the settings
        name."""
        if keys is None:
            keys = api_keys_from_settings(settings, redis_client=redis_client, firestore_client=firestore_client)
        limiter = InboundLimiter(redis_client, prefix=settings.redis_prefix, rate_per_s=settings.inbound_rate_per_key)
        # A deployed function accepts exactly the accounts and audience of its description (ID_TOKEN_*); a
        # one-process gateway also the Cloud Tasks push identity on TASK_TARGET_URL.
        audience = settings.id_token_audience or settings.task_target_url
        emails = set(settings.id_token_allowed_emails)
        if not settings.gateway_function and settings.task_oidc_service_account:
            emails.add(settings.task_oidc_service_account)
        verifier = (IdTokenVerifier(audience, dict.fromkeys(emails, ID_TOKEN_SCOPES), request=id_token_request,
                                    certs_url=settings.id_token_certs_url, issuers=settings.id_token_issuers)
                    if audience and emails else None)
        inflight = key_limits.ConcurrencyGate(redis_client, prefix=settings.redis_prefix)
        return cls(settings, keys=keys, limiter=limiter, id_tokens=verifier, inflight=inflight)

    @property
    def local(self) -> bool:
        return self.settings.gateway_mode == "local"

    def credential(self, request: Request, scope: str | None) -> Principal | Credential | None:
        """What the request presents, decided without a store or network look-up (shared by the sync and async
        checks): the caller itself when that needs no look-up (public route, the local dev key), else the API
        key or ID token to verify; None for no usable credential."""
        if scope is None:
            return Principal("public", frozenset(), "public")
        presented = request.headers.get("X-API-Key", "").strip()
        if presented:
            dev = self.settings.gateway_dev_api_key.get()
            if self.local and dev and hmac.compare_digest(presented.encode(), dev.encode()):
                return Principal("dev", ALL_SCOPES, "dev_key")
            return Credential("api_key", presented)
        bearer = request.headers.get("Authorization", "")
        if bearer[:7].lower() == "bearer " and self.id_tokens is not None:
            return Credential("id_token", bearer[7:].strip())
        return None

    def identify(self, request: Request, scope: str | None) -> Principal | None:
        found = self.credential(request, scope)
        if not isinstance(found, Credential):
            return found
        if found.kind == "api_key":
            record = self.keys.verify(found.value)
            return None if record is None else self.key_principal(record)
        assert self.id_tokens is not None
        return self.id_tokens.verify(found.value)

    @staticmethod
    def key_principal(record: Any) -> Principal:
        """The caller an active API-key record stands for (shared with the async read path's key cache)."""
        scopes = frozenset(record.scopes) | ({METRICS} if "admin" in record.scopes else frozenset())
        return Principal(f"key:{record.key_id}", scopes, "api_key", getattr(record, "rate_per_s", 0),
                         getattr(record, "max_concurrent", 0), tuple(getattr(record, "origins", ())))

    def authorize(self, request: Request, scope: str | None) -> Principal:
        principal = self.check_scope(request, self.identify(request, scope), scope)
        key_limits.check_origin(principal.origins, request.headers.get("Origin"))
        rate, concurrent = self.limits(principal)
        if self.counts(scope):
            self.refuse_if_limited(self.limiter.check(principal.id, rate), rate)  # type: ignore[union-attr]
        if concurrent and self.counts(scope) and self.inflight is not None:
            request.environ[key_limits.SLOT_ENV] = (principal.id, self.inflight.enter(principal.id, concurrent))
        request.environ[PRINCIPAL_ENV] = principal
        return principal

    def limits(self, principal: Principal) -> tuple[int, int]:
        """(requests/s, requests in flight; 0 = no cap) for this caller: an API key's own or its scopes'."""
        if principal.kind == "api_key":
            return key_limits.limits_for(self.settings, principal.scopes, principal.rate_per_s,
                                         principal.max_concurrent)
        return self.settings.inbound_rate_per_key, 0

    def release(self, request: Request) -> None:
        """The request is answered: give back its in-flight slot."""
        slot = request.environ.pop(key_limits.SLOT_ENV, None)
        if slot is not None and self.inflight is not None:
            try:
                self.inflight.leave(*slot)
            except redis.RedisError:  # the slot expires on its own
                log.warning("could not free an in-flight slot (Redis); it expires in %.0f s", key_limits.SLOT_TTL_S)

    # ---- the checks, shared with the async read path (same answers, same status codes) --------------
    @staticmethod
    def check_scope(request: Request, principal: Principal | None, scope: str | None) -> Principal:
        if principal is None:
            has_key = bool(request.headers.get("X-API-Key", "").strip())
            has_token = bool(request.headers.get("Authorization", "").strip())
            message = ("the API key is unknown, malformed or revoked" if has_key else
                       "the bearer token is not a valid ID token of an allowed service account" if has_token
                       else "no credentials: send an X-API-Key header")
            raise ApiError(401, message, field="X-API-Key" if has_key or not has_token else "Authorization",
                           code="unauthorized", headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
        if scope is not None and scope not in principal.scopes:
            raise ApiError(403, f"this credential lacks the scope {scope!r} needed here", code="forbidden")
        return principal

    def counts(self, scope: str | None) -> bool:
        """Whether a request needing `scope` passes the inbound rate limit."""
        return scope is not None and scope != INTERNAL and self.limiter is not None

    def refuse_if_limited(self, wait_s: float, rate: int | None = None) -> None:
        if wait_s > 0:
            retry = max(1, math.ceil(wait_s))
            raise ApiError(429, f"more than {rate or self.settings.inbound_rate_per_key} requests per second with "
                                f"this credential; retry in {retry} s", code="too_many_requests",
                           headers={"Retry-After": str(retry)})


class HasAccess(Protocol):
    """What the checks take from the gateway (`shared.api.parts.Gateway`): its access control, built once by
    the composition root."""

    @property
    def access(self) -> AccessControl: ...


def authorize(gw: HasAccess, request: Request, scope: str | None) -> Principal:
    """The caller of `request` if it may use `scope`; raises ApiError 401/403/429 otherwise."""
    known = request.environ.get(PRINCIPAL_ENV)
    if isinstance(known, Principal) and (scope is None or scope in known.scopes):
        return known  # already checked (and counted) for this request
    if scope is None:
        return Principal("public", frozenset(), "public")  # public routes need no key store
    return gw.access.authorize(request, scope)


def release(gw: HasAccess, request: Request) -> None:
    """Give back the request's in-flight slot, if it took one (serve() calls this once it has answered)."""
    if key_limits.SLOT_ENV in request.environ:
        gw.access.release(request)


# ---- CORS ---------------------------------------------------------------------------------------

def cors_headers(settings: Settings, origin: str | None) -> dict[str, str]:
    """Headers for an actual (non-preflight) response; Allow-Origin only for a listed origin."""
    if origin and origin in settings.cors_origins:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": CORS_EXPOSE,
                "Vary": "Origin"}
    return {"Vary": "Origin"}


def preflight_response(settings: Settings, request: Request) -> Response:
    """The answer to an OPTIONS preflight: 204 with the allowances for a listed origin, else 403."""
    origin = request.headers.get("Origin")
    wanted = request.headers.get("Access-Control-Request-Method", "").upper()
    if not origin or origin not in settings.cors_origins or wanted not in ("GET", "POST", ""):
        resp = Response('{"error":{"code":"forbidden","message":"origin or method not allowed by CORS"}}',
                        status=403, mimetype="application/json")
        resp.headers["Vary"] = "Origin"
        return resp
    resp = Response(status=204)
    resp.headers.update({"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": CORS_METHODS,
                         "Access-Control-Allow-Headers": CORS_HEADERS, "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
                         "Vary": "Origin"})
    return resp


def add_cors_headers(settings: Settings, request: Request, response: Response) -> Response:
    for k, v in cors_headers(settings, request.headers.get("Origin")).items():
        response.headers[k] = v
    return response
