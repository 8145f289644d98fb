"""The composition root: every part of the gateway is built here from settings, once per process, explicitly and
in dependency order: clients and stores (their adapters chosen by URI in `shared.backends`), the KIS gate, the
drain, the readers' parts, access control and the order desk. Nothing is attached later.

It sits above the HTTP layer (it builds `api.access.AccessControl`), below only the entry points
(`functions/main.py`), which pass `get_gateway` to `serve` / `serve_async`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
import threading
import time
from typing import Any

import redis

from shared import backends, budget, garbage
from shared.api.access import AccessControl
from shared.api.orders import BALANCE_DEADLINE_S
from shared.api.parts import Gateway, current, install
from shared.clock import SYSTEM_CLOCK, Clock
from shared.cloud.grants import Denied, ReadOnlyFirestore
from shared.config import Settings, SettingsError, load_settings
from shared.deployment import Function, functions
from shared.kis.client import KISClient
from shared.kis.models import CallRecord
from shared.lazy import lazy_object
from shared.market.breaker import BreakerOpenError, SharedBreaker, local_failure_kind
from shared.market.cache import DataCache
from shared.market.calendar import KRXCalendar
from shared.market.drain import Drain, DrainReport
from shared.market.gate import CallerCap, KISGate
from shared.market.kinds import KINDS
from shared.market.limiter import BOOK_AHEAD_S, RateLimitTimeout, SlidingLimiter
from shared.market.pending import PendingSymbols
from shared.market.ports import DrainCallback, DrainTrigger, TokenStore
from shared.market.reader_sync import MarketReader
from shared.market.symbol_master import SymbolMaster
from shared.market.token import TokenManager, TokenUnavailableError
from shared.observability.alerts import Alerter
from shared.observability.logs import register_secret
from shared.observability.metrics import Metrics
from shared.orders.api_keys import ApiKeys
from shared.orders.idempotency import IdempotencyStore
from shared.orders.service import Order, OrderDesk

log = logging.getLogger(__name__)


def app_key_id(settings: Settings) -> str:
    """An opaque, stable id of the app key for Redis keys and logs (never the key itself): KIS_KEY_ID when set
    (deployments set it, so functions without the key read the same keys), else a hash of the key."""
    if settings.kis_key_id:
        return settings.kis_key_id
    key = settings.kis_app_key.get()
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else "nokey"


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
    backends.check(settings)  # an unknown scheme stops start-up here, naming its setting
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

    # ---- the shared limiter, the breaker, the token ----------------------------------------------
    # "priority": no order waiting, quotes may use the orders reserve; an order's demand takes it back at once
    # and holds it only briefly (a waiting caller renews its demand on every attempt), so an order now and
    # then does not keep a reserve idle for seconds. Waiters book their slot shortly ahead (exact cadence), and an
    # order within its reserve waits for no spacing behind such a booked quote: only for a slot in the window.
    priority = settings.orders_reserve == "priority"
    limiter = SlidingLimiter(r, settings, key_id, prefix=prefix, clock=clock,
                             always_held=() if priority else ("orders",), demand_hold_s=0.5 if priority else 2.0,
                             horizon_s=BOOK_AHEAD_S, unspaced="orders" if priority else "")
    # Balance and orders also pass a window of their own, one below KIS's account-ledger limit.
    ledger = (SlidingLimiter(r, dataclasses.replace(settings, gateway_budget=budget.ledger(settings),
                                                    min_call_spacing_ms=0), key_id + "-ledger", prefix=prefix,
                             clock=clock) if budget.ledger(settings) else None)
    breaker = _breaker(settings, r, firestore_client, clock)
    breaker.add_listener(lambda old, new: alerts.breaker_changed(old, new))

    def local_failure(exc: BaseException) -> None:
        # Ours, not KIS's: its own metric and alert (one per kind per minute), never the KIS breaker.
        kind = local_failure_kind(exc)
        metrics.inc("kis_local_failures_total", reason=kind)
        alerts.send(f"local_failure_{kind}", {"error": type(exc).__name__})

    breaker.add_local_failure_listener(local_failure)
    store = _token_store(settings, fn, r, secret_client)
    # Tokens are issued over a client of their own: the token endpoints pass no gate and need no token, so the
    # token manager is built before the client that asks it for the token (dependency order, no cycle).
    issuer = KISClient(settings, observer=observe)
    # One token writer: the refresh function (or a one-process gateway, which is every function at once).
    writer = fn is None or fn.token == "write"
    tokens = TokenManager(store, issuer.issue_token, r, prefix=prefix, app_key_id=key_id,
                          margin_s=settings.token_refresh_margin_s, clock=clock,
                          alert=lambda event, detail: alerts.send(event, detail), writer=writer,
                          request_refresh=None if writer else _refresh_requester(settings, fn, tasks_client))

    # ---- the KIS gate and the client whose every REST call passes it --------------------------------
    gate = KISGate(settings, limiter=limiter, breaker=breaker, tokens=tokens, ledger=ledger, clock=clock)

    def timed_gate(call_class: str, tr_id: str) -> None:
        started = time.perf_counter()
        try:
            gate.acquire(call_class, tr_id)
        finally:
            metrics.observe("limiter_wait_seconds", time.perf_counter() - started, call_class=call_class)

    def token_provider() -> str:
        token = tokens.get()
        register_secret(token)  # scrubbed from every log line from now on (a set lookup once known)
        return token

    kis = KISClient(settings, token_provider=token_provider, gate=timed_gate, observer=observe)

    # ---- the cache, the pending sets, the drain and the synchronous reader ---------------------------
    market = calendar if settings.market_hours_aware else None
    ttls = {"quote": settings.quote_ttl_s, "index": settings.index_ttl_s, "daily": settings.daily_ttl_s,
            "info": settings.info_ttl_s}
    caches = {k: DataCache(r, k, prefix=prefix, ttl_s=ttls[k], last_known_ttl_s=settings.last_known_ttl_s,
                           market=market if k in ("quote", "index") else None, clock=clock) for k in KINDS}
    pending = {k: PendingSymbols(r, k, prefix=prefix, lease_s=settings.claim_lease_s, idle_s=settings.pending_idle_s)
               for k in KINDS}

    def on_drain(report: DrainReport) -> None:
        metrics.inc("drain_runs_total", kind=report.kind)
        metrics.inc("drain_batches_total", report.batches, kind=report.kind)
        metrics.inc("drain_symbols_total", report.fetched, kind=report.kind)
        metrics.inc("drain_failed_total", report.failed, kind=report.kind)
        for n in report.fill:
            metrics.observe("batch_fill", float(n), kind=report.kind)

    def trigger_for(run: DrainCallback) -> DrainTrigger:
        # An in-process trigger (local://, inline://) runs this drain: the drain builds it with its own `run`.
        return backends.trigger_from_settings(settings, client=tasks_client, inline=run)

    if trigger is None and fn is not None and not fn.enqueue and settings.task_queue.startswith("cloudtasks://"):
        # This identity may enqueue into no queue (and never asks for a drain): no Cloud Tasks client is built.
        trigger = Denied("Cloud Tasks queue", fn.name)
    symbols = SymbolMaster(r, prefix=prefix, clock=clock)
    drain = Drain(settings, kis=kis, gate=gate, caches=caches, pending=pending, trigger=trigger,
                  trigger_for=None if trigger is not None else trigger_for, clock=clock, on_drain=on_drain,
                  symbols=symbols)
    reader = MarketReader(settings, caches=caches, pending=pending, breaker=breaker, drain=drain, symbols=symbols,
                          clock=clock)

    # ---- who may call what, and the order desk ---------------------------------------------------
    access = AccessControl.from_settings(settings, redis_client=r, firestore_client=firestore_client,
                                         keys=_api_keys(settings, fn, r, firestore_client))
    orders = _order_desk(settings, fn, kis, gate, tokens, r, firestore_client)
    gw = Gateway(settings, r, kis, limiter, breaker, tokens, store, gate, drain, reader, drain.trigger, metrics,
                 alerts, calendar, access, orders, firestore=firestore_client, function=fn, symbols=symbols)
    _prepare(gw, fn)
    return gw


PREPARE_AFTER_S = 1.0


def _prepare(gw: Gateway, fn: Function | None) -> None:
    """Builds, in the background once the process has answered its first request, what a miss will need: a
    read that misses checks the breaker and asks for a drain, and the drain calls KIS within the reader's
    deadline. In the background: the process answers its first requests (mostly cache hits: the cache is
    shared) before and while this loads, instead of after it;
    a miss arriving meanwhile waits for the part it needs (each is built once, under its lock) as it would
    without this. What only some answers need stays built on first use (health and stats read Firestore in
    their answer, outside any deadline; the dashboard page and /openapi.json need none of it).
    `gw.prepared` is set when it is done."""
    may_call_kis = fn is None or fn.kis or bool(fn.enqueue)
    if not may_call_kis:
        _settled()
        gw.prepared.set()
        return

    def prepare() -> None:
        # After the first answer (at the latest PREPARE_AFTER_S from now): the loading below holds the
        # interpreter for a few hundred ms, and a cold start's first answer, mostly a cache hit, needs none of it.
        gw.answered.wait(PREPARE_AFTER_S)
        try:
            importlib.import_module("shared.api.models")  # the input models (msgspec): a drain's body, a query
            if gw.firestore is not None and not isinstance(gw.firestore, Denied):
                # Builds the Firestore client (the breaker's document), behind a read-only view or not.
                gw.firestore.collection  # noqa: B018
            if fn is None or fn.kis:
                gw.kis.prepare()  # the HTTP session to KIS (requests)
                prepare_store = getattr(gw.token_store, "prepare", None)  # a store whose client is built on first use
                if callable(prepare_store):
                    prepare_store()  # the Secret Manager client (the token)
        except Exception as exc:  # built (and failing loudly) on first use instead
            log.warning("preparing the %s function failed: %s", fn.name if fn else "gateway", type(exc).__name__)
        finally:
            _settled()
            gw.prepared.set()

    threading.Thread(target=prepare, name="prepare", daemon=True).start()


def _settled() -> None:
    """What the process built to serve (modules, clients, the gateway) lives as long as the process: it is moved
    out of the garbage collector's generations. Otherwise each full collection walks it all again, and with the
    client libraries loaded that is 60-140 ms of a stopped event loop, every few seconds under load: the read
    functions' p99. Requests' own garbage is still collected as before (see shared.garbage)."""
    garbage.settle()


def _breaker(settings: Settings, r: redis.Redis, firestore_client: Any, clock: Clock) -> SharedBreaker:
    if isinstance(firestore_client, Denied) and settings.breaker_store.startswith("firestore://"):
        # No Firestore grant: the breaker state is unreadable here (refresh_token, openapi and preload never
        # call KIS through it); any write fails loudly.
        return SharedBreaker(firestore_client, fail_max=settings.breaker_fail_max,  # type: ignore[arg-type]
                             reset_timeout_s=settings.breaker_reset_timeout_s, clock=clock)
    return backends.breaker_from_settings(settings, redis=r, firestore_client=firestore_client, clock=clock)


def _token_store(settings: Settings, fn: Function | None, r: redis.Redis, secret_client: Any) -> TokenStore:
    if fn is not None and fn.token == "none":
        return Denied("KIS token secret", fn.name)
    return backends.token_store_from_settings(settings, redis=r, secret_client=secret_client)


def _api_keys(settings: Settings, fn: Function | None, r: redis.Redis, firestore_client: Any) -> ApiKeys:
    """The API keys this function may check: the key store where IDEMPOTENCY_STORE points, read with the
    function's grant; one that refuses every use where the identity may not read it (a key presented there
    fails loudly, as IAM would refuse it)."""
    pepper = settings.api_key_pepper.get().encode()
    if isinstance(firestore_client, Denied) and settings.idempotency_store.startswith("firestore://"):
        return ApiKeys(firestore_client, pepper=pepper)
    if settings.gateway_mode == "cloud" and not pepper:
        if fn is not None and "api_keys" in fn.secrets:
            # The function is meant to check API keys and its pepper secret came back empty: a deployment mistake
            # that would make key digests guessable from a copied store. Start-up stops here, naming the setting.
            raise SettingsError(backends.NO_PEPPER)
        # A function the description gives no pepper (internal routes take ID tokens only), or a gateway built outside
        # the deployment (a script, a test): a key presented there fails loudly with what is missing.
        return ApiKeys(_Unconfigured(backends.NO_PEPPER), pepper=pepper)
    return backends.api_keys_from_settings(settings, redis_client=r, firestore_client=firestore_client)


class _Unconfigured:
    """Stands where a store would be when a setting it needs is missing: any use raises SettingsError."""

    def __init__(self, message: str) -> None:
        object.__setattr__(self, "_message", message)

    def __getattr__(self, name: str) -> Any:
        raise SettingsError(object.__getattribute__(self, "_message"))


def _order_desk(settings: Settings, fn: Function | None, kis: KISClient, gate: KISGate, tokens: TokenManager,
                r: redis.Redis, firestore_client: Any) -> OrderDesk:
    """Orders and the balance through the gate's orders share: an order is sent to KIS once and never retried; the
    balance, a read, is retried by the market reads' policy within its deadline (a refusal for the rate
    (EGW00201/EGW00215) is one KIS certainly did not act on, and the limiter is told of it, as for every read)."""
    def send(order: Order) -> Any:
        return gate.call_once(lambda: kis.place_cash_order(order.side, order.symbol, order.quantity,
                                                           order.order_type, order.price))

    # Balances in progress at once (each is several KIS calls): half the orders reserve, so each one's pages get
    # their grants at once and orders keep room; the others wait up to the request deadline to start, then answer
    # 429 (not sent) rather than all starting and none finishing within the caller's patience.
    balances = CallerCap(budget.reserve(settings, "orders") // 2)

    def balance() -> Any:
        with balances.enter("orders", settings.request_deadline_s):
            return gate.call(kis.get_balance, deadline=gate.clock.monotonic()
                             + max(BALANCE_DEADLINE_S, settings.request_deadline_s))

    # A repeat waits as long as the first request can take (rate grant + token + one KIS exchange).
    first_max_s = settings.request_deadline_s + 2 * settings.kis_http_timeout_s + 1.0
    store: IdempotencyStore
    if isinstance(firestore_client, Denied) and settings.idempotency_store.startswith("firestore://"):
        store = firestore_client  # this identity cannot reach the records: an order sent here fails loudly
    else:
        store = backends.idempotency_store_from_settings(settings, redis_client=r, firestore_client=firestore_client)
    return OrderDesk(send=send, balance=balance, refresh_token=lambda: tokens.on_rejected(), store=store,
                     not_sent_before_call=(BreakerOpenError, RateLimitTimeout, TokenUnavailableError),
                     busy_before_call=(RateLimitTimeout,),
                     repeat_wait_s=first_max_s, stale_after_s=max(120.0, 4 * first_max_s))

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
        # Built on first use: its library (gRPC, protobuf, google-auth) loads when a request first reads Firestore,
        # not before a first answer that needs none.
        given = lazy_object(lambda: backends.firestore_client_for(settings.gcp_project), "Firestore client")
    if given is None or fn.firestore == "rw":
        return given
    return ReadOnlyFirestore(given, fn.name)


def _refresh_requester(settings: Settings, fn: Function | None, client: Any) -> Any:
    """How a reader asks the refresh function for a token: a task on its queue (None: no queue configured)."""
    if not settings.token_refresh_url or (fn is not None and not fn.request_refresh):
        return None
    return backends.build("token_refresh", settings, backends.Clients(cloud_tasks=client))


_lock = threading.Lock()


def get_gateway() -> Gateway:
    """The process-wide gateway, built on first use (Cloud Functions reuse it across requests)."""
    gw = current()
    if gw is None:
        with _lock:
            gw = current()
            if gw is None:
                gw = build_gateway()
                install(gw)
    return gw


def set_gateway(gw: Gateway | None) -> None:
    """Tests and the local stack install their own gateway."""
    install(gw)
