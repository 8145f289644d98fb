"""One settings object for the whole gateway, read from environment variables.

Each setting is declared once, as a field of `Settings`: its name, type and default, and (in `setting()`) the
environment variable, the parser that holds its bounds, its help text and whether it is a secret (a parser
returning `Secret`). The variable table (`VARIABLES`), `load_settings`, `kisgw settings-table` (the README's
table, checked by a test) and the Terraform variables generator are all derived from these fields. The budget
maths (limits, shares, queue rates) is in `shared.budget`.

A bad value stops start-up with a `SettingsError` naming the variable and what it accepts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from shared import budget
from shared.budget import LIMIT_PROFILES
from shared.schemes import schemes_of

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
SYMBOL_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# The longest any request may be asked to wait (deadline_ms, REQUEST_DEADLINE_S, GATEWAY_MAX_DEADLINE_MS's bound).
MAX_DEADLINE_MS = 30_000


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


# ---- parsers: each validates one variable's text and says what it accepts --------------------------

@dataclass(frozen=True)
class Parser:
    parse: Callable[[str, str], Any]  # (variable name, raw text) -> value; SettingsError naming the variable
    accepts: str  # for the settings table: the type and bounds
    secret: bool = False  # the value is a Secret: never shown, never plain environment in Terraform

    def __call__(self, name: str, raw: str) -> Any:
        return self.parse(name, raw)


def choice(*choices: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise SettingsError(f"{name}={raw!r} is not allowed; use one of: {', '.join(choices)}")
        return raw
    return Parser(parse, " \\| ".join(choices))


def int_range(lo: int, hi: int) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            v = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer ({lo}..{hi})") from None
        if not lo <= v <= hi:
            raise SettingsError(f"{name}={v} is out of range; allowed {lo}..{hi}")
        return v
    return Parser(parse, f"integer {lo}..{hi}")


def float_range(lo: float, hi: float) -> Parser:
    def parse(name: str, raw: str) -> float:
        try:
            v = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number ({lo}..{hi})") from None
        if not (lo <= v <= hi) or math.isnan(v):
            raise SettingsError(f"{name}={v} is out of range; allowed {lo}..{hi}")
        return v
    return Parser(parse, f"number {lo:g}..{hi:g}")


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean; use true or false")


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


def scheme(port: str) -> Parser:
    """A backend URI: its scheme must be one the registry can build for `port` (`shared.schemes`, the one list)."""
    schemes = schemes_of(port)

    def parse(name: str, raw: str) -> str:
        if not any(raw.startswith(s + "://") for s in schemes):
            allowed = ", ".join(s + "://..." for s in schemes)
            raise SettingsError(f"{name}={raw!r} has an unknown scheme; use one of: {allowed}")
        return raw
    return Parser(parse, "URI: " + ", ".join(s + "://" for s in schemes))


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


boolean = Parser(_bool, "true \\| false")
secret = Parser(lambda name, raw: Secret(raw.strip()), "text", secret=True)
account = Parser(_account, "10 digits (NNNNNNNN-NN)", secret=True)
url = Parser(_url, "http(s) URL")
redis_dsn = Parser(_redis_url, "redis://, rediss:// or unix:// URL", secret=True)
prefix = Parser(_prefix, "1..64 characters, no spaces")
hhmm = Parser(_hhmm, "time HH:MM")
csv = Parser(_csv, "comma-separated list")
symbols = Parser(_symbols, "comma-separated symbol codes")
function_name = Parser(_function_name, "a function of shared/deployment.py")
key_label = Parser(_key_label, "1..40 of A-Z a-z 0-9 - _")
text = Parser(lambda name, raw: raw.strip(), "text")


@dataclass(frozen=True)
class Variable:
    """One setting's declaration, as `setting()` records it on its field."""

    env: str
    attr: str
    parse: Parser
    help: str
    deploy: bool = False  # set by Terraform from the resources it creates (Redis, queues, URLs), not from settings

    @property
    def secret(self) -> bool:
        return self.parse.secret


_DECLARED = "kisgw.setting"


