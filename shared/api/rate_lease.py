"""Leases on the inbound rate limit: the per-key limit stays shared by every instance (the same GCRA script and
Redis key as `access.InboundLimiter`), but a busy key does not cost a Redis round trip per request.

An instance takes n of a key's requests at once from the shared limit (one GCRA step of n intervals) and
spends them locally for at most LEASE_S; what is left when the lease ends is given up. The lease size adapts
to the key's demand in this instance: it starts at 1, doubles while leases run out before they end, and falls
back to what the last lease spent; and it is at least the requests of the key waiting in line for it (a burst
of 200 requests from one key had waited for eight leases in a row, 1, 2, 4... 128, about 100 ms on a busy
machine). Never above LEASE_S x the key's rate nor LEASE_MAX. A key near its limit (a lease of n refused) is
asked for one request, exactly as without leases.

The approximation, and its bound:
- a key is never admitted above its rate: every admitted request was taken from the shared limit before it
  was answered;
- a key may be refused early by at most the requests leased but not yet spent by its instances: per instance
  at most min(LEASE_MAX, LEASE_S x rate), i.e. one tenth of a second's worth of its rate; and the unspent
  part of a lease that ends is lost to the key (charged, never used), at most that much per lease.
A key whose rate is below 1 / LEASE_S (10 requests/s) always leases one request: exact, one check each.
A refused request's answer names how long the key has nothing left (GCRA's wait): until then this instance
refuses the key's requests itself, without a round trip (exact too: other instances can only take more).

A busy key's lease is renewed before it runs out (`renewal_due`: RENEW_MIN_SIZE requests spent from it and
RENEW_SHARE of its requests or of its time left), in the background: enough requests for the key's demand so far
over a whole lease, the requests left included, and never more than a lease holds (so the bounds above hold).
So the key's requests do not stop for a round trip at every lease (measured at a few thousand requests a second
from one key: about one request in five had).

One instance per event loop's reader: no locking (everything runs on that loop).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable

LEASE_S = 0.1
LEASE_MAX = 256
# Renewed with half left: measured at 4,000 requests a second from one key, with a quarter left about 2 % of its
# requests found the lease spent before the renewal came back (each then waited for a round trip); with half, 0.1 %.
RENEW_SHARE = 0.5
RENEW_MIN_SIZE = 8  # fewer spent per lease: a key slow enough that a round trip per lease costs little


def _cap(rate_per_s: int) -> int:
    """The most requests one lease of a key holds."""
    return max(1, min(LEASE_MAX, int(rate_per_s * LEASE_S)))


class _Lease:
    __slots__ = ("tokens", "until", "size", "used")

    def __init__(self, tokens: int, until: float, size: int, used: int = 1) -> None:
        self.tokens = tokens
        self.until = until
        self.size = size
        self.used = used


class RateLeases:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self._clock = clock
        self._max = max_keys
        self._leases: dict[str, _Lease] = {}
        self._asking: set[str] = set()  # keys with a lease request in flight
        self._queued: dict[str, collections.deque[asyncio.Future[bool]]] = {}  # key -> requests in line
        self._refused: dict[str, float] = {}  # key -> until when the shared limit refuses it (its answer)

    def take(self, who: str) -> bool:
        """Spend one request of this key's live lease; False when it has none left (ask for a lease)."""
        lease = self._leases.get(who)
        if lease is None or lease.tokens <= 0 or self._clock() >= lease.until:
            return False
        lease.tokens -= 1
        lease.used += 1
        return True

    def size(self, who: str, rate_per_s: int) -> int:
        """How many requests the next lease of this key asks for (see the module's rule): the asking request's
        and those waiting in line for it at least."""
        cap = _cap(rate_per_s)
        waiting = 1 + sum(1 for turn in self._queued.get(who, ()) if not turn.done())
        lease = self._leases.get(who)
        if lease is None:
            return min(cap, waiting)
        if lease.tokens <= 0 and self._clock() < lease.until:
            return min(cap, max(waiting, lease.size * 2))  # spent before it ended: demand is higher
        return min(cap, max(waiting, lease.used))

    def renewal_due(self, who: str) -> bool:
        """True when this key's next lease is to be asked for now, in the background: its live lease is busy
        (RENEW_MIN_SIZE spent from it) and near its end (RENEW_SHARE of its requests or of its time left), and no
        request of the key is asking."""
        lease = self._leases.get(who)
        if lease is None or lease.used < RENEW_MIN_SIZE or who in self._asking:
            return False
        left_s = lease.until - self._clock()
        return left_s > 0 and (lease.tokens <= lease.size * RENEW_SHARE or left_s <= LEASE_S * RENEW_SHARE)

    def renewal_size(self, who: str, rate_per_s: int) -> int:
        """How many requests the renewal asks for: enough for the key's demand so far over a whole lease, the
        live lease's requests left included, never more than a lease holds."""
        lease = self._leases.get(who)
        if lease is None:
            return 0
        elapsed = max(LEASE_S - (lease.until - self._clock()), LEASE_S / 100)
        wanted = min(_cap(rate_per_s), math.ceil(lease.used * LEASE_S / elapsed))
        return max(0, wanted - lease.tokens)

    def renewed(self, who: str, n: int) -> None:
        """n requests asked for ahead were taken: a new lease of them and the live lease's requests left."""
        now = self._clock()
        lease = self._leases.get(who)
        left = lease.tokens if lease is not None and now < lease.until else 0
        self._keep(who, _Lease(n + left, now + LEASE_S, n + left, used=0))

    def granted(self, who: str, n: int) -> None:
        """A lease of n was taken from the shared limit; one of them is the asking request's."""
        self._keep(who, _Lease(n - 1, self._clock() + LEASE_S, n))

    def _keep(self, who: str, lease: _Lease) -> None:
        if who not in self._leases and len(self._leases) >= self._max:
            now = self._clock()
            for k in [k for k, v in self._leases.items() if v.until <= now]:
                del self._leases[k]
            if len(self._leases) >= self._max:
                self._leases.clear()
        self._leases[who] = lease

    # ---- a refused key: refused here until the shared limit said it could be admitted again ----------
    def refused(self, who: str, wait_s: float) -> None:
        """The shared limit refused this key's request and named the wait (nothing is admitted before then,
        whatever other instances do: they can only take more)."""
        if wait_s > 0:
            if len(self._refused) >= self._max:
                self._refused.clear()
            self._refused[who] = self._clock() + wait_s

    def refused_for(self, who: str) -> float:
        """Seconds this key is still refused for (0: ask the shared limit)."""
        until = self._refused.get(who)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._refused[who]
            return 0.0
        return left

    # ---- one lease request in flight per key: the others wait for it instead of asking too ----------
    # They wait in turn: when the lease comes, as many of them are woken as it has requests for (each with one
    # of them spent), and the next one is woken to ask for the following lease. Waking them all at every lease
    # would run each of a thousand waiting requests once per lease (a dozen leases as sizes double): thousands
    # of steps of the event loop that a cache hit arriving meanwhile waits behind.
    def asking(self, who: str) -> bool:
        """A lease request of this key is in flight."""
        return who in self._asking

    def wait_turn(self, who: str) -> asyncio.Future[bool]:
        """A future, in line behind the lease request in flight for this key: True when one request of the
        lease it brought was spent for the caller, False when the caller is to ask (or the key is refused)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(who, collections.deque()).append(fut)
        return fut

    def begin(self, who: str) -> None:
        self._asking.add(who)

    def end(self, who: str) -> None:
        """The key's lease request is over (granted, refused or failed): its waiters are woken in turn."""
        if who not in self._asking:
            return
        self._asking.discard(who)
        line = self._queued.get(who)
        if not line:
            return
        refused = self.refused_for(who) > 0
        while line:
            turn = line.popleft()
            if turn.done():  # its request was cancelled meanwhile
                continue
            if refused:
                turn.set_result(False)  # each answers 429 itself, without a round trip
            elif self.take(who):
                turn.set_result(True)
            else:
                turn.set_result(False)  # asks for the next lease; the rest wait for it
                break
        if not line:
            del self._queued[who]
