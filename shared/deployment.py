"""The deployment description: every deployed function, what it serves, its identity and what that identity
may do. The one source for Terraform (`scripts/gen_tfvars.py` writes it into `generated.auto.tfvars.json`,
`terraform/*.tf` grant exactly these roles), for the local stack (`shared/localstack.py` starts one process
per function with exactly these secrets and identity, and its Secret Manager and Cloud Tasks stand-ins check
callers against `role_table()`), and for the composition root (`shared/gateway.py` builds a function only
the parts its identity may use).

Least privilege: public read functions hold no KIS app key/secret, no account number and no write path to
API keys or orders; only the drain (market data), orders/balance/legacy_api (trading) and refresh_token
(the one token writer) talk to KIS. `/internal/*` is served only by internal-ingress functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# Secret Manager secrets: key -> (id suffix, the variable a function reads it into; "" = read another way:
# the token through the API, the Redis CA as a mounted file).
SECRETS: dict[str, tuple[str, str]] = {
    "kis_app_key": ("kis-app-key", "KIS_APP_KEY"),
    "kis_app_secret": ("kis-app-secret", "KIS_APP_SECRET"),
    "kis_account_no": ("kis-account-no", "KIS_ACCOUNT_NO"),
    "api_keys": ("api-key-pepper", "GATEWAY_API_KEY_PEPPER"),
    "alert_webhook": ("alert-webhook-url", "ALERT_WEBHOOK_URL"),
    "redis_url": ("redis-url", "REDIS_URL"),
    "redis_ca": ("redis-ca", ""),
    "kis_token": ("kis-token", ""),
}
KIS_CREDENTIALS = frozenset({"kis_app_key", "kis_app_secret"})
BASE_SECRETS = ("redis_url", "redis_ca")

# Identities that call functions (besides the public): who may present an ID token to which function.
INVOKERS = {
    "tasks": "tasks-invoker",        # Cloud Tasks pushes (drains, token refresh requests)
    "scheduler": "sched-invoker",    # Cloud Scheduler jobs
    "scraper": "metrics-scraper",    # Prometheus-style scraper of /metrics (var.metrics_invokers in Terraform)
}

FIRESTORE_LEVELS = ("", "ro", "rw")
TOKEN_LEVELS = ("none", "read", "write")
REFRESH_QUEUE = "token"  # the refresh function's queue (besides the call-class queues)
DEFAULT_QUEUE_PREFIX = "kisgw-drain"  # drain queues: one per call class, `{prefix}-{call_class}`
REFRESH_QUEUE_ID = "kisgw-token-refresh"


@dataclass(frozen=True)
class Function:
    name: str                           # entry point in functions/main.py
    paths: tuple[str, ...]              # paths it serves (a trailing "*" is a prefix)
    ingress: str                        # "public" (behind the load balancer) or "internal"
    secrets: tuple[str, ...] = ()       # Secret Manager secrets read into env (besides redis_url, redis_ca)
    token: str = "none"                 # KIS token secret: none | read | write (add/list/disable versions)
    firestore: str = ""                 # "" | ro | rw
    enqueue: tuple[str, ...] = ()       # call-class queues it creates drain tasks in
    request_refresh: bool = False       # may enqueue a token refresh into the refresh function's queue
    invokers: tuple[str, ...] = ()      # keys of INVOKERS whose ID tokens it accepts
    kis: bool = False                   # talks to KIS
    timeout_s: int = 60                 # 0 = the drain's dispatch deadline
    waiting: bool = True                # requests mostly wait on I/O (many per instance)
    asgi: bool = False                  # served by functions-framework --asgi (async read path)
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def public(self) -> bool:
        return self.ingress == "public"

    @property
    def account_id(self) -> str:
        """Service account id without the name prefix (Terraform: "${var.name_prefix}-fn-...")."""
        return "fn-" + self.name.replace("_", "-")

    @property
    def all_secrets(self) -> tuple[str, ...]:
        """Every secret whose value it may access (accessor role)."""
        extra = ("kis_token",) if self.token in ("read", "write") else ()
        return tuple(dict.fromkeys((*BASE_SECRETS, *self.secrets, *extra)))

    def serves(self, path: str) -> bool:
        return any(path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in self.paths)


_READ: dict[str, Any] = dict(ingress="public", secrets=("api_keys",), firestore="ro", timeout_s=60)
_KIS = ("kis_app_key", "kis_app_secret", "alert_webhook")

FUNCTIONS: tuple[Function, ...] = (
    Function("quotes", ("/v1/quotes",), enqueue=("quotes",), asgi=True, **_READ),
    Function("daily_prices", ("/v1/daily-prices",), enqueue=("reference",), asgi=True, **_READ),
    Function("symbol_info", ("/v1/symbols",), enqueue=("reference",), asgi=True, **_READ),
    Function("index_quotes", ("/v1/indices",), enqueue=("quotes",), asgi=True, **_READ),
    Function("symbol_search", ("/v1/symbols/search",), **_READ),  # answered from the symbol master alone
    Function("orders", ("/v1/orders",), ingress="public", secrets=(*_KIS, "kis_account_no", "api_keys"),
             token="read", firestore="rw", request_refresh=True, kis=True),
    Function("balance", ("/v1/account/balance",), ingress="public", secrets=(*_KIS, "kis_account_no", "api_keys"),
             token="read", firestore="rw", request_refresh=True, kis=True),
    Function("health", ("/health",), ingress="public", firestore="ro", timeout_s=30, asgi=True),
    Function("stats", ("/stats",), ingress="public", secrets=("api_keys",), firestore="ro", timeout_s=30,
             asgi=True),
    Function("metrics", ("/metrics",), ingress="internal", secrets=("api_keys",), firestore="ro",
             invokers=("scraper",), timeout_s=30, asgi=True),
    # The older Flask gateway's routes (market data, trading, balance): trading needs what orders needs.
    Function("legacy_api", ("/api/*",), ingress="public", secrets=(*_KIS, "kis_account_no", "api_keys"),
             token="read", firestore="rw", enqueue=("quotes", "reference"), request_refresh=True, kis=True, asgi=True),
    Function("drain", ("/internal/drain",), ingress="internal", secrets=_KIS, token="read", firestore="rw",
             enqueue=("quotes", "reference", "orders"), request_refresh=True, invokers=("tasks",), kis=True,
             timeout_s=0, waiting=False),
    Function("refresh_token", ("/internal/refresh-token",), ingress="internal", secrets=_KIS, token="write",
             invokers=("scheduler", "tasks"), kis=True, timeout_s=300, waiting=False),
    Function("preload", ("/internal/preload",), ingress="internal", enqueue=("reference",),
             invokers=("scheduler",), timeout_s=300, waiting=False),
    Function("openapi", ("/openapi.json",), ingress="public", timeout_s=30, waiting=False, asgi=True),
    Function("dashboard", ("/dashboard", "/dashboard/*"), ingress="public", secrets=("api_keys",),
             firestore="ro", timeout_s=30, asgi=True),
)


def functions(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Function]:
    """The description by name; `overrides` (name -> field -> value) changes fields (tests, experiments)."""
    out = {f.name: f for f in FUNCTIONS}
    for name, changes in (overrides or {}).items():
        if name not in out:
            raise KeyError(f"no deployed function {name!r}")
        out[name] = replace(out[name], **dict(changes))
    for f in out.values():
        _check(f)
    return out


def _check(f: Function) -> None:
    unknown = set(f.secrets) - set(SECRETS)
    if unknown:
        raise ValueError(f"{f.name}: unknown secrets {sorted(unknown)}")
    if f.firestore not in FIRESTORE_LEVELS or f.token not in TOKEN_LEVELS:
        raise ValueError(f"{f.name}: firestore must be one of {FIRESTORE_LEVELS}, token one of {TOKEN_LEVELS}")
    if f.ingress not in ("public", "internal"):
        raise ValueError(f"{f.name}: ingress is public or internal")
    if f.public and any(p.startswith("/internal") for p in f.paths):
        raise ValueError(f"{f.name}: /internal/* is served by internal functions only")
    if set(f.invokers) - set(INVOKERS):
        raise ValueError(f"{f.name}: unknown invokers {sorted(set(f.invokers) - set(INVOKERS))}")


def function_for_path(path: str, fns: Mapping[str, Function] | None = None) -> Function | None:
    """The function a load balancer sends `path` to (exact paths before prefixes)."""
    fns = fns or functions()
    for f in fns.values():
        if path in f.paths:
            return f
    for f in fns.values():
        if f.serves(path):
            return f
    return None


def service_account_email(account_id: str, prefix: str, project: str) -> str:
    return f"{prefix}-{account_id}@{project}.iam.gserviceaccount.com"


def role_table(fns: Mapping[str, Function] | None = None, *, prefix: str = "kisgw",
               project: str = "local-project") -> dict[str, dict[str, Any]]:
    """Service account email -> what it may do: the same grants Terraform makes (terraform/iam.tf)."""
    fns = fns or functions()
    tasks_invoker = service_account_email(INVOKERS["tasks"], prefix, project)
    table: dict[str, dict[str, Any]] = {}
    for f in fns.values():
        queues = {f"{DEFAULT_QUEUE_PREFIX}-{c}" for c in f.enqueue}
        if f.request_refresh:
            queues.add(REFRESH_QUEUE_ID)
        table[service_account_email(f.account_id, prefix, project)] = {
            "function": f.name,
            "secrets": {secret_id(s, prefix) for s in f.all_secrets},
            "add_versions": {secret_id("kis_token", prefix)} if f.token == "write" else set(),
            "queues": queues,
            "act_as": {tasks_invoker} if queues else set(),
            "firestore": f.firestore,
        }
    return table


def secret_id(key: str, prefix: str = "kisgw") -> str:
    """The Secret Manager id of a secret (Terraform: "${var.name_prefix}-<suffix>")."""
    return f"{prefix}-{SECRETS[key][0]}"


def tfvars(fns: Mapping[str, Function] | None = None) -> dict[str, dict[str, Any]]:
    """The per-function table Terraform consumes (var.functions)."""
    fns = fns or functions()
    return {f.name: {
        "public": f.public,
        "kis": f.kis,
        "secrets": list(f.all_secrets),
        "token": f.token,
        "firestore": f.firestore,
        "enqueue": list(f.enqueue),
        "request_refresh": f.request_refresh,
        "invokers": list(f.invokers),
        "waiting": f.waiting,
        "timeout": f.timeout_s,
        "asgi": f.asgi,
        "env": dict(sorted(f.env.items())),
    } for f in sorted(fns.values(), key=lambda f: f.name)}
