"""Redis cache of market data per kind: a fresh copy (short TTL), a last-known copy for stale answers, and
a pub/sub notice of every write so waiting requests wake at once instead of polling.

Reads and writes of many symbols take one round trip each. A value is stored as compact JSON
`{"t": stored_at, "u": fresh_until, "v": value}`. When market hours are known, a value whose freshness
would end while the market is closed stays fresh until the next open: nights and weekends cost no KIS calls.

All waiting threads of a process share one subscriber connection (`_UpdateHub`), so hundreds of waiters hold
no Redis connection while they wait.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol, cast

import orjson
from redis import Redis, RedisError

from shared.clock import SYSTEM_CLOCK, Clock
from shared.market import redis_keys

log = logging.getLogger(__name__)


class MarketHours(Protocol):
    def is_open(self, ts: float) -> bool: ...
    def next_open(self, ts: float) -> float: ...


class CacheEntry(NamedTuple):
    """A copy as read (a named tuple: the near cache makes one per symbol of every cache hit)."""

    value: dict[str, Any]
    stored_at: float
    fresh: bool
    age_s: float
    fresh_until: float = 0.0


class DataCache:
    """Cache of one data kind ("quote", "index", "daily", "info"). Thread-safe."""

    def __init__(self, redis: Redis, kind: str, *, prefix: str, ttl_s: float, last_known_ttl_s: int,
                 market: MarketHours | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        if ttl_s <= 0 or last_known_ttl_s <= 0:
            raise ValueError("ttl_s and last_known_ttl_s must be positive")
        self.kind = kind
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._last_known_ttl_s = last_known_ttl_s
        self._market = market
        self._clock = clock
        self.channel = redis_keys.cache_channel(prefix, kind)

    # ---- reads and writes ----------------------------------------------------------------------
    def get_many(self, symbols: Iterable[str]) -> dict[str, CacheEntry]:
        """Entries of the symbols found, fresh or last-known, in one MGET."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return {}
        raw = cast(list[Any], self._redis.mget(self.read_keys(wanted)))
        return self.entries(wanted, raw)

    def read_keys(self, wanted: list[str]) -> list[str]:
        """The keys one MGET reads for `wanted` (fresh copies, then last-known copies); see `entries`."""
        return [self._fresh_key(s) for s in wanted] + [self._last_key(s) for s in wanted]

    def entries(self, wanted: list[str], raw: list[Any]) -> dict[str, CacheEntry]:
        """Entries from the answer of an MGET of `read_keys(wanted)` (shared with the async reader)."""
        now = self._clock.time()
        out: dict[str, CacheEntry] = {}
        for i, symbol in enumerate(wanted):
            fresh_rec, last_rec = _decode(raw[i]), _decode(raw[len(wanted) + i])
            # Both copies come from one write; if they differ, the newer one wins.
            rec = fresh_rec if last_rec is None or (fresh_rec is not None and fresh_rec["t"] >= last_rec["t"]) \
                else last_rec
            if rec is None:
                continue
            fresh = rec is fresh_rec and now < rec["u"]
            out[symbol] = CacheEntry(rec["v"], rec["t"], fresh, max(0.0, now - rec["t"]), rec["u"])
        return out

    def put_many(self, values: Mapping[str, dict[str, Any]]) -> None:
        """Write fresh + last-known copies and announce the symbols, all in one pipeline."""
        if not values:
            return
        now = self._clock.time()
        until = self.fresh_until(now)
        fresh_ms = min(int((until - now) * 1000), self._last_known_ttl_s * 1000)
        last_s = max(self._last_known_ttl_s, math.ceil(fresh_ms / 1000))
        pipe = self._redis.pipeline(transaction=False)
        for symbol, value in values.items():
            # stored_at unrounded: callers compare it with their own clock reading ("written after I asked").
            rec = json.dumps({"t": now, "u": until, "v": value},
                             separators=(",", ":"), ensure_ascii=False)
            if fresh_ms > 0:
                pipe.set(self._fresh_key(symbol), rec, px=fresh_ms)
            pipe.set(self._last_key(symbol), rec, ex=last_s)
        pipe.publish(self.channel, ",".join(values))
        pipe.execute()

    def fresh_until(self, stored_at: float) -> float:
        """When a value stored at `stored_at` stops being fresh: after the TTL, or, if the market is closed
        by then, at the next open (a closed market's last price does not change)."""
        until = stored_at + self._ttl_s
        if self._market is not None and not self._market.is_open(until):
            until = max(until, self._market.next_open(until))
        return until

    # ---- waiting for writes --------------------------------------------------------------------
    def notify(self, symbols: Iterable[str]) -> None:
        """Wake waiters on these symbols without writing (e.g. their fetch failed: they should look again)."""
        names = ",".join(symbols)
        if names:
            self._redis.publish(self.channel, names)

    def wait_for(self, symbols: Iterable[str], timeout_s: float, *, only_new: bool = False) -> set[str]:
        """Block until these symbols are written (or already fresh) or the timeout passes; returns the
        symbols that arrived. Woken by the process's shared subscriber, not by polling. With `only_new`,
        a value already in the cache does not count (a forced refresh waits for the next write)."""
        wanted = set(symbols)
        if not wanted:
            return set()
        stop = time.monotonic() + max(0.0, timeout_s)
        hub = _hub_for(self._redis)
        hub.subscribe(self.channel, timeout_s)
        waiter = _Waiter(wanted)
        hub.register(self.channel, waiter)
        try:
            # Registered before looking: a write between the caller's miss and now is not lost.
            if not only_new:
                waiter.arrived(self._present(wanted))
            if not waiter.complete():
                waiter.event.wait(max(0.0, stop - time.monotonic()))
        finally:
            hub.unregister(self.channel, waiter)
        got = waiter.done()
        missing = wanted - got
        if missing and not only_new:  # a notice lost to a reconnect must not cost the caller the value
            got |= self._present(missing)
        return got

    def waiters(self) -> int:
        """Requests of this process waiting on this kind right now (for /stats)."""
        return _hub_for(self._redis).waiting(self.channel)

    def _present(self, symbols: set[str]) -> set[str]:
        ordered = sorted(symbols)
        pipe = self._redis.pipeline(transaction=False)
        for s in ordered:
            pipe.exists(self._fresh_key(s))
        return {s for s, n in zip(ordered, pipe.execute(), strict=True) if n}

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    def _fresh_key(self, symbol: str) -> str:
        return redis_keys.cache_fresh(self._prefix, self.kind, symbol)

    def _last_key(self, symbol: str) -> str:
        return redis_keys.cache_last_known(self._prefix, self.kind, symbol)


