"""The async read path: what a read request gets, without holding a thread while it waits.

The promise it keeps (the same as `reader_sync.MarketReader`, which serves synchronous callers; the answers
both give are chosen in `answers.py`):
- cache first: symbols with a fresh copy this process read before are answered from its near cache with no
  Redis round trip (`shared.market.near_cache`: kept only while fresh, dropped on every write notice); other
  fresh copies from one Redis round trip (pipelined with the caller's inbound rate check when the serve path
  passes it in);
- coalescing: a missed symbol is marked pending once however many callers want it, and one drain per kind and
  time slot is asked for per process;
- admission (the same rules, Lua script and keys as the sync side, shared/market/admission.py): codes the
  symbol master does not know are answered `error: unknown symbol` and never become pending; a caller's new
  pending symbols per second and a kind's pending set are capped (the refused symbols get their cached copy or
  an error; the call raises `AdmissionRefused` with every answer, which the serve path turns into 429, or 503
  when a full set leaves nothing to answer with, with Retry-After: `reader_sync.answer_of`); admitted symbols
  are marked as waited for until the caller's deadline, so claims serve them first and symbols nobody waits
  for any more expire;
- waiting: a request waits until its symbols are written or its deadline, woken by ONE pub/sub listener per
  process and event loop (no polling, no thread per waiter); it never hangs past its deadline;
- answers: every requested code comes back `fresh`, `stale` (last-known copy with its age), `pending` (still
  being fetched) or `error` (with the reason), in the requested order;
- refresh ahead: a symbol read within the last part of its freshness window (its lead: at least 30 % of the
  window, more when this process's recent refreshes took longer to land, `NearCache.lead_s`) is marked pending
  once per stored copy (a Redis SET NX marker), so a steady reader finds the next copy already written and
  never waits, and a symbol is still fetched at most once per freshness window.

Blocking work (the drain trigger, breaker storage, an inline drain) runs in a worker thread pool, never on the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio as aioredis

from shared.config import Settings
from shared.market import admission, redis_keys
from shared.market.answers import (
    CIRCUIT_OPEN,
    PAPER_NO_INFO,
    UNKNOWN,
    SymbolResult,
    from_entry,
    not_admitted,
    still_waiting,
    unavailable,
)
from shared.market.breaker import SharedBreaker
from shared.market.cache import CacheEntry
from shared.market.drain import Drain
from shared.market.near_cache import NearCache
from shared.market.pending import FRESH, AdmitResult
from shared.market.reader_sync import WAIT_SLICE_S, answer_of
from shared.market.step_pipeline import StepPipeline
from shared.observability.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")


class GatewayParts(Protocol):
    """What a reader takes from the composition root (`shared.gateway.Gateway` has it)."""

    settings: Settings
    redis: redis.Redis
    drain: Drain
    breaker: SharedBreaker
    metrics: Metrics

# How long the breaker's state read from its store is reused by this process's readers; and up to how old an
# "open" read is still answered with while a new read runs. A "closed" read of any age is answered with while the
# new one runs: a burst of misses then waits for no worker thread (measured, the first of 200 misses arriving
# together after a quiet spell waited 50-110 ms for that read), and if the breaker opened meanwhile, the gate
# refuses the drain's call and the waiters are answered with the reason. An old "open" is waited for: it must
# not refuse requests after KIS came back. The store's own copy is trusted for 1 s.
BREAKER_MEMO_S = 0.1
BREAKER_STALE_S = 1.0
# Redis connections of one process's event loop (requests queue for one; none is held while waiting).
ASYNC_POOL_SIZE = 256
POOL_WAIT_S = 20
# Connections of the serve path's own pool: each request's first commands (in-flight slot, cache read) and the
# slot's release, joined per loop step (`serve_batch`). Kept apart from the misses' admissions and reads, so a
# cache hit never queues for a connection behind a burst of them.
SERVE_POOL_SIZE = 32
# Connections for the inbound rate limit's lease requests alone: a request waiting for its key's lease (a cache
# hit usually needs nothing else) waits one round trip, never behind other requests' pipelines.
LEASE_POOL_SIZE = 8
# Misses of one process admitted at once (the others queue for their turn; see AsyncReader.get).
MISS_ADMISSIONS = 32

_EXECUTOR = ThreadPoolExecutor(max_workers=32, thread_name_prefix="kisgw-blocking")


def submit(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Hand blocking `fn` to the worker pool now, keeping the request's context (its id in logs). From the
    caller's own step: a task of its own would start only after every step already queued on the loop."""
    return asyncio.get_running_loop().run_in_executor(_EXECUTOR, contextvars.copy_context().run, fn, *args)


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking `fn` in the worker pool and wait for it (see `submit`)."""
    return await submit(fn, *args)


def async_client(sync: redis.Redis, max_connections: int = ASYNC_POOL_SIZE) -> aioredis.Redis:
    """A redis.asyncio client for the same server and options as the gateway's sync client."""
    pool = sync.connection_pool
    kw = dict(pool.connection_kwargs)
    cls: type[Any] = (aioredis.UnixDomainSocketConnection
                      if issubclass(pool.connection_class, redis.UnixDomainSocketConnection) else
                      aioredis.SSLConnection if issubclass(pool.connection_class, redis.SSLConnection)
                      else aioredis.Connection)
    for k in ("retry", "redis_connect_func", "credential_provider", "protocol"):
        kw.pop(k, None)
    allowed = {"host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
               "socket_keepalive", "retry_on_timeout", "health_check_interval", "client_name", "path",
               "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname"}
    kw = {k: v for k, v in kw.items() if k in allowed}
    # A blocking pool: a thousand waiters waking together queue for a connection instead of failing (on a busy
    # machine a thousand admissions can hold every connection for seconds: the queue waits up to POOL_WAIT_S).
    pool_async = aioredis.BlockingConnectionPool(connection_class=cls, max_connections=max_connections,
                                                 timeout=POOL_WAIT_S, **kw)
    return aioredis.Redis(connection_pool=pool_async)


