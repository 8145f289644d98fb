"""The async read path's in-process near cache: fresh copies this process has already read from Redis, kept
only while they are fresh, so a cache hit costs no Redis round trip.

Coherence:
- an entry is served only before its own `fresh_until` (the same instant its Redis fresh copy expires): the
  near cache never makes an answer older than Redis's fresh copy could be;
- every write of a symbol is announced on the kind's pub/sub channel (`DataCache.put_many`), and the process's
  one listener drops the symbol here on that notice: the next read goes to Redis and finds the new copy;
- a copy read from Redis before a notice arrived is not stored after it (a per-kind generation counter, taken
  before the read, must be unchanged at the store), so a notice cannot be undone by a slow reader;
- while the listener is not subscribed (start-up, a dropped connection) nothing is served from here and the
  cache is emptied: notices may have been lost meanwhile.

One instance belongs to one event loop's reader (no locking: everything runs on that loop).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.market.cache import CacheEntry

# Entries kept per process (a quote's copy is about 3 KB: 5,000 of them about 15 MB); the oldest inserted go
# first when full, and a copy past its freshness is dropped when next asked for.
NEAR_CACHE_MAX = 5_000

# Refresh ahead starts when a copy read has less than its lead left. Until this process has timed a refresh of
# the kind, the lead is AHEAD_MAX_SHARE of the freshness window; then it is at least AHEAD_MIN_SHARE, and grows
# with how long this process's recent refreshes took to land (asked for -> written: the queue's dispatch, the
# drain's collect window, the rate limiter, KIS), AHEAD_SAFETY times the slowest of the last AHEAD_SAMPLES plus
# AHEAD_MARGIN_S, so the next copy is written before the old one runs out on a busy machine too; never more than
# AHEAD_MAX_SHARE of the window (each copy is refreshed once, so a symbol is fetched at most once per its copy's
# freshness window, and no more often than every (1 - max share) x window).
AHEAD_MIN_SHARE = 0.3
AHEAD_MAX_SHARE = 0.6
AHEAD_SAFETY = 1.5
AHEAD_MARGIN_S = 0.1
AHEAD_SAMPLES = 8


class NearCache:
    def __init__(self, max_entries: int = NEAR_CACHE_MAX) -> None:
        self._max = max_entries
        # (kind, symbol) -> (stored_at, fresh_until, value)
        self._entries: dict[tuple[str, str], tuple[float, float, dict[str, Any]]] = {}
        self._generation: dict[str, int] = {}
        self.enabled = False  # set while the listener is subscribed (notices can arrive)
        # (kind, symbol) -> stored_at of the copy whose refresh ahead this process already asked for.
        self._ahead: dict[tuple[str, str], float] = {}
        # (kind, symbol) -> when this process asked for its refresh ahead (until its next copy is announced).
        self._asked: dict[tuple[str, str], float] = {}
        # kind -> how long the last refreshes took to land, seconds (newest last).
        self._took: dict[str, list[float]] = {}
        self._slowest: dict[str, float] = {}  # kind -> the slowest of those
        # Moves on every change of what is kept (a copy stored, dropped or past its freshness, a notice, the
        # listener's state, a refresh ahead to try again): an answer made from this cache stays right while it
        # has not moved.
        self.version = 0

    # ---- reads ------------------------------------------------------------------------------------
    def generation(self, kind: str) -> int:
        """Take before reading Redis; pass to `put` so a notice in between keeps its effect."""
        return self._generation.get(kind, 0)

    def get(self, kind: str, symbol: str, now: float) -> CacheEntry | None:
        """The fresh entry of `symbol`, or None (absent, no longer fresh, or the cache is off)."""
        if not self.enabled:
            return None
        rec = self._entries.get((kind, symbol))
        if rec is None:
            return None
        stored_at, fresh_until, value = rec
        if now >= fresh_until:
            del self._entries[(kind, symbol)]
            self.version += 1
            return None
        return CacheEntry(value, stored_at, True, max(0.0, now - stored_at), fresh_until)

    # ---- writes -----------------------------------------------------------------------------------
    def put(self, kind: str, entries: dict[str, CacheEntry], generation: int) -> None:
        """Keep the fresh ones of `entries` (read from Redis when the kind's generation was `generation`)."""
        if not self.enabled or generation != self._generation.get(kind, 0):
            return
        store = self._entries
        for s, e in entries.items():
            if not e.fresh:
                continue
            key = (kind, s)
            old = store.get(key)
            if old is not None and old[0] >= e.stored_at:
                continue
            store[key] = (e.stored_at, e.fresh_until, e.value)
            self.version += 1
        while len(store) > self._max:
            del store[next(iter(store))]

    def written(self, kind: str, symbols: Iterable[str], now: float | None = None) -> None:
        """A notice: these symbols were written (or failed) in Redis; forget this process's copies. `now` (the
        clock's time) times the refreshes ahead this process asked for."""
        self._generation[kind] = self._generation.get(kind, 0) + 1
        self.version += 1
        store = self._entries
        asked = self._asked
        for s in symbols:
            store.pop((kind, s), None)
            if asked:
                at = asked.pop((kind, s), None)
                if at is not None and now is not None:
                    took = self._took.setdefault(kind, [])
                    took.append(max(0.0, now - at))
                    del took[:-AHEAD_SAMPLES]
                    self._slowest[kind] = max(took)

    def set_enabled(self, on: bool) -> None:
        """The listener is (re)subscribed, or lost its connection: in both cases start empty."""
        self.enabled = on
        self.version += 1
        self._entries.clear()
        for kind in list(self._generation):
            self._generation[kind] += 1

    def __len__(self) -> int:
        return len(self._entries)

    # ---- refresh ahead, once per stored copy and process ---------------------------------------------
    def lead_s(self, kind: str, ttl_s: float) -> float:
        """How long before a copy runs out its refresh ahead starts (see AHEAD_MIN_SHARE)."""
        slowest = self._slowest.get(kind)
        if slowest is None:  # nothing measured yet: the earliest start, until the first refresh is timed
            return ttl_s * AHEAD_MAX_SHARE
        return max(ttl_s * AHEAD_MIN_SHARE, min(ttl_s * AHEAD_MAX_SHARE, AHEAD_SAFETY * slowest + AHEAD_MARGIN_S))

    def ahead_asked(self, kind: str, symbols: Iterable[str], now: float) -> None:
        """This process asked for these symbols' refresh ahead at `now` (their next write notice times it)."""
        asked = self._asked
        if len(asked) >= self._max:
            asked.clear()
        for s in symbols:
            asked[(kind, s)] = now

    def ahead_due(self, kind: str, symbol: str, stored_at: float) -> bool:
        """True the first time this process sees this copy near its end (it asks for the refresh once)."""
        key = (kind, symbol)
        if self._ahead.get(key) == stored_at:
            return False
        if len(self._ahead) >= self._max:
            self._ahead.clear()
        self._ahead[key] = stored_at
        return True

    def ahead_failed(self, kind: str, symbol: str) -> None:
        """The refresh ahead could not be asked for (Redis error, or held back): the next reader may try again
        (a change: an answer kept from this cache would not try)."""
        self.version += 1
        self._ahead.pop((kind, symbol), None)
        self._asked.pop((kind, symbol), None)
