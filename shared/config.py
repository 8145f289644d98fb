"""One settings object for the whole gateway, read from environment variables.

Every limit, TTL, batch size and queue rate lives here; the functions, the local stack and the
Terraform variables generator all read these numbers, so changing one value changes all of them.
A bad value stops start-up with a `SettingsError` naming the variable and what it accepts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# KIS REST limits per app key (calls per second) by profile and environment.
LIMIT_PROFILES: dict[str, dict[str, int]] = {
    "kis-2026-04": {"real": 18, "paper": 1},
    "kis-legacy": {"real": 20, "paper": 2},
}
KIS_BASE_URLS = {
    "real": "https://openapi.koreainvestment.com:9443",
    "paper": "https://openapivts.koreainvestment.com:29443",
}
# KIS's symbol master files (kospi/kosdaq/konex_code.mst.zip), per the official stocks_info scripts.
KIS_MASTER_URL = "https://new.real.download.dws.co.kr/common/master"
# Account-ledger calls (balance, orders) per second KIS allows per account (EGW00215 above it). KIS's value is
# unconfirmed (practitioners pace ledger TRs at about 1/s); the simulator enforces this number by default.
KIS_LEDGER_TPS = 5
KIS_MULTI_QUOTE_MAX = 30
TOKEN_ISSUE_INTERVAL_S = 60.0
CALL_CLASSES = ("orders", "quotes", "reference")
SYMBOL_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class SettingsError(ValueError):
    """A setting is missing or out of range; the message names the variable."""


class Secret:
    """A string that never shows itself in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    # KIS connection
    kis_env: str = "real"
    kis_base_url: str = ""
    kis_master_url: str = ""  # where the symbol master files are; "" = KIS's location (or the simulator's)
    kis_app_key: Secret = field(default_factory=lambda: Secret(""))
    kis_app_secret: Secret = field(default_factory=lambda: Secret(""))
    kis_account_no: Secret = field(default_factory=lambda: Secret(""))
    kis_limit_profile: str = "kis-2026-04"
    kis_http_timeout_s: float = 5.0
    kis_market_code: str = "J"
    kis_ledger_tps: int = KIS_LEDGER_TPS

    # Shared rate budget (calls per second per app key); 0 means "KIS limit - 1" (at least 1).
    gateway_budget: int = 0
    min_call_spacing_ms: int = -1
    share_orders: float = 0.2
    share_quotes: float = 0.6
    share_reference: float = 0.2
    aimd_decrease_factor: float = 0.5
    aimd_recover_per_s: float = 1.0
    limiter_max_wait_s: float = 2.0
    limiter_guard_ms: int = 50
    orders_reserve: str = "priority"

    # Batching
    batch_size: int = 20
    collect_window_ms: int = 75
    claim_lease_s: float = 10.0
    max_symbols_per_request: int = 100
    pending_max: int = 2000
    pending_new_per_caller_s: int = 200
    pending_idle_s: float = 10.0

    # Cache TTLs (seconds)
    quote_ttl_s: float = 2.0
    index_ttl_s: float = 2.0
    daily_ttl_s: int = 86400
    info_ttl_s: int = 86400
    last_known_ttl_s: int = 7 * 86400
    market_hours_aware: bool = True

    # Deadlines
    request_deadline_s: float = 2.0
    max_deadline_ms: int = 5000
    drain_deadline_s: float = 30.0

    # Retry policy
    retry_attempts: int = 4
    retry_base_delay_s: float = 0.2
    retry_max_delay_s: float = 2.0
    retry_total_s: float = 6.0

    # Circuit breaker
    breaker_fail_max: int = 20
    breaker_reset_timeout_s: float = 60.0

    # Token
    token_refresh_margin_s: int = 300

    # Storage and adapters (chosen by URI scheme)
    redis_url: Secret = field(default_factory=lambda: Secret("redis://127.0.0.1:6379/0"))  # may hold AUTH
    redis_prefix: str = "kisgw"
    breaker_store: str = "redis://"
    token_store: str = "redis://"
    task_queue: str = "local://"
    idempotency_store: str = "redis://"
    gcp_project: str = ""
    secret_manager_endpoint: str = ""
    gcp_region: str = "asia-northeast3"
    task_target_url: str = ""
    task_oidc_service_account: str = ""
    task_dispatch_deadline_s: int = 60

    # Access control
    gateway_mode: str = "cloud"
    gateway_dev_api_key: Secret = field(default_factory=lambda: Secret(""))
    api_key_pepper: Secret = field(default_factory=lambda: Secret(""))
    cors_origins: tuple[str, ...] = ()
    inbound_rate_per_key: int = 50
    concurrent_per_key: int = 32
    alert_webhook_url: Secret = field(default_factory=lambda: Secret(""))

    # Deployment shape and identities (shared/deployment.py)
    gateway_function: str = ""
    id_token_audience: str = ""
    id_token_allowed_emails: tuple[str, ...] = ()
    id_token_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"
    id_token_issuers: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")
    token_refresh_url: str = ""
    kis_key_id: str = ""
    local_credential: Secret = field(default_factory=lambda: Secret(""))

    # Schedules (Asia/Seoul)
    preload_time_kst: str = "08:30"
    preload_symbols: tuple[str, ...] = ("005930", "000660", "035420")

    # ---- derived values -------------------------------------------------------------------
    @property
    def kis_limit(self) -> int:
        return LIMIT_PROFILES[self.kis_limit_profile][self.kis_env]

    @property
    def budget(self) -> int:
        """Calls per second the gateway allows itself across every instance."""
        if self.gateway_budget:
            return self.gateway_budget
        return max(1, self.kis_limit - 1)

    @property
    def ledger_budget(self) -> int:
        """Balance and order calls per second the gateway allows itself (0 = not paced apart)."""
        return max(1, self.kis_ledger_tps - 1) if self.kis_ledger_tps else 0

    @property
    def call_spacing_ms(self) -> int:
        """Gap between grants. Spread evenly by default: a burst of N grants at the start of a second can land
        in one KIS window together with the previous second's tail once network delays vary."""
        if self.min_call_spacing_ms >= 0:
            return self.min_call_spacing_ms
        return 1000 // (self.budget + 1)

    @property
    def effective_batch_size(self) -> int:
        # Paper keys have no multi-quote TR: one symbol per call.
        return 1 if self.kis_env == "paper" else self.batch_size

    @property
    def paper(self) -> bool:
        return self.kis_env == "paper"

    def class_reserve(self, call_class: str) -> int:
        """Calls per second held back for a class; what others may not take from it."""
        return math.floor(self.budget * self.class_share(call_class))

    def class_share(self, call_class: str) -> float:
        return {"orders": self.share_orders, "quotes": self.share_quotes,
                "reference": self.share_reference}[call_class]

    def queue_rate(self, call_class: str) -> float:
        """Cloud Tasks dispatch rate for a class's queue: its share of the budget, at least 1/s."""
        return max(1.0, round(self.budget * self.class_share(call_class), 2))

    def queue_concurrency(self, call_class: str) -> int:
        return max(1, math.ceil(self.queue_rate(call_class)))

    def redacted(self) -> dict[str, Any]:
        """All settings as plain data with secrets masked, for /health and start-up logs."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "redis_url":
                out[f.name] = masked_url(v.get())  # host and port help; the AUTH part stays hidden
                continue
            out[f.name] = ("***" if v else "") if isinstance(v, Secret) else v
        out["kis_limit"] = self.kis_limit
        out["budget"] = self.budget
        return out


# ---- parsing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Var:
    env: str
    attr: str
    parse: Callable[[str, str], Any]
    help: str


def _str_choice(*choices: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name}={raw!r} is not allowed; use one of: {', '.join(choices)}")
        return raw
    return parse


def _int_range(lo: int, hi: int) -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        try:
            v = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer ({lo}..{hi})") from None
        if not lo <= v <= hi:
            raise SettingsError(f"{name}={v} is out of range; allowed {lo}..{hi}")
        return v
    return parse


def _float_range(lo: float, hi: float) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            v = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number ({lo}..{hi})") from None
        if not (lo <= v <= hi) or math.isnan(v):
            raise SettingsError(f"{name}={v} is out of range; allowed {lo}..{hi}")
        return v
    return parse


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false")


def _secret(name: str, raw: str) -> Secret:
    return Secret(raw.strip())


def _account(name: str, raw: str) -> Secret:
    digits = raw.replace("-", "").strip()
    if digits and (len(digits) != 10 or not digits.isdigit()):
        # Never echo the value: it is an account number.
        raise SettingsError(f"{name} must be 10 digits (8-digit account + 2-digit product, e.g. NNNNNNNN-NN)")
    return Secret(digits)


def _url(name: str, raw: str) -> str:
    raw = raw.strip().rstrip("/")
    if raw and not raw.startswith(("http://", "https://")):
        raise SettingsError(f"{name}={raw!r} must start with http:// or https://")
    return raw


def _redis_url(name: str, raw: str) -> Secret:
    raw = raw.strip()
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        # Never echo the value: a Memorystore URL carries the AUTH string.
        raise SettingsError(f"{name} must be a redis://, rediss:// or unix:// URL (value not shown: it may hold "
                            f"a password)")
    return Secret(raw)


def masked_url(url: str) -> str:
    """A URL with any user:password@ part replaced by ***@ (for settings listings)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.find("@")
    slash = rest.find("/")
    if at >= 0 and (slash < 0 or at < slash):
        return f"{scheme}://***@{rest[at + 1:]}"
    return url