# After a refresh ahead found misses pending, how long this process starts none for that kind.
AHEAD_BACKLOG_HOLD_S = 0.1


class _Waiter:
    """One waiting request: the listener hands it what was read for its symbols (no Redis call of its own)."""

    __slots__ = ("wanted", "event", "delivered")

    def __init__(self, wanted: Iterable[str]) -> None:
        self.wanted = frozenset(wanted)
        self.event = asyncio.Event()
        self.delivered: dict[str, tuple[CacheEntry | None, str | None]] = {}

    def deliver(self, found: dict[str, tuple[CacheEntry | None, str | None]]) -> None:
        mine = {s: v for s, v in found.items() if s in self.wanted}
        if mine:
            self.delivered.update(mine)
            self.event.set()


class Listener:
    """The one subscriber connection of this process (and event loop). It wakes cache waiters and hands other
    channels' messages (API key revocations) to their callbacks. A dropped connection is reopened and
    re-subscribed; the reader re-reads every waited-for symbol at least every WAIT_SLICE_S, so a notice lost
    meanwhile costs latency, never an answer."""

    def __init__(self, client: aioredis.Redis, channels: Sequence[str],
                 callbacks: dict[str, Callable[[str], None]]) -> None:
        self._client = client
        self._channels = list(dict.fromkeys([*channels, *callbacks]))
        self._callbacks = callbacks
        self._waiters: dict[str, dict[str, set[_Waiter]]] = {c: {} for c in channels}
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        # Called on the loop with (channel, symbols with waiters, their waiters) for each cache notice.
        self.on_notice: Callable[[str, list[str], set[_Waiter]], None] | None = None
        # Called on the loop with (channel, symbols) for every cache notice, waiters or not.
        self.on_written: Callable[[str, list[str]], None] | None = None
        # Called on the loop with True once subscribed, False when the subscription is lost.
        self.on_subscribed: Callable[[bool], None] | None = None

    async def start(self, timeout_s: float = 2.0) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kisgw-cache-listener")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            log.warning("cache listener not subscribed yet; waiters re-read the cache meanwhile")

    def register(self, channel: str, waiter: _Waiter) -> None:
        by_symbol = self._waiters.setdefault(channel, {})
        for s in waiter.wanted:
            by_symbol.setdefault(s, set()).add(waiter)

    def unregister(self, channel: str, waiter: _Waiter) -> None:
        by_symbol = self._waiters.get(channel, {})
        for s in waiter.wanted:
            ws = by_symbol.get(s)
            if ws is not None:
                ws.discard(waiter)
                if not ws:
                    del by_symbol[s]

    def waiters_of(self, channel: str) -> dict[str, set[_Waiter]]:
        """Symbol -> the requests of this process waiting for it on `channel` (the listener's own map: read it,
        do not change it)."""
        return self._waiters.get(channel, {})

    def waiting(self, channel: str | None = None) -> int:
        chans = [channel] if channel else list(self._waiters)
        return len({w for c in chans for ws in self._waiters.get(c, {}).values() for w in ws})

    async def _run(self) -> None:
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(*self._channels)
                confirmed = 0
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None:
                        continue
                    kind = _text(msg.get("type"))
                    if kind == "subscribe":
                        confirmed += 1
                        if confirmed == len(self._channels):
                            self._ready.set()
                            if self.on_subscribed is not None:
                                self.on_subscribed(True)
                    elif kind == "message":
                        self._handle(_text(msg.get("channel")), _text(msg.get("data")))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                log.warning("cache listener: %s; reconnecting", type(exc).__name__)
            except Exception:  # never let the one listener die
                log.exception("cache listener failed; restarting")
            finally:
                self._ready.clear()
                if self.on_subscribed is not None:
                    self.on_subscribed(False)
                with contextlib.suppress(Exception):  # closing a broken connection may fail too
                    await pubsub.aclose()
            await asyncio.sleep(0.5)

    def _handle(self, channel: str, data: str) -> None:
        callback = self._callbacks.get(channel)
        if callback is not None:
            try:
                callback(data)
            except Exception:
                log.exception("listener callback for a notice failed")
            return
        symbols = data.split(",")
        if self.on_written is not None:
            self.on_written(channel, symbols)
        by_symbol = self._waiters.get(channel)
        if not by_symbol:
            return
        waiters = {w for s in symbols for w in by_symbol.get(s, ())}
        if waiters and self.on_notice is not None:
            self.on_notice(channel, [s for s in symbols if s in by_symbol], waiters)