def _decode(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        try:
            rec = orjson.loads(raw)
        except ValueError:  # what orjson refuses and the standard library wrote (NaN): read it the slow way
            rec = json.loads(raw)
        return {"t": float(rec["t"]), "u": float(rec["u"]), "v": rec["v"]}
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable cache record ignored")
        return None


class _Waiter:
    def __init__(self, wanted: set[str]) -> None:
        self.wanted = frozenset(wanted)
        self.event = threading.Event()
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def arrived(self, symbols: Iterable[str]) -> None:
        with self._lock:
            self._done.update(s for s in symbols if s in self.wanted)
            if len(self._done) == len(self.wanted):
                self.event.set()

    def complete(self) -> bool:
        return self.event.is_set()

    def done(self) -> set[str]:
        with self._lock:
            return set(self._done)


class _UpdateHub:
    """One subscriber connection per process and Redis server; a thread routes notices to waiters."""

    _POLL_S = 0.05  # how soon a new channel's SUBSCRIBE is sent; messages themselves arrive at once

    def __init__(self, redis: Redis) -> None:
        # A private pool: the hub outlives whichever client created it (a closed client would close our socket).
        pool = redis.connection_pool
        self._client = Redis(connection_pool=type(pool)(connection_class=pool.connection_class,
                                                        **pool.connection_kwargs))
        self._pubsub = self._client.pubsub()
        self._lock = threading.Lock()
        self._waiters: dict[str, dict[str, set[_Waiter]]] = {}
        self._confirmed: dict[str, threading.Event] = {}
        self._to_subscribe: list[str] = []
        self._thread = threading.Thread(target=self._run, name="cache-updates", daemon=True)
        self._thread.start()

    def subscribe(self, channel: str, timeout_s: float) -> bool:
        with self._lock:
            confirmed = self._confirmed.get(channel)
            if confirmed is None:
                confirmed = self._confirmed[channel] = threading.Event()
                self._to_subscribe.append(channel)
        return confirmed.wait(timeout_s)

    def register(self, channel: str, waiter: _Waiter) -> None:
        with self._lock:
            by_symbol = self._waiters.setdefault(channel, {})
            for s in waiter.wanted:
                by_symbol.setdefault(s, set()).add(waiter)

    def unregister(self, channel: str, waiter: _Waiter) -> None:
        with self._lock:
            by_symbol = self._waiters.get(channel, {})
            for s in waiter.wanted:
                ws = by_symbol.get(s)
                if ws is not None:
                    ws.discard(waiter)
                    if not ws:
                        del by_symbol[s]

    def waiting(self, channel: str) -> int:
        with self._lock:
            return len({w for ws in self._waiters.get(channel, {}).values() for w in ws})

    def _run(self) -> None:
        while True:
            try:
                with self._lock:
                    new, self._to_subscribe = self._to_subscribe, []
                if new:
                    try:
                        self._pubsub.subscribe(*new)
                    except RedisError:
                        with self._lock:
                            self._to_subscribe.extend(new)
                        raise
                msg = self._pubsub.get_message(timeout=self._POLL_S)
                if msg is not None:
                    self._handle(msg)
            except RedisError as exc:
                # The connection re-subscribes when it comes back; waiters re-check the cache at timeout.
                log.warning("cache update subscriber: %s; retrying", type(exc).__name__)
                time.sleep(0.5)
            except Exception:  # never let the one subscriber thread die
                log.exception("cache update subscriber failed; continuing")
                time.sleep(0.5)

    def _handle(self, msg: dict[str, Any]) -> None:
        channel = _str(msg.get("channel"))
        kind = _str(msg.get("type"))
        if kind == "subscribe":
            with self._lock:
                ev = self._confirmed.get(channel)
            if ev is not None:
                ev.set()
            return
        if kind != "message":
            return
        symbols = _str(msg.get("data")).split(",")
        with self._lock:
            by_symbol = self._waiters.get(channel, {})
            hit = {w for s in symbols for w in by_symbol.get(s, ())}
        for w in hit:
            w.arrived(symbols)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_HUBS: dict[tuple[Any, ...], _UpdateHub] = {}
_HUBS_LOCK = threading.Lock()


def _hub_for(redis: Redis) -> _UpdateHub:
    """The process's hub for this Redis server (a forked child gets its own)."""
    kw = redis.connection_pool.connection_kwargs
    key = (os.getpid(), kw.get("host"), kw.get("port"), kw.get("path"), kw.get("db"), kw.get("username"))
    with _HUBS_LOCK:
        hub = _HUBS.get(key)
        if hub is None:
            hub = _HUBS[key] = _UpdateHub(redis)
        return hub
