"""Composition root: builds the gateway's parts from Settings, once per process."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared.backends import breaker_from_settings, firestore_client_for
from shared.clock import SYSTEM_CLOCK, Clock
from shared.cloud.grants import Denied, ReadOnlyFirestore
from shared.cloud.tasks import trigger_from_settings
from shared.cloud.token_store import token_store_from_settings
from shared.config import Settings, load_settings
from shared.deployment import Function, functions
from shared.kis.client import KISClient
from shared.kis.models import CallRecord
from shared.market.breaker import SharedBreaker, local_failure_kind
from shared.market.cache import DataCache
from shared.market.calendar import KRXCalendar
from shared.market.limiter import SlidingLimiter
from shared.market.pending import PendingSymbols
from shared.market.ports import DrainTrigger, TokenStore
from shared.market.service import DrainReport, MarketService
from shared.market.symbol_master import SymbolMaster
from shared.market.token import TokenManager
from shared.observability.alerts import Alerter
from shared.observability.logs import register_secret
from shared.observability.metrics import Metrics

log = logging.getLogger(__name__)
KINDS = ("quote", "index", "daily", "info")


def app_key_id(settings: Settings) -> str:
    """An opaque, stable id of the app key for Redis keys and logs (never the key itself): KIS_KEY_ID when set
    (deployments set it, so functions without the key read the same keys), else a hash of the key."""
    if settings.kis_key_id:
        return settings.kis_key_id
    key = settings.kis_app_key.get()
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else "nokey"


@dataclass
class Gateway:
    settings: Settings
    redis: redis.Redis
    kis: KISClient
    limiter: SlidingLimiter
    breaker: SharedBreaker
    tokens: TokenManager
    token_store: TokenStore
    service: MarketService
    trigger: DrainTrigger
    metrics: Metrics
    alerts: Alerter
    calendar: KRXCalendar
    firestore: Any = None  # the client this function's identity may use (None: built on demand, all access)
    function: Function | None = None  # the deployed function this process is (None: every part)
    symbols: SymbolMaster | None = None  # the symbol master (listed codes, names, search)

    def close(self) -> None:
        close = getattr(self.trigger, "close", None)
        if callable(close):
            close()


def build_gateway(
    settings: Settings | None = None,
    *,
    redis_client: redis.Redis | None = None,
    trigger: DrainTrigger | None = None,
    clock: Clock = SYSTEM_CLOCK,
    secret_client: Any = None,
    firestore_client: Any = None,
    tasks_client: Any = None,
) -> Gateway:
    settings = settings or load_settings()
    _register_secrets(settings)
    fn = functions()[settings.gateway_function] if settings.gateway_function else None
    firestore_client = _firestore_for(fn, settings, firestore_client)
    r = redis_client or redis.Redis.from_url(settings.redis_url.get(), max_connections=512, socket_timeout=5,
                                             health_check_interval=30, retry_on_timeout=True)
    prefix = settings.redis_prefix
    key_id = app_key_id(settings)
    metrics = Metrics()
    alerts = Alerter(settings.alert_webhook_url.get(), metrics=metrics)
    calendar = KRXCalendar()

    def observe(rec: CallRecord) -> None:
        outcome = "ok" if rec.ok else (rec.msg_cd or f"http_{rec.status}")
        metrics.inc("kis_calls_total", tr_id=rec.tr_id, outcome=outcome)
        metrics.observe("kis_call_seconds", rec.duration_s, tr_id=rec.tr_id)
        if rec.msg_cd in ("EGW00201", "EGW00215"):
            alerts.rate_limited()

    # "priority": no order waiting, quotes may use the orders reserve; an order's demand takes it back at once
    # and holds it only briefly (a waiting caller renews its demand on every attempt), so an order now and
    # then does not keep a reserve idle for seconds.
    priority = settings.orders_reserve == "priority"
    limiter = SlidingLimiter(r, settings, key_id, prefix=prefix, clock=clock,
                             always_held=() if priority else ("orders",), demand_hold_s=0.5 if priority else 2.0)
    if isinstance(firestore_client, Denied) and settings.breaker_store.startswith("firestore://"):
        # No Firestore grant: the breaker state is unreadable here (refresh_token, openapi and preload never
        # call KIS through it); any write fails loudly.
        breaker = SharedBreaker(firestore_client, fail_max=settings.breaker_fail_max,  # type: ignore[arg-type]
                                reset_timeout_s=settings.breaker_reset_timeout_s, clock=clock)
    else:
        breaker = breaker_from_settings(settings, redis=r, firestore_client=firestore_client, clock=clock)
    breaker.add_listener(lambda old, new: alerts.breaker_changed(old, new))


    def local_failure(exc: BaseException) -> None:
        # Ours, not KIS's: its own metric and alert (one per kind per minute), never the KIS breaker.
        kind = local_failure_kind(exc)
        metrics.inc("kis_local_failures_total", reason=kind)
        alerts.send(f"local_failure_{kind}", {"error": type(exc).__name__})

    breaker.add_local_failure_listener(local_failure)
    store: TokenStore
    if fn is not None and fn.token == "none":
        store = Denied("KIS token secret", fn.name)
    else:
        local_sm = settings.token_store.startswith("secretmanager://") and settings.secret_manager_endpoint
        if secret_client is None and local_sm:
            secret_client = local_secret_client(settings.secret_manager_endpoint,
                                                settings.local_credential.get() or None)
        store = token_store_from_settings(settings, redis=r, secret_client=secret_client)

    holder: dict[str, Any] = {}

    def token_provider() -> str:
        tokens: TokenManager = holder["tokens"]
        token = tokens.get()
        register_secret(token)  # scrubbed from every log line from now on (a set lookup once known)
        return token

    def gate(call_class: str, tr_id: str) -> None:
        started = time.perf_counter()
        try:
            holder["service"].gate(call_class, tr_id)
        finally:
            metrics.observe("limiter_wait_seconds", time.perf_counter() - started, call_class=call_class)

    kis = KISClient(settings, token_provider=token_provider, gate=gate, observer=observe)
    # One token writer: the refresh function (or a one-process gateway, which is every function at once).
    writer = fn is None or fn.token == "write"
    tokens = TokenManager(store, kis.issue_token, r, prefix=prefix, app_key_id=key_id,
                          margin_s=settings.token_refresh_margin_s, clock=clock,
                          alert=lambda event, detail: alerts.send(event, detail), writer=writer,
                          request_refresh=None if writer else _refresh_requester(settings, fn, tasks_client))
    holder["tokens"] = tokens
    caches = {
        "quote": DataCache(r, "quote", prefix=prefix, ttl_s=settings.quote_ttl_s,
                           last_known_ttl_s=settings.last_known_ttl_s,
                           market=calendar if settings.market_hours_aware else None, clock=clock),
        "index": DataCache(r, "index", prefix=prefix, ttl_s=settings.index_ttl_s,
                           last_known_ttl_s=settings.last_known_ttl_s,
                           market=calendar if settings.market_hours_aware else None, clock=clock),
        "daily": DataCache(r, "daily", prefix=prefix, ttl_s=settings.daily_ttl_s,
                           last_known_ttl_s=settings.last_known_ttl_s, clock=clock),
        "info": DataCache(r, "info", prefix=prefix, ttl_s=settings.info_ttl_s,
                          last_known_ttl_s=settings.last_known_ttl_s, clock=clock),
    }
    pending = {k: PendingSymbols(r, k, prefix=prefix, lease_s=settings.claim_lease_s, idle_s=settings.pending_idle_s)
               for k in KINDS}

    def on_drain(report: DrainReport) -> None:
        metrics.inc("drain_runs_total", kind=report.kind)
        metrics.inc("drain_batches_total", report.batches, kind=report.kind)
        metrics.inc("drain_symbols_total", report.fetched, kind=report.kind)
        metrics.inc("drain_failed_total", report.failed, kind=report.kind)
        for n in report.fill:
            metrics.observe("batch_fill", float(n), kind=report.kind)

    if trigger is None:
        trigger = trigger_from_settings(settings, client=tasks_client,
                                        inline=lambda kind, call_class, slot: holder["service"].drain(kind))
    symbols = SymbolMaster(r, prefix=prefix, clock=clock)
    # Balance and orders also pass a window of their own, one below KIS's account-ledger limit.
    ledger = (SlidingLimiter(r, dataclasses.replace(settings, gateway_budget=settings.ledger_budget,
                                                    min_call_spacing_ms=0), key_id + "-ledger", prefix=prefix,
                             clock=clock) if settings.ledger_budget else None)
    service = MarketService(settings, kis=kis, limiter=limiter, breaker=breaker, tokens=tokens, caches=caches,
                            pending=pending, trigger=trigger, clock=clock, on_drain=on_drain, symbols=symbols,
                            ledger=ledger)
    holder["service"] = service
    return Gateway(settings, r, kis, limiter, breaker, tokens, store, service, trigger, metrics, alerts, calendar,
                   firestore=firestore_client, function=fn, symbols=symbols)


def _register_secrets(settings: Settings) -> None:
    """Every secret value of the settings is scrubbed from log lines by value, whatever shape it is logged in."""
    account = settings.kis_account_no.get()
    values = [settings.kis_app_key.get(), settings.kis_app_secret.get(), account, account[:8],
              f"{account[:8]}-{account[8:]}" if len(account) == 10 else "", settings.api_key_pepper.get(),
              settings.gateway_dev_api_key.get(), settings.alert_webhook_url.get()]
    url = settings.redis_url.get()
    if "@" in url.partition("://")[2].split("/", 1)[0]:
        values.append(url.partition("://")[2].split("@", 1)[0].lstrip(":"))  # the AUTH part
    for v in values:
        register_secret(v)


def _firestore_for(fn: Function | None, settings: Settings, given: Any) -> Any:
    """The Firestore client this function's identity may use: none, read-only, or full (the description's grant)."""
    if fn is None:
        return given
    if not fn.firestore:
        return Denied("Firestore", fn.name)
    uses = any(uri.startswith("firestore://") for uri in (settings.breaker_store, settings.idempotency_store))
    if given is None and uses:
        given = firestore_client_for(settings.gcp_project)
    if given is None or fn.firestore == "rw":
        return given
    return ReadOnlyFirestore(given, fn.name)


def _refresh_requester(settings: Settings, fn: Function | None, client: Any) -> Any:
    """How a reader asks the refresh function for a token: a task on its queue (None: no queue configured)."""
    if not settings.token_refresh_url or not settings.task_queue.startswith("cloudtasks://"):
        return None
    if fn is not None and not fn.request_refresh:
        return None
    from shared.cloud.tasks import RefreshRequester, tasks_client

    return RefreshRequester(client or tasks_client(settings, settings.local_credential.get() or None),
                            settings.gcp_project or "local", settings.gcp_region, settings.token_refresh_url,
                            settings.task_oidc_service_account)


def local_secret_client(endpoint: str, credential: str | None = None) -> Any:
    """A real Secret Manager client talking plain gRPC to a local stand-in, presenting `credential`."""
    from google.cloud import secretmanager
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    from shared.cloud.identity import authorized_channel

    return secretmanager.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=authorized_channel(endpoint, credential)))


_lock = threading.Lock()
_gateway: Gateway | None = None


def get_gateway() -> Gateway:
    """The process-wide gateway, built on first use (Cloud Functions reuse it across requests)."""
    global _gateway
    if _gateway is None:
        with _lock:
            if _gateway is None:
                _gateway = build_gateway()
    return _gateway


def set_gateway(gw: Gateway | None) -> None:
    """Tests and the local stack install their own gateway."""
    global _gateway
    with _lock:
        _gateway = gw