def setting(env: str, default: Any, parse: Parser, help: str, *, deploy: bool = False) -> Any:
    """Declare a field of Settings: its environment variable, default, parser (type and bounds), help, and
    whether the deployment sets it from the resources it creates (`deploy`)."""
    if parse.secret:
        default = Secret(default)
    # The attribute name is filled in from the field when VARIABLES is built.
    return field(default=default, metadata={_DECLARED: Variable(env, "", parse, help, deploy)})


@dataclass(frozen=True)
class Settings:
    # KIS connection
    kis_env: str = setting("KIS_ENV", "real", choice("real", "paper"), "KIS environment: real or paper")
    kis_base_url: str = setting("KIS_BASE_URL", "", url, "KIS REST base URL (default: KIS's host for KIS_ENV)",
        deploy=True)
    kis_master_url: str = setting("KIS_MASTER_URL", "", url,
        "folder of KIS's symbol master files (default: KIS's download location; the simulator's under a "
        "custom KIS_BASE_URL)")
    kis_app_key: Secret = setting("KIS_APP_KEY", "", secret, "KIS app key (secret)")
    kis_app_secret: Secret = setting("KIS_APP_SECRET", "", secret, "KIS app secret (secret)")
    kis_account_no: Secret = setting("KIS_ACCOUNT_NO", "", account, "account number NNNNNNNN-NN (secret)")
    kis_limit_profile: str = setting("KIS_LIMIT_PROFILE", "kis-2026-04", choice(*LIMIT_PROFILES),
        "KIS limits: kis-2026-04 (18/s real, 1/s paper) or kis-legacy (20/2)")
    kis_http_timeout_s: float = setting("KIS_HTTP_TIMEOUT_S", 5.0, float_range(0.1, 60),
        "timeout of every KIS HTTP call")
    kis_market_code: str = setting("KIS_MARKET_CODE", "J", choice("J", "NX", "UN"), "market: J (KRX), NX, UN")
    kis_ledger_tps: int = setting("KIS_LEDGER_TPS", KIS_LEDGER_TPS, int_range(0, 100),
        "balance and order calls per second KIS allows per account (EGW00215); the gateway paces them to one "
        "less; 0 = no separate pacing")

    # Shared rate budget (calls per second per app key); 0 means "KIS limit - 1" (at least 1).
    gateway_budget: int = setting("GATEWAY_BUDGET", 0, int_range(0, 1000),
        "calls/s the gateway uses per app key; 0 = KIS limit - 1 (min 1); never above the KIS limit")
    min_call_spacing_ms: int = setting("GATEWAY_MIN_CALL_SPACING_MS", -1, int_range(-1, 1000),
        "minimum gap between two KIS calls; -1 = the limiter window (1 s + guard) / budget, grants spread evenly, "
        "0 = none")
    share_orders: float = setting("GATEWAY_SHARE_ORDERS", 0.2, float_range(0, 1),
        "budget share reserved for orders/balance")
    share_quotes: float = setting("GATEWAY_SHARE_QUOTES", 0.6, float_range(0, 1), "budget share for quotes")
    share_reference: float = setting("GATEWAY_SHARE_REFERENCE", 0.2, float_range(0, 1),
        "budget share for daily prices, symbol info, preload")
    # 0.8, not the textbook 0.5: with the budget one below KIS's limit and a guard band, a burst of refusals
    # comes far more often from arrival jitter than from a lower limit at KIS; a halving then costs about eight
    # seconds of reduced budget (more than the refusals did), while three bursts in a row still halve it.
    aimd_decrease_factor: float = setting("GATEWAY_AIMD_DECREASE", 0.8, float_range(0.1, 0.95),
        "factor applied to the effective budget on a burst of EGW00201")
    aimd_recover_per_s: float = setting("GATEWAY_AIMD_RECOVER_PER_S", 1.0, float_range(0.01, 100),
        "calls/s the effective budget climbs back per second")
    limiter_max_wait_s: float = setting("GATEWAY_LIMITER_MAX_WAIT_S", 2.0, float_range(0.01, 60),
        "longest a caller waits for a rate grant")
    # 30 ms: the budget is already one below KIS's limit, so a refusal needs two calls packed into one KIS
    # second by arrival jitter. 50 ms capped budget use at 95.2 % (17 / 1.05). With 30 ms, overload runs on a
    # loaded 2-core machine saw 0-2 EGW00201 refusals in 30 s (retried), as many as with 50 ms.
    limiter_guard_ms: int = setting("GATEWAY_LIMITER_GUARD_MS", 30, int_range(0, 500),
        "the limiter counts N grants per 1 s + this, so network jitter cannot pack N+1 into one KIS second")
    orders_reserve: str = setting("GATEWAY_ORDERS_RESERVE", "priority", choice("priority", "held"),
        "orders' share of the KIS budget: priority = lent to quotes while no order waits (an arriving order "
        "takes the next free slot), held = always kept back")

    # Batching
    batch_size: int = setting("GATEWAY_BATCH_SIZE", 20, int_range(1, KIS_MULTI_QUOTE_MAX),
        "symbols per multi-quote call (KIS max 30)")
    collect_window_ms: int = setting("GATEWAY_COLLECT_WINDOW_MS", 75, int_range(0, 1000),
        "longest a drain waits to fill a batch (it goes once one is full)")
    claim_lease_s: float = setting("GATEWAY_CLAIM_LEASE_S", 10.0, float_range(0.5, 600),
        "in-flight lease; a crashed drain's symbols are claimed again after it")
    max_symbols_per_request: int = setting("GATEWAY_MAX_SYMBOLS", 100, int_range(1, 1000), "symbols per request")
    pending_max: int = setting("GATEWAY_PENDING_MAX", 2000, int_range(0, 1_000_000),
        "pending symbols per data kind; beyond it a symbol is answered from its copy or as an error, a request "
        "with no data at all waits for room until its deadline, then 503 + Retry-After (0 = no cap)")
    pending_new_per_caller_s: int = setting("GATEWAY_PENDING_NEW_PER_CALLER_S", 200, int_range(0, 100_000),
        "new pending symbols one caller may add per second and kind; beyond it 429 (0 = no cap)")
    pending_idle_s: float = setting("GATEWAY_PENDING_IDLE_S", 10.0, float_range(0, 3600),
        "a pending symbol nobody has waited for this long is dropped (0 = never; preloads are kept)")

    # Cache TTLs (seconds)
    quote_ttl_s: float = setting("QUOTE_TTL_S", 2.0, float_range(1, 3), "freshness of a current price (1..3 s)")
    index_ttl_s: float = setting("INDEX_TTL_S", 2.0, float_range(1, 3), "freshness of an index quote (1..3 s)")
    daily_ttl_s: int = setting("DAILY_TTL_S", 86400, int_range(60, 86400), "daily prices, at most a day")
    info_ttl_s: int = setting("INFO_TTL_S", 86400, int_range(60, 86400), "symbol info, at most a day")
    last_known_ttl_s: int = setting("LAST_KNOWN_TTL_S", 7 * 86400, int_range(60, 30 * 86400), "life of the stale copy")
    market_hours_aware: bool = setting("MARKET_HOURS_AWARE", True, boolean,
        "outside KRX hours a quote stays fresh until the next session")

    # Deadlines
    request_deadline_s: float = setting("REQUEST_DEADLINE_S", 2.0, float_range(0.05, MAX_DEADLINE_MS / 1000),
        "longest a request waits")
    max_deadline_ms: int = setting("GATEWAY_MAX_DEADLINE_MS", 5000, int_range(0, MAX_DEADLINE_MS),
        "largest deadline_ms a reader may ask for (a waiting request holds a slot)")
    drain_deadline_s: float = setting("DRAIN_DEADLINE_S", 30.0, float_range(1, 1800), "longest one drain task runs")

    # Retry policy
    retry_attempts: int = setting("RETRY_ATTEMPTS", 4, int_range(1, 10), "attempts of a retryable KIS call")
    retry_base_delay_s: float = setting("RETRY_BASE_DELAY_S", 0.2, float_range(0.001, 10), "first backoff")
    retry_max_delay_s: float = setting("RETRY_MAX_DELAY_S", 2.0, float_range(0.01, 60), "largest backoff")
    retry_total_s: float = setting("RETRY_TOTAL_S", 6.0, float_range(0.1, 120), "total time for retries of one call")

    # Circuit breaker
    breaker_fail_max: int = setting("BREAKER_FAIL_MAX", 20, int_range(1, 1000), "consecutive failures that open")
    breaker_reset_timeout_s: float = setting("BREAKER_RESET_TIMEOUT_S", 60.0, float_range(0.1, 3600),
        "open time before one half-open probe")

    # Token
    token_refresh_margin_s: int = setting("TOKEN_REFRESH_MARGIN_S", 300, int_range(300, 6 * 3600),
        "refresh this long before expiry (at least 5 min)")

    # Storage and adapters (chosen by URI scheme)
    redis_url: Secret = setting("REDIS_URL", "redis://127.0.0.1:6379/0", redis_dsn,
        "Redis (Memorystore) URL (secret: may hold the AUTH string)", deploy=True)
    redis_prefix: str = setting("REDIS_PREFIX", "kisgw", prefix, "prefix of every Redis key")
    breaker_store: str = setting("BREAKER_STORE", "redis://", scheme("breaker"),
        "breaker state: redis://, firestore://[collection], memory://", deploy=True)
    token_store: str = setting("TOKEN_STORE", "redis://", scheme("token_store"),
        "token: redis://, secretmanager://SECRET_ID, memory://", deploy=True)
    task_queue: str = setting("TASK_QUEUE", "local://", scheme("drain_trigger"),
        "drain trigger: local:// (in-process), cloudtasks://[host:port], inline://", deploy=True)
    idempotency_store: str = setting("IDEMPOTENCY_STORE", "redis://", scheme("idempotency"),
        "order idempotency records", deploy=True)
    gcp_project: str = setting("GCP_PROJECT", "", text, "Google Cloud project id", deploy=True)
    secret_manager_endpoint: str = setting("SECRET_MANAGER_ENDPOINT", "", text,
        "host:port of a local Secret Manager (local stack); empty = Google's", deploy=True)
    gcp_region: str = setting("GCP_REGION", "asia-northeast3", text, "region (asia-northeast3)", deploy=True)
    task_target_url: str = setting("TASK_TARGET_URL", "", url, "base URL Cloud Tasks pushes drains to", deploy=True)
    task_oidc_service_account: str = setting("TASK_OIDC_SERVICE_ACCOUNT", "", text,
        "service account whose OIDC token Cloud Tasks sends", deploy=True)
    task_dispatch_deadline_s: int = setting("TASK_DISPATCH_DEADLINE_S", 60, int_range(15, 1800),
        "Cloud Tasks dispatch deadline")

    # Access control
    gateway_mode: str = setting("GATEWAY_MODE", "cloud", choice("cloud", "local"),
        "local enables the dev API key; cloud refuses it", deploy=True)
    gateway_dev_api_key: Secret = setting("GATEWAY_DEV_API_KEY", "", secret,
        "local stack only: a key with every scope")
    api_key_pepper: Secret = setting("GATEWAY_API_KEY_PEPPER", "", secret,
        "HMAC key mixed into stored API key digests, kept apart from the store (secret)")
    cors_origins: tuple[str, ...] = setting("CORS_ORIGINS", (), csv,
        "frontend origins allowed by CORS (comma-separated)")
    inbound_rate_per_key: int = setting("INBOUND_RATE_PER_KEY", 50, int_range(1, 100000),
        "requests/s a read key may make unless the key has its own rate (kisgw keys)")
    concurrent_per_key: int = setting("CONCURRENT_PER_KEY", 32, int_range(1, 100000),
        "requests in flight at once per read key unless the key has its own (kisgw keys)")
    alert_webhook_url: Secret = setting("ALERT_WEBHOOK_URL", "", secret, "Slack-compatible webhook for alerts")

    # Deployment shape and identities (shared/deployment.py)
    gateway_function: str = setting("GATEWAY_FUNCTION", "", function_name,
        "the deployed function this process is (shared/deployment.py); it gets only the parts its identity "
        "may use; empty = every part (tests, one-process tools)", deploy=True)
    id_token_audience: str = setting("ID_TOKEN_AUDIENCE", "", url,
        "audience this function's ID tokens must carry (its own URL); empty = TASK_TARGET_URL", deploy=True)
    id_token_allowed_emails: tuple[str, ...] = setting("ID_TOKEN_ALLOWED_EMAILS", (), csv,
        "service accounts whose ID tokens this function accepts (Cloud Tasks, Scheduler, metrics scraper)", deploy=True)
    id_token_certs_url: str = setting("ID_TOKEN_CERTS_URL", "https://www.googleapis.com/oauth2/v1/certs", url,
        "where the ID token signing certificates are fetched (Google's; the local issuer's on the local "
        "stack)")
    id_token_issuers: tuple[str, ...] = setting(
        "ID_TOKEN_ISSUERS", ("https://accounts.google.com", "accounts.google.com"), csv,
        "accepted `iss` of ID tokens")
    token_refresh_url: str = setting("TOKEN_REFRESH_URL", "", url,
        "URL of the refresh function; readers missing a token enqueue a refresh there (empty = refresh "
        "in-process)", deploy=True)
    kis_key_id: str = setting("KIS_KEY_ID", "", key_label,
        "opaque label of the app key in Redis keys (limiter, token lock); empty = a hash of KIS_APP_KEY", deploy=True)
    local_credential: Secret = setting("LOCAL_CREDENTIAL", "", secret,
        "local stack only: this function's identity (an ID token of its service account) for the local APIs")

    # Schedules (Asia/Seoul)
    preload_time_kst: str = setting("PRELOAD_TIME_KST", "08:30", hhmm, "preload time on trading days (Asia/Seoul)")
    preload_symbols: tuple[str, ...] = setting("PRELOAD_SYMBOLS", ("005930", "000660", "035420"), symbols,
        "symbols preloaded before the open")

    # ---- derived values -------------------------------------------------------------------
    @property
    def kis_limit(self) -> int:
        """KIS's calls per second for this app key (`shared.budget.kis_limit`)."""
        return budget.kis_limit(self)

    @property
    def budget(self) -> int:
        """Calls per second the gateway allows itself across every instance (`shared.budget.total`)."""
        return budget.total(self)

    @property
    def effective_batch_size(self) -> int:
        # Paper keys have no multi-quote TR: one symbol per call.
        return 1 if self.kis_env == "paper" else self.batch_size

    @property
    def paper(self) -> bool:
        return self.kis_env == "paper"

    def redacted(self) -> dict[str, Any]:
        """All settings as plain data with secrets masked, for /health and start-up logs."""
        out: dict[str, Any] = {}
        for var in VARIABLES:
            v = getattr(self, var.attr)
            if var.attr == "redis_url":
                out[var.attr] = masked_url(v.get())  # host and port help; the AUTH part stays hidden
                continue
            out[var.attr] = ("***" if v else "") if var.secret else v
        out["kis_limit"] = self.kis_limit
        out["budget"] = self.budget
        return out