def _scheme(*schemes: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if not any(raw.startswith(s + "://") for s in schemes):
            allowed = ", ".join(s + "://..." for s in schemes)
            raise SettingsError(f"{name}={raw!r} has an unknown scheme; use one of: {allowed}")
        return raw
    return parse


def _prefix(name: str, raw: str) -> str:
    if not raw or any(c.isspace() for c in raw) or len(raw) > 64:
        raise SettingsError(f"{name}={raw!r} must be 1..64 characters without spaces")
    return raw


def _hhmm(name: str, raw: str) -> str:
    try:
        hh, mm = raw.split(":")
        if not (0 <= int(hh) < 24 and 0 <= int(mm) < 60):
            raise ValueError
    except ValueError:
        raise SettingsError(f"{name}={raw!r} must be a time HH:MM") from None
    return f"{int(hh):02d}:{int(mm):02d}"


def _csv(name: str, raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _symbols(name: str, raw: str) -> tuple[str, ...]:
    out = _csv(name, raw)
    for s in out:
        if len(s) != 6 or any(c not in SYMBOL_CHARS for c in s):
            raise SettingsError(f"{name} has {s!r}: a symbol is 6 characters of 0-9 and A-Z")
    return out


def _function_name(name: str, raw: str) -> str:
    raw = raw.strip()
    if raw:
        from shared.deployment import functions

        known = functions()
        if raw not in known:
            raise SettingsError(f"{name}={raw!r} is not a deployed function; use one of: {', '.join(known)}")
    return raw


def _key_label(name: str, raw: str) -> str:
    raw = raw.strip()
    if raw and (len(raw) > 40 or not all(c.isalnum() or c in "-_" for c in raw)):
        raise SettingsError(f"{name} must be 1..40 letters, digits, - or _")
    return raw


VARIABLES: tuple[_Var, ...] = (
    _Var("KIS_ENV", "kis_env", _str_choice("real", "paper"), "KIS environment: real or paper"),
    _Var("KIS_BASE_URL", "kis_base_url", _url, "KIS REST base URL (default: KIS's host for KIS_ENV)"),
    _Var("KIS_MASTER_URL", "kis_master_url", _url,
         "folder of KIS's symbol master files (default: KIS's download location; the simulator's under "
         "a custom KIS_BASE_URL)"),
    _Var("KIS_APP_KEY", "kis_app_key", _secret, "KIS app key (secret)"),
    _Var("KIS_APP_SECRET", "kis_app_secret", _secret, "KIS app secret (secret)"),
    _Var("KIS_ACCOUNT_NO", "kis_account_no", _account, "account number NNNNNNNN-NN (secret)"),
    _Var("KIS_LIMIT_PROFILE", "kis_limit_profile", _str_choice(*LIMIT_PROFILES),
         "KIS limits: kis-2026-04 (18/s real, 1/s paper) or kis-legacy (20/2)"),
    _Var("KIS_HTTP_TIMEOUT_S", "kis_http_timeout_s", _float_range(0.1, 60), "timeout of every KIS HTTP call"),
    _Var("KIS_MARKET_CODE", "kis_market_code", _str_choice("J", "NX", "UN"), "market: J (KRX), NX, UN"),
    _Var("KIS_LEDGER_TPS", "kis_ledger_tps", _int_range(0, 100),
         "balance and order calls per second KIS allows per account (EGW00215); the gateway paces them to "
         "one less; 0 = no separate pacing"),
    _Var("GATEWAY_BUDGET", "gateway_budget", _int_range(0, 1000),
         "calls/s the gateway uses per app key; 0 = KIS limit - 1 (min 1); never above the KIS limit"),
    _Var("GATEWAY_MIN_CALL_SPACING_MS", "min_call_spacing_ms", _int_range(-1, 1000),
         "minimum gap between two KIS calls; -1 = 1000/(budget+1) so grants are spread, 0 = none"),
    _Var("GATEWAY_SHARE_ORDERS", "share_orders", _float_range(0, 1), "budget share reserved for orders/balance"),
    _Var("GATEWAY_SHARE_QUOTES", "share_quotes", _float_range(0, 1), "budget share for quotes"),
    _Var("GATEWAY_SHARE_REFERENCE", "share_reference", _float_range(0, 1),
         "budget share for daily prices, symbol info, preload"),
    _Var("GATEWAY_AIMD_DECREASE", "aimd_decrease_factor", _float_range(0.1, 0.95),
         "factor applied to the effective budget on a burst of EGW00201"),
    _Var("GATEWAY_AIMD_RECOVER_PER_S", "aimd_recover_per_s", _float_range(0.01, 100),
         "calls/s the effective budget climbs back per second"),
    _Var("GATEWAY_ORDERS_RESERVE", "orders_reserve", _str_choice("priority", "held"),
         "orders' share of the KIS budget: priority = lent to quotes while no order waits (an arriving order "
         "takes the next free slot), held = always kept back"),
    _Var("GATEWAY_LIMITER_GUARD_MS", "limiter_guard_ms", _int_range(0, 500),
         "the limiter counts N grants per 1 s + this, so network jitter cannot pack N+1 into one KIS second"),
    _Var("GATEWAY_LIMITER_MAX_WAIT_S", "limiter_max_wait_s", _float_range(0.01, 60),
         "longest a caller waits for a rate grant"),
    _Var("GATEWAY_BATCH_SIZE", "batch_size", _int_range(1, KIS_MULTI_QUOTE_MAX),
         "symbols per multi-quote call (KIS max 30)"),
    _Var("GATEWAY_COLLECT_WINDOW_MS", "collect_window_ms", _int_range(0, 1000),
         "how long a drain waits to fill a batch"),
    _Var("GATEWAY_CLAIM_LEASE_S", "claim_lease_s", _float_range(0.5, 600),
         "in-flight lease; a crashed drain's symbols are claimed again after it"),
    _Var("GATEWAY_MAX_SYMBOLS", "max_symbols_per_request", _int_range(1, 1000), "symbols per request"),
    _Var("GATEWAY_PENDING_MAX", "pending_max", _int_range(0, 1_000_000),
         "pending symbols per data kind; beyond it readers get 503 + Retry-After (0 = no cap)"),
    _Var("GATEWAY_PENDING_NEW_PER_CALLER_S", "pending_new_per_caller_s", _int_range(0, 100_000),
         "new pending symbols one caller may add per second and kind; beyond it 429 (0 = no cap)"),
    _Var("GATEWAY_PENDING_IDLE_S", "pending_idle_s", _float_range(0, 3600),
         "a pending symbol nobody has waited for this long is dropped (0 = never; preloads are kept)"),
    _Var("QUOTE_TTL_S", "quote_ttl_s", _float_range(1, 3), "freshness of a current price (1..3 s)"),
    _Var("INDEX_TTL_S", "index_ttl_s", _float_range(1, 3), "freshness of an index quote (1..3 s)"),
    _Var("DAILY_TTL_S", "daily_ttl_s", _int_range(60, 86400), "daily prices, at most a day"),
    _Var("INFO_TTL_S", "info_ttl_s", _int_range(60, 86400), "symbol info, at most a day"),
    _Var("LAST_KNOWN_TTL_S", "last_known_ttl_s", _int_range(60, 30 * 86400), "life of the stale copy"),
    _Var("MARKET_HOURS_AWARE", "market_hours_aware", _bool,
         "outside KRX hours a quote stays fresh until the next session"),
    _Var("REQUEST_DEADLINE_S", "request_deadline_s", _float_range(0.05, 30), "longest a request waits"),
    _Var("GATEWAY_MAX_DEADLINE_MS", "max_deadline_ms", _int_range(0, 30000),
         "largest deadline_ms a reader may ask for (a waiting request holds a slot)"),
    _Var("DRAIN_DEADLINE_S", "drain_deadline_s", _float_range(1, 1800), "longest one drain task runs"),
    _Var("RETRY_ATTEMPTS", "retry_attempts", _int_range(1, 10), "attempts of a retryable KIS call"),
    _Var("RETRY_BASE_DELAY_S", "retry_base_delay_s", _float_range(0.001, 10), "first backoff"),
    _Var("RETRY_MAX_DELAY_S", "retry_max_delay_s", _float_range(0.01, 60), "largest backoff"),
    _Var("RETRY_TOTAL_S", "retry_total_s", _float_range(0.1, 120), "total time for retries of one call"),
    _Var("BREAKER_FAIL_MAX", "breaker_fail_max", _int_range(1, 1000), "consecutive failures that open"),
    _Var("BREAKER_RESET_TIMEOUT_S", "breaker_reset_timeout_s", _float_range(0.1, 3600),
         "open time before one half-open probe"),
    _Var("TOKEN_REFRESH_MARGIN_S", "token_refresh_margin_s", _int_range(300, 6 * 3600),
         "refresh this long before expiry (at least 5 min)"),
    _Var("REDIS_URL", "redis_url", _redis_url, "Redis (Memorystore) URL"),
    _Var("REDIS_PREFIX", "redis_prefix", _prefix, "prefix of every Redis key"),
    _Var("BREAKER_STORE", "breaker_store", _scheme("redis", "firestore", "memory"),
         "breaker state: redis://, firestore://[collection], memory://"),
    _Var("TOKEN_STORE", "token_store", _scheme("redis", "secretmanager", "memory"),
         "token: redis://, secretmanager://SECRET_ID, memory://"),
    _Var("TASK_QUEUE", "task_queue", _scheme("local", "cloudtasks", "inline"),
         "drain trigger: local:// (in-process), cloudtasks://[host:port], inline://"),
    _Var("IDEMPOTENCY_STORE", "idempotency_store", _scheme("redis", "firestore", "memory"),
         "order idempotency records"),
    _Var("SECRET_MANAGER_ENDPOINT", "secret_manager_endpoint", lambda n, r: r.strip(),
         "host:port of a local Secret Manager (local stack); empty = Google's"),
    _Var("GCP_PROJECT", "gcp_project", lambda n, r: r.strip(), "Google Cloud project id"),
    _Var("GCP_REGION", "gcp_region", lambda n, r: r.strip(), "region (asia-northeast3)"),
    _Var("TASK_TARGET_URL", "task_target_url", _url, "base URL Cloud Tasks pushes drains to"),
    _Var("TASK_OIDC_SERVICE_ACCOUNT", "task_oidc_service_account", lambda n, r: r.strip(),
         "service account whose OIDC token Cloud Tasks sends"),
    _Var("TASK_DISPATCH_DEADLINE_S", "task_dispatch_deadline_s", _int_range(15, 1800),
         "Cloud Tasks dispatch deadline"),
    _Var("GATEWAY_MODE", "gateway_mode", _str_choice("cloud", "local"),
         "local enables the dev API key; cloud refuses it"),
    _Var("GATEWAY_DEV_API_KEY", "gateway_dev_api_key", _secret, "local stack only: a key with every scope"),
    _Var("GATEWAY_API_KEY_PEPPER", "api_key_pepper", _secret,
         "HMAC key mixed into stored API key digests, kept apart from the store (secret)"),
    _Var("CORS_ORIGINS", "cors_origins", _csv, "frontend origins allowed by CORS (comma-separated)"),
    _Var("INBOUND_RATE_PER_KEY", "inbound_rate_per_key", _int_range(1, 100000),
         "requests/s a read key may make unless the key has its own rate (kisgw keys)"),
    _Var("CONCURRENT_PER_KEY", "concurrent_per_key", _int_range(1, 100000),
         "requests in flight at once per read key unless the key has its own (kisgw keys)"),
    _Var("ALERT_WEBHOOK_URL", "alert_webhook_url", _secret, "Slack-compatible webhook for alerts"),
    _Var("GATEWAY_FUNCTION", "gateway_function", _function_name,
         "the deployed function this process is (shared/deployment.py); it gets only the parts its identity may "
         "use; empty = every part (tests, one-process tools)"),
    _Var("ID_TOKEN_AUDIENCE", "id_token_audience", _url,
         "audience this function's ID tokens must carry (its own URL); empty = TASK_TARGET_URL"),
    _Var("ID_TOKEN_ALLOWED_EMAILS", "id_token_allowed_emails", _csv,
         "service accounts whose ID tokens this function accepts (Cloud Tasks, Scheduler, metrics scraper)"),
    _Var("ID_TOKEN_CERTS_URL", "id_token_certs_url", _url,
         "where the ID token signing certificates are fetched (Google's; the local issuer's on the local stack)"),
    _Var("ID_TOKEN_ISSUERS", "id_token_issuers", _csv, "accepted `iss` of ID tokens"),
    _Var("TOKEN_REFRESH_URL", "token_refresh_url", _url,
         "URL of the refresh function; readers missing a token enqueue a refresh there (empty = refresh in-process)"),
    _Var("KIS_KEY_ID", "kis_key_id", _key_label,
         "opaque label of the app key in Redis keys (limiter, token lock); empty = a hash of KIS_APP_KEY"),
    _Var("LOCAL_CREDENTIAL", "local_credential", _secret,
         "local stack only: this function's identity (an ID token of its service account) for the local APIs"),
    _Var("PRELOAD_TIME_KST", "preload_time_kst", _hhmm, "preload time on trading days (Asia/Seoul)"),
    _Var("PRELOAD_SYMBOLS", "preload_symbols", _symbols, "symbols preloaded before the open"),
)


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read every variable, validate, and return frozen Settings. Overrides win (tests, CLI)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = env.get(var.env)
        if raw is None:
            continue
        values[var.attr] = var.parse(var.env, raw)
    values.update(overrides)
    for key in ("kis_app_key", "kis_app_secret", "kis_account_no", "gateway_dev_api_key", "alert_webhook_url",
                "api_key_pepper", "local_credential", "redis_url"):
        if isinstance(values.get(key), str):
            values[key] = Secret(values[key])
    s = Settings(**values)
    if not s.kis_base_url:
        s = _replace(s, kis_base_url=KIS_BASE_URLS[s.kis_env])
    if not s.kis_master_url:
        # KIS's hosts: KIS's download location; any other base URL (the simulator) serves the files itself.
        own_host = s.kis_base_url in KIS_BASE_URLS.values()
        s = _replace(s, kis_master_url=KIS_MASTER_URL if own_host else s.kis_base_url + "/common/master")
    _check(s)
    return s


def _replace(s: Settings, **kw: Any) -> Settings:
    from dataclasses import replace
    return replace(s, **kw)


def _check(s: Settings) -> None:
    if s.budget > s.kis_limit:
        raise SettingsError(
            f"GATEWAY_BUDGET={s.budget} is above the KIS limit {s.kis_limit}/s of profile "
            f"{s.kis_limit_profile} ({s.kis_env}); allowed 1..{s.kis_limit}")
    total = s.share_orders + s.share_quotes + s.share_reference
    if abs(total - 1.0) > 1e-6:
        raise SettingsError(
            f"GATEWAY_SHARE_ORDERS + GATEWAY_SHARE_QUOTES + GATEWAY_SHARE_REFERENCE = {total:g}; must be 1")
    if s.retry_base_delay_s > s.retry_max_delay_s:
        raise SettingsError("RETRY_BASE_DELAY_S must not exceed RETRY_MAX_DELAY_S")
    if s.gateway_dev_api_key and s.gateway_mode != "local":
        raise SettingsError("GATEWAY_DEV_API_KEY is only allowed with GATEWAY_MODE=local")
    if s.local_credential and s.gateway_mode != "local":
        raise SettingsError("LOCAL_CREDENTIAL is only allowed with GATEWAY_MODE=local")
    if bool(s.kis_app_key) != bool(s.kis_app_secret):
        raise SettingsError("KIS_APP_KEY and KIS_APP_SECRET must be set together")
    if s.claim_lease_s <= s.kis_http_timeout_s + s.retry_max_delay_s:
        raise SettingsError(
            f"GATEWAY_CLAIM_LEASE_S={s.claim_lease_s:g} must exceed KIS_HTTP_TIMEOUT_S + RETRY_MAX_DELAY_S "
            f"({s.kis_http_timeout_s + s.retry_max_delay_s:g}): a drain renews its lease before each KIS call, "
            f"and one call plus one backoff must fit in it")
    if s.max_symbols_per_request < 1:
        raise SettingsError("GATEWAY_MAX_SYMBOLS must be at least 1")


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) rows for README and `kisgw settings`."""
    defaults = Settings()
    rows = []
    for var in VARIABLES:
        d = getattr(defaults, var.attr)
        if isinstance(d, Secret):
            d = masked_url(d.get()) if var.attr == "redis_url" else ""
        elif isinstance(d, tuple):
            d = ",".join(d)
        elif isinstance(d, bool):
            d = str(d).lower()
        rows.append((var.env, str(d), var.help))
    return rows