def _replies(replies: list[Any]) -> list[Any]:
    """`StepPipeline.run`'s replies, the first error among them raised."""
    for r in replies:
        if isinstance(r, Exception):
            raise r
    return replies


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AsyncReader:
    """Reads of one gateway on one event loop (see the module's promise)."""

    def __init__(self, gw: GatewayParts, client: aioredis.Redis | None = None) -> None:
        self.gw = gw
        self.drain = gw.drain
        self.redis = client or async_client(gw.redis)
        # The serve path's first pipeline and slot release (see SERVE_POOL_SIZE); a given client serves both.
        self.serve_redis = client or async_client(gw.redis, SERVE_POOL_SIZE)
        self.lease_redis = client or async_client(gw.redis, LEASE_POOL_SIZE)
        # The commands of the requests of one loop step go out in one pipeline (a burst's intake: step_pipeline).
        self.batch = StepPipeline(self.redis)
        self.serve_batch = StepPipeline(self.serve_redis)
        self.prefix = gw.settings.redis_prefix
        self.key_callbacks: list[Callable[[str], None]] = []
        channels = [c.channel for c in self.drain.caches.values()]
        self.listener = Listener(self.redis, channels, {redis_keys.api_key_revocations(self.prefix): self._revoked})
        self.listener.on_notice = self._on_notice
        self.near = NearCache()
        self.listener.on_written = self._on_written
        self.listener.on_subscribed = self.near.set_enabled
        self._kind_of = {c.channel: k for k, c in self.drain.caches.items()}
        self._admit = self.redis.register_script(redis_keys.lua_source("pending_admit"))
        self._breaker_memo: tuple[float, bool] = (-1.0, False)
        self._tasks: set[asyncio.Future[Any]] = set()
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self._started = False
        self._admissions = asyncio.Semaphore(MISS_ADMISSIONS)
        self._master_check: asyncio.Task[bool] | None = None
        self._breaker_read: asyncio.Future[bool] | None = None
        # kind -> until when (clock.time()) no refresh ahead is started: misses were pending at the last try.
        self._ahead_held: dict[str, float] = {}

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> AsyncReader:
        if not self._started:
            self._started = True
            await self.listener.start()
        return self

    def _revoked(self, key_id: str) -> None:
        for cb in self.key_callbacks:
            cb(key_id)

    # ---- the read ---------------------------------------------------------------------------------
    def read_keys(self, kind: str, symbols: Sequence[str]) -> list[str]:
        """Keys of the cache MGET for these symbols (the serve path pipelines it with the rate check)."""
        return self.drain.caches[kind].read_keys(list(dict.fromkeys(symbols)))

    async def master_checked(self) -> None:
        """The symbol master's version check, when due, done in a worker thread (it reads Redis, and a reload
        is blocking work) before this request looks symbols up on the loop; one check at a time for all the
        requests that find it due."""
        master = self.drain.symbols
        if master is None or not master.due():
            return
        task = self._master_check
        if task is None or task.done():
            task = self._master_check = asyncio.get_running_loop().create_task(blocking(master.loaded))
        await asyncio.shield(task)

    def near_hits(self, kind: str, symbols: Sequence[str]) -> dict[str, SymbolResult] | None:
        """The answers of a read whose every symbol has a fresh copy in this process's near cache (no Redis
        round trip), or None. Starts refresh ahead of copies near their end as a Redis read would."""
        got = self.near_read(kind, symbols, self.drain.clock.time())
        return None if got is None else got[0]

    def near_read(self, kind: str, symbols: Sequence[str], now: float) -> tuple[dict[str, SymbolResult], float] | None:
        """`near_hits` at `now` (the clock's time), and until when the same read would give the same copies and
        start nothing: the first moment a copy runs out or its refresh ahead falls due (a read's answer may be
        kept that long, its ages aside, while the near cache does not change)."""
        svc = self.drain
        if kind == "info" and svc.settings.paper:
            return None
        near = self.near
        if not near.enabled:
            return None
        results: dict[str, SymbolResult] = {}
        ahead: list[tuple[str, CacheEntry]] = []
        held = self._ahead_held.get(kind, 0.0)
        lead = near.lead_s(kind, svc.caches[kind].ttl_s)
        ahead_s = 0.0 if now < held else lead
        until = float("inf")
        for s in symbols:
            if s in results:
                continue
            e = near.get(kind, s, now)
            if e is None:
                return None
            results[s] = from_entry(e)
            if e.fresh_until < until:
                until = e.fresh_until
            if "error" in e.value:
                continue
            if e.fresh_until - now < ahead_s:
                if near.ahead_due(kind, s, e.stored_at):
                    ahead.append((s, e))
            else:  # its refresh ahead falls due later: at its lead before the end, once no longer held back
                due = max(e.fresh_until - lead, held)
                if due < until:
                    until = due
        if ahead:
            self._spawn(self._refresh_ahead(kind, ahead))
        return results, until

    async def get(self, kind: str, symbols: Sequence[str], deadline_s: float | None = None, refresh: bool = False,
                  *, raw: list[Any] | None = None, caller: str | None = None,
                  generation: int | None = None) -> dict[str, SymbolResult]:
        """Every requested symbol's answer, in order. `caller` (an API key's principal id; None for the
        operator's own callers) is held to the cap on new pending symbols per second. Raises
        admission.AdmissionRefused, with every symbol's answer, when some misses were not queued. `raw`: the
        caller's MGET of `read_keys` (pipelined with its rate check); `generation`: the near cache's generation
        of `kind` taken before that read."""
        svc = self.drain
        settings = svc.settings
        wanted = list(dict.fromkeys(symbols))
        if kind == "info" and settings.paper:
            return {s: SymbolResult("error", reason=PAPER_NO_INFO) for s in wanted}
        await self.start()
        if raw is None and not refresh:
            hits = self.near_hits(kind, wanted)
            if hits is not None:
                return hits
        cache = svc.caches[kind]
        clock = svc.clock
        start = clock.monotonic()
        deadline = start + (settings.request_deadline_s if deadline_s is None else deadline_s)
        if raw is None:
            generation = self.near.generation(kind)
            (raw,) = _replies(await self.batch.run(("MGET", *cache.read_keys(wanted))))
        elif generation is None:
            generation = -1  # read at an unknown moment: not kept in the near cache
        entries = cache.entries(wanted, raw)
        self.near.put(kind, entries, generation)
        results: dict[str, SymbolResult] = {}
        need: list[str] = []
        ahead: list[tuple[str, CacheEntry]] = []
        now = clock.time()
        ahead_s = self._ahead_lead(kind, cache.ttl_s, now)
        for s in wanted:
            e = entries.get(s)
            if e is not None and e.fresh and not refresh:
                results[s] = from_entry(e)
                if "error" not in e.value and e.fresh_until - now < ahead_s \
                        and self.near.ahead_due(kind, s, e.stored_at):
                    ahead.append((s, e))
            else:
                need.append(s)
        if ahead:
            self._spawn(self._refresh_ahead(kind, ahead))
        if not need:
            return results
        if svc.symbols is not None:
            # Not in the symbol master: answered at once, never pending, never a KIS call (its snapshot is in
            # memory; its version check reads Redis now and then: in a worker thread, one for all requests).
            await self.master_checked()
            master = svc.symbols
            unknown = set(await blocking(master.unknown, kind, need) if master.due() else master.unknown(kind, need))
            for s in unknown:
                results[s] = SymbolResult("error", reason=UNKNOWN)
            need = [s for s in need if s not in unknown]
            if not need:
                return {s: results[s] for s in wanted}
        self.gw.metrics.inc("read_waits_total", kind=kind)  # a request that could not answer from the cache
        if await self._refusing():
            for s in need:
                results[s] = unavailable(entries.get(s), CIRCUIT_OPEN)
            return {s: results[s] for s in wanted}

        # The drain is asked for now, before the admission rather than after it: under a storm every request's
        # steps take their turn on the loop, so the admission's answer comes back behind the steps of all the
        # requests that arrived with it (measured: 150 ms from 200 requests sent at once to the first drain
        # asked for). The queue's dispatch takes longer than the admission script; a drain that still found
        # nothing waits its collect window, and asks again when it ends with symbols pending.
        await self._request_drain(kind, svc.slot())
        written_after = clock.time() if refresh else None
        wait_s = deadline - start
        # At most MISS_ADMISSIONS admissions at once: a burst of a thousand misses (several Redis round trips
        # each) would otherwise make every turn of the event loop run a thousand steps, and a cache hit arriving
        # meanwhile waits for each of its own turns behind them.
        async with self._admissions:
            if refresh:
                adm = await self._admit_now(kind, need, caller, wait_s)
            else:
                written, adm = await self._admit_missing(kind, need, caller, wait_s)
                for s, e in written.items():
                    results[s] = from_entry(e)  # written since the first look: not fetched again
        not_admitted(results, entries, adm)
        if admission.waits_for_room(adm, results):
            adm = await self._room_for(kind, adm, caller, deadline, results)
            not_admitted(results, entries, adm)
        need = adm.accepted
        if not need:
            return answer_of(results, wanted, adm)
        await self._request_drain(kind, svc.slot())  # (a new slot since: its own drain)
        waiting = set(need)
        latest: dict[str, CacheEntry] = {}
        waiter = _Waiter(need)
        self.listener.register(cache.channel, waiter)

        def settle(found: dict[str, tuple[CacheEntry | None, str | None]]) -> None:
            for s, (e, reason) in found.items():
                if s not in waiting:
                    continue
                if e is not None:
                    latest[s] = e
                if e is not None and e.fresh and (written_after is None or e.stored_at >= written_after):
                    results[s] = from_entry(e)
                    waiting.discard(s)
                elif reason is not None:
                    results[s] = unavailable(e or entries.get(s), reason)
                    waiting.discard(s)

        self._keep(kind)  # asks for each next slot's drain and re-reads now and then, for every waiter at once
        try:
            # Registered before looking: a write between the look and the wait is not lost.
            settle(await self._read(kind, sorted(waiting)))
            while waiting:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(waiter.event.wait(), remaining)
                except TimeoutError:
                    break
                waiter.event.clear()
                found, waiter.delivered = waiter.delivered, {}
                settle(found)
        finally:
            self.listener.unregister(cache.channel, waiter)
        for s in waiting:
            e = entries.get(s) or latest.get(s)
            results[s] = still_waiting(e)
        return answer_of(results, wanted, adm)

    # ---- helpers ----------------------------------------------------------------------------------
    async def _room_for(self, kind: str, adm: admission.Admission, caller: str | None, deadline: float,
                        results: dict[str, SymbolResult]) -> admission.Admission:
        """`admission.waits_for_room`: ask again for room every ROOM_POLL_S until the deadline. Returns the
        admission of all the request's misses; a symbol written meanwhile is answered from its copy."""
        clock = self.drain.clock
        accepted, full, over = list(adm.accepted), list(adm.full), list(adm.over_rate)
        retry = adm.retry_after_s
        while full and not over and deadline - clock.monotonic() > admission.ROOM_POLL_S:
            await asyncio.sleep(admission.ROOM_POLL_S)
            async with self._admissions:
                written, again = await self._admit_missing(kind, full, caller, deadline - clock.monotonic())
            for s, e in written.items():
                results[s] = from_entry(e)
            accepted += again.accepted
            full, over, retry = list(again.full), list(again.over_rate), again.retry_after_s
            if again.accepted:
                self.gw.metrics.inc("admitted_after_wait_total", len(again.accepted), kind=kind)
        return admission.after_wait(adm, accepted, over, full, retry)

    def _drain_rate(self, kind: str) -> float:
        spec = self.drain.kinds[kind]
        return admission.drain_rate(self.drain.settings, spec.call_class, spec.batch)

    async def _admit_now(self, kind: str, need: list[str], caller: str | None, wait_s: float) -> admission.Admission:
        """Admit `need` (no freshness re-check: a refresh asks for a new copy whatever is stored)."""
        known, unknown = admission.split_known(kind, need)
        if not known:
            return admission.Admission(unknown=unknown)
        pend = self.drain.pending[kind]
        keys, args = admission.admit_call(self.drain.settings, pend, known, caller=caller, wait_s=wait_s)
        out = await self.batch.script(self._admit, keys, args)
        return admission.outcome(known, unknown, pend.admit_result(known, out), self._drain_rate(kind))

    async def _admit_missing(self, kind: str, need: list[str], caller: str | None,
                             wait_s: float) -> tuple[dict[str, CacheEntry], admission.Admission]:
        """Admit those of `need` that still have no fresh copy, atomically with that check (the admission script
        skips a symbol whose fresh key exists): under a storm many requests run between a miss and its
        admission, and a symbol written in between would otherwise be fetched twice. Returns the symbols found
        fresh instead (read once more), and what was admitted."""
        known, unknown = admission.split_known(kind, need)
        if not known:
            return {}, admission.Admission(unknown=unknown)
        cache = self.drain.caches[kind]
        pend = self.drain.pending[kind]
        found: dict[str, CacheEntry] = {}
        status: dict[str, int] = {}
        size = 0
        todo = known
        for check in (True, True, False):  # a copy that ran out between the check and the read: admit it again
            keys, args = admission.admit_call(self.drain.settings, pend, todo, caller=caller, wait_s=wait_s,
                                              check_fresh=check)
            got = pend.admit_result(todo, await self.batch.script(self._admit, keys, args))
            status.update(got.status)
            size = got.size
            written = [s for s in todo if got.status[s] == FRESH]
            if not written:
                break
            (raw,) = _replies(await self.batch.run(("MGET", *cache.read_keys(written))))
            read = cache.entries(written, raw)
            found.update((s, e) for s, e in read.items() if e.fresh)
            todo = [s for s in written if s not in found]
            if not todo:
                break
        missing = [s for s in known if s not in found]
        result = AdmitResult(size, {s: status[s] for s in missing})
        return found, admission.outcome(missing, unknown, result, self._drain_rate(kind))

    async def _read(self, kind: str, order: list[str]) -> dict[str, tuple[CacheEntry | None, str | None]]:
        """Entries and recorded failure reasons of these symbols, in one pipeline."""
        cache = self.drain.caches[kind]
        raw, reasons = _replies(await self.batch.run(("MGET", *cache.read_keys(order)),
                                                     ("MGET", *self.drain.pending[kind].failure_keys(order))))
        found = cache.entries(order, raw)
        return {s: (found.get(s), None if r is None else _text(r)) for s, r in zip(order, reasons, strict=True)}

    def _on_written(self, channel: str, symbols: list[str]) -> None:
        kind = self._kind_of.get(channel)
        if kind is not None:
            self.near.written(kind, symbols, self.drain.clock.time())

    def _on_notice(self, channel: str, symbols: list[str], waiters: set[_Waiter]) -> None:
        """Symbols were written (or failed): read them once for every waiter of this process."""
        kind = self._kind_of.get(channel)
        if kind is not None:
            self._spawn(self._deliver(kind, symbols, waiters))

    async def _deliver(self, kind: str, symbols: list[str], waiters: set[_Waiter]) -> None:
        generation = self.near.generation(kind)
        try:
            found = await self._read(kind, symbols)
        except redis.RedisError as exc:  # the waiters look for themselves at their next slice
            log.warning("reading notified %s symbols failed: %s", kind, type(exc).__name__)
            return
        self.near.put(kind, {s: e for s, (e, _) in found.items() if e is not None}, generation)
        # Only what can settle a symbol wakes its waiters: a fresh copy or a failure's reason. While KIS is slow
        # the keeper's look finds neither, and handing that to every waiter woke a thousand requests every
        # WAIT_SLICE_S for nothing (a 30-50 ms step of the event loop, with cache hits waiting behind it).
        news = {s: v for s, v in found.items() if v[1] is not None or (v[0] is not None and v[0].fresh)}
        if news:
            for w in waiters:
                w.deliver(news)

    def _keep(self, kind: str) -> None:
        """Start the kind's keeper unless it runs."""
        task = self._keepers.get(kind)
        if task is None or task.done():
            self._keepers[kind] = asyncio.get_running_loop().create_task(self._keeper(kind), name=f"keeper-{kind}")

    async def _keeper(self, kind: str) -> None:
        """While requests of this process wait for `kind`: at each drain slot's start, ask for that slot's drain
        (a drain that finished just before their symbols were queued will not come back for them), and every
        WAIT_SLICE_S read every waited-for symbol in one pipeline and hand it to its waiters (a notice lost to a
        reconnect must not cost a caller the value). One task for all of them: each of a thousand waiters once
        woke for this itself, every quarter second, and together they held the event loop from cache hits."""
        svc = self.drain
        clock = svc.clock
        channel = svc.caches[kind].channel
        slot, looked_at = svc.slot(), clock.monotonic()
        try:
            while True:
                next_look = looked_at + WAIT_SLICE_S - clock.monotonic()
                await asyncio.sleep(max(0.001, min(svc.until_next_slot() + 0.005, next_look)))
                by_symbol = self.listener.waiters_of(channel)
                if not by_symbol:
                    return  # no await since the look: a waiter registering now starts a new keeper
                try:
                    if svc.slot() != slot:
                        slot = svc.slot()
                        await self._request_drain(kind, slot)
                    if clock.monotonic() - looked_at >= WAIT_SLICE_S:
                        looked_at = clock.monotonic()
                        by_symbol = self.listener.waiters_of(channel)
                        waiters = {w for ws in by_symbol.values() for w in ws}
                        if waiters:
                            await self._deliver(kind, sorted(by_symbol), waiters)
                except (redis.RedisError, OSError) as exc:  # the waiters keep their deadlines; next turn tries again
                    log.warning("keeping %s waiters: %s", kind, type(exc).__name__)
        finally:
            if self._keepers.get(kind) is asyncio.current_task():
                del self._keepers[kind]

    async def _refusing(self) -> bool:
        at, value = self._breaker_memo
        now = self.drain.clock.monotonic()
        if now - at < BREAKER_MEMO_S:
            return value
        # One read of the breaker's store at a time for every request that finds the memo old (a thousand misses
        # at once would otherwise queue a thousand reads for the worker threads, ahead of everyone else's work).
        task = self._breaker_read
        if task is None or task.done():
            task = self._breaker_read = submit(self.gw.breaker.refusing)
            task.add_done_callback(functools.partial(self._breaker_read_done, now))
        if at >= 0 and (not value or now - at < BREAKER_STALE_S):
            return value  # the read runs meanwhile; every KIS call still passes the breaker itself (the gate)
        return await asyncio.shield(task)

    def _breaker_read_done(self, at: float, read: asyncio.Future[bool]) -> None:
        """Keep what a read found (before any awaiting request resumes); a failure is logged."""
        if not read.cancelled() and read.exception() is None:
            self._breaker_memo = (at, read.result())
        self._task_done(read)

    async def _request_drain(self, kind: str, slot: int) -> None:
        # Sent beside the wait, not before it: a queue slow to answer (an RPC of up to its timeout) must not eat
        # the caller's deadline; the waiter wakes on the cache write whoever asked for the drain. Handed to the
        # worker thread now, not from a task of its own: a task starts after every step already in the loop's
        # queue, and under a storm the first miss's drain request waited 55-60 ms for the other requests' steps.
        if self.drain.claim_request(kind, slot):
            sent = submit(self.drain.send_request, kind, slot)
            self._tasks.add(sent)
            sent.add_done_callback(self._task_done)

    def _ahead_lead(self, kind: str, ttl_s: float, now: float) -> float:
        """How long before its end a copy read now starts its refresh ahead; 0 (none) while one is held back."""
        if now < self._ahead_held.get(kind, 0.0):
            return 0.0
        return self.near.lead_s(kind, ttl_s)

    async def _refresh_ahead(self, kind: str, ahead: list[tuple[str, CacheEntry]]) -> None:
        """Mark pending, once per stored copy, the symbols whose fresh copy is about to run out."""
        try:
            room = self.drain.kinds[kind].batch - len(ahead)
            if await self.redis.zcard(redis_keys.pending_set(self.prefix, kind)) > max(0, room):
                # Misses come first: while more symbols are pending than the next batch has room for beside these
                # (a storm of first reads, a backlog), a refresh ahead would take a call, or a batch's room, from
                # a caller who has no copy at all; this copy's readers are answered fresh until it runs out. A few
                # pending symbols (other hot symbols' refreshes, a miss or two) share the next batch with these.
                # Not asked for: a read after a short hold may try again (the hold spares every hit meanwhile a
                # look at the pending set).
                self._ahead_held[kind] = self.drain.clock.time() + AHEAD_BACKLOG_HOLD_S
                for s, _ in ahead:
                    self.near.ahead_failed(kind, s)
                return
            now = self.drain.clock.time()
            pipe = self.redis.pipeline(transaction=False)
            for s, e in ahead:
                ms = max(1, int((e.fresh_until - now) * 1000) + 50)
                pipe.set(redis_keys.cache_refresh_marker(self.prefix, kind, s), repr(e.stored_at), nx=True, px=ms)
            marked = await pipe.execute()
            won = [s for (s, _), ok in zip(ahead, marked, strict=True) if ok]
            if not won:
                return
            # Admitted like a reader's miss, waited for until the copy runs out (the kind's cap holds; the
            # gateway's own work has no per-caller cap): a refused symbol is a plain miss later.
            pend = self.drain.pending[kind]
            until = max(e.fresh_until for s, e in ahead if s in set(won)) - now
            keys, args = admission.admit_call(self.drain.settings, pend, won, caller=None, wait_s=until)
            await self.batch.script(self._admit, keys, args)
            self.near.ahead_asked(kind, won, now)
            self.gw.metrics.inc("refresh_ahead_total", len(won), kind=kind)
            slot = self.drain.slot()
            if not self.drain.claim_request(kind, slot):
                # This slot's drain was asked for already and may have finished before these symbols were
                # queued: ask for the next slot's (a drain that finds nothing pending makes no KIS call).
                await asyncio.sleep(self.drain.until_next_slot() + 0.005)
                slot = self.drain.slot()
                if not self.drain.claim_request(kind, slot):
                    return
            await blocking(self.drain.send_request, kind, slot)
        except redis.RedisError as exc:
            log.warning("refresh ahead of %s skipped: %s", kind, type(exc).__name__)
            for s, _ in ahead:
                self.near.ahead_failed(kind, s)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        """A background step ended: a failure (a drain request that could not be sent, a refresh ahead) is
        logged, never lost unseen; the waiters it concerned still look for themselves at each wait slice."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background step of the reader failed: %s: %s", type(exc).__name__, exc)


_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, AsyncReader]] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


_last: tuple[Any, Any, AsyncReader] | None = None  # (loop, gateway, reader) of the last call: the usual answer


def reader_for(gw: GatewayParts) -> AsyncReader:
    """The reader of this gateway on the running event loop (Redis connections belong to one loop)."""
    global _last
    last = _last
    # The last reader's loop running in this thread now is the running loop (a thread runs one loop at a time):
    # asyncio.get_running_loop() costs a system call (getpid, its fork check) on every request.
    if last is not None and last[1] is gw and getattr(last[0], "_thread_id", None) == threading.get_ident():
        return last[2]
    loop = asyncio.get_running_loop()
    reader = _reader_for(loop, gw)
    _last = (loop, gw, reader)
    return reader


def _reader_for(loop: asyncio.AbstractEventLoop, gw: GatewayParts) -> AsyncReader:
    with _readers_lock:
        by_gw = _readers.setdefault(loop, {})
        reader = by_gw.get(id(gw))
        if reader is None or reader.gw is not gw:
            reader = by_gw[id(gw)] = AsyncReader(gw)
        return reader