VARIABLES: tuple[Variable, ...] = tuple(
    replace(f.metadata[_DECLARED], attr=f.name) for f in fields(Settings) if _DECLARED in f.metadata)


# ---- loading ------------------------------------------------------------------------------

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
    for var in VARIABLES:
        if var.secret and isinstance(values.get(var.attr), str):
            values[var.attr] = Secret(values[var.attr])
    s = Settings(**values)
    if not s.kis_base_url:
        s = replace(s, kis_base_url=KIS_BASE_URLS[s.kis_env])
    if not s.kis_master_url:
        # KIS's hosts: KIS's download location; any other base URL (the simulator) serves the files itself.
        own_host = s.kis_base_url in KIS_BASE_URLS.values()
        s = replace(s, kis_master_url=KIS_MASTER_URL if own_host else s.kis_base_url + "/common/master")
    _check(s)
    return s


def _check(s: Settings) -> None:
    problem = budget.check(s)
    if problem:
        raise SettingsError(problem)
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


def settings_table() -> list[tuple[str, str, str, str]]:
    """(variable, default, accepts, meaning) rows for the README and `kisgw settings-table`."""
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
        notes = [n for n, on in (("secret", var.secret), ("set by the deployment", var.deploy)) if on]
        rows.append((var.env, str(d), var.parse.accepts + (f" ({'; '.join(notes)})" if notes else ""), var.help))
    return rows


def settings_markdown() -> str:
    """The README's settings table, generated from the declarations."""
    lines = ["| Variable | Default | Meaning | Accepts |", "|---|---|---|---|"]
    for name, default, accepts, meaning in settings_table():
        lines.append(f"| `{name}` | {f'`{default}`' if default else ''} | {meaning} | {accepts} |")
    return "\n".join(lines) + "\n"
