"""Deterministic prices: a function of (seed, symbol, time), with no state that depends on who asked first.

Daily closes are smooth value noise around the symbol's base level (two knot layers plus a daily term),
so any day is computed in O(1) and consecutive closes stay well inside the ±30% band. A day's open,
high, low and volume follow from that day's hashes. During the regular session (09:00-15:30 KST,
weekdays; holidays are not modelled) the price follows a bridge through two-minute knots that starts at
the open, touches the day's high and low once and ends at the close, so a finished day's intraday
high/low always equal its daily bar. Between knots the price is interpolated per second on the tick grid.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct
import threading
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from shared.sim.ticks import price_limits, round_to_tick
from shared.sim.universe import Instrument

KST = timezone(timedelta(hours=9))
OPEN_S = 9 * 3600
SESSION_S = 6 * 3600 + 1800  # 09:00-15:30
KNOT_S = 120
KNOTS = SESSION_S // KNOT_S  # intervals; knots 0..KNOTS
EPOCH = date(2001, 1, 1)  # a Monday: trading day 0
_NO_LIMITS = (10**12, 1)


def trading_index(day: date) -> int:
    """Weekday number since EPOCH; a weekend maps to the Friday before."""
    days = (day - EPOCH).days
    return days // 7 * 5 + min(days % 7, 4)


def trading_date(n: int) -> date:
    return EPOCH + timedelta(days=n // 5 * 7 + n % 5)


def session_position(epoch_s: float) -> tuple[int, int]:
    """(trading day shown, seconds into its session, SESSION_S once closed) at a wall-clock instant."""
    now = datetime.fromtimestamp(epoch_s, KST)
    seconds = now.hour * 3600 + now.minute * 60 + now.second
    if now.weekday() < 5 and seconds >= OPEN_S:
        return trading_index(now.date()), min(SESSION_S, seconds - OPEN_S)
    before = now.date() - timedelta(days=1) if now.weekday() < 5 else now.date()
    return trading_index(before), SESSION_S  # before the open: the last session, finished


@dataclass(frozen=True)
class Bar:
    day: date
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int  # traded value in won (indices: million won)
    prev_close: int


@dataclass(frozen=True)
class Quote:
    day: date
    price: int
    open: int
    high: int
    low: int
    prev_close: int
    volume: int
    value: int
    upper: int
    lower: int
    live: bool  # inside the session (the day's bar is still forming)


@dataclass(frozen=True)
class _Path:
    price: array[int]
    high: array[int]  # highest knot so far
    low: array[int]
    volume: array[float]  # fraction of the day's volume done at each knot


class PriceModel:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._paths: dict[tuple[str, int], _Path] = {}
        self._lock = threading.Lock()
        self._bar = lru_cache(maxsize=200_000)(self._bar_uncached)
        self._close = lru_cache(maxsize=400_000)(self._close_uncached)
        self._knot = lru_cache(maxsize=100_000)(self._knot_uncached)
        self._day_normals = lru_cache(maxsize=100_000)(self._day_normals_uncached)

    # ---- daily ------------------------------------------------------------------------------
    def close(self, inst: Instrument, n: int) -> int:
        return self._close(inst, n)

    def bar(self, inst: Instrument, n: int) -> Bar:
        return self._bar(inst, n)

    def _close_uncached(self, inst: Instrument, n: int) -> int:
        scale = 0.6 if inst.is_index else 1.0
        drift = 0.18 * self._knotted(inst.code, "slow", n, 120) + 0.05 * self._knotted(inst.code, "fast", n, 10)
        noise = 0.012 * self._day_normals(inst.code, n)[0]
        return self._round(inst, inst.base * math.exp(scale * (drift + noise)))

    def _bar_uncached(self, inst: Instrument, n: int) -> Bar:
        prev, close = self.close(inst, n - 1), self.close(inst, n)
        upper, lower = self.limits(inst, prev)
        wide = 0.5 if inst.is_index else 1.0
        _, gap, up, down, vol = self._day_normals(inst.code, n)
        opening = min(upper, max(lower, self._round(inst, prev * math.exp(0.006 * wide * gap))))
        high = self._round(inst, max(opening, close) * math.exp(0.012 * wide * abs(up)))
        low = self._round(inst, min(opening, close) * math.exp(-0.012 * wide * abs(down)))
        high = max(min(high, upper), opening, close)
        low = min(max(low, lower), opening, close)
        if inst.is_index:
            volume = int(inst.shares * math.exp(0.3 * vol))
            value = volume * 25 // 1000
        else:
            volume = max(1, int(inst.shares * 0.004 * math.exp(0.5 * vol)))
            value = volume * (opening + high + low + close) // 4
        return Bar(trading_date(n), opening, high, low, close, volume, value, prev)

    def limits(self, inst: Instrument, prev_close: int) -> tuple[int, int]:
        return _NO_LIMITS if inst.is_index else price_limits(prev_close)

    # ---- intraday -----------------------------------------------------------------------------
    def quote(self, inst: Instrument, epoch_s: float) -> Quote:
        n, elapsed = session_position(epoch_s)
        bar = self.bar(inst, n)
        upper, lower = self.limits(inst, bar.prev_close)
        if elapsed >= SESSION_S:
            return Quote(bar.day, bar.close, bar.open, bar.high, bar.low, bar.prev_close, bar.volume, bar.value,
                         upper, lower, live=False)
        path = self._path(inst, n, bar)
        k, within = divmod(elapsed, KNOT_S)
        f = within / KNOT_S
        p0, p1 = path.price[k], path.price[k + 1]
        price = min(bar.high, max(bar.low, self._round(inst, p0 + (p1 - p0) * f)))
        high, low = max(path.high[k], price), min(path.low[k], price)
        done = path.volume[k] + (path.volume[k + 1] - path.volume[k]) * f
        volume = int(bar.volume * done)
        value = volume * 25 // 1000 if inst.is_index else volume * (bar.open + high + low + price) // 4
        return Quote(bar.day, price, bar.open, high, low, bar.prev_close, volume, value, upper, lower, live=True)

    def _path(self, inst: Instrument, n: int, bar: Bar) -> _Path:
        key = (inst.code, n)
        path = self._paths.get(key)
        if path is None:
            path = self._build_path(inst, n, bar)
            with self._lock:
                if len(self._paths) > 6000:  # old days are never asked for again
                    self._paths.clear()
                self._paths[key] = path
        return path

    def _build_path(self, inst: Instrument, n: int, bar: Bar) -> _Path:
        rng = random.Random(f"path:{self.seed}:{inst.code}:{n}")
        k_high = rng.randrange(1, KNOTS)
        k_low = rng.randrange(1, KNOTS - 1)
        if k_low >= k_high:
            k_low += 1
        anchors = sorted([(0, bar.open), (k_high, bar.high), (k_low, bar.low), (KNOTS, bar.close)])
        sigma = (0.0008 if inst.is_index else 0.0015) * math.sqrt(KNOT_S / 60)
        prices = array("q", [0] * (KNOTS + 1))
        top, bottom = math.log(bar.high), math.log(bar.low)
        gauss, exp, to_grid = rng.gauss, math.exp, self._grid(inst)
        hi, lo = bar.high, bar.low
        for (ka, va), (kb, vb) in zip(anchors, anchors[1:], strict=False):
            steps = kb - ka
            walk = [0.0] * (steps + 1)
            for j in range(1, steps + 1):
                walk[j] = walk[j - 1] + gauss(0.0, sigma)
            la, end = math.log(va), walk[steps]
            slope = (math.log(vb) - la - end) / steps
            for j in range(1, steps):
                x = la + slope * j + walk[j]
                # reflect off the day's extremes rather than clamp, so the price keeps moving near them
                if x > top:
                    x = 2 * top - x
                elif x < bottom:
                    x = 2 * bottom - x
                p = to_grid(exp(x))
                prices[ka + j] = hi if p > hi else lo if p < lo else p
            prices[ka], prices[kb] = va, vb
        highs, lows, done = array("q", prices), array("q", prices), array("d", [0.0] * (KNOTS + 1))
        weights = [1.0 + 2.0 * (2 * (k + 0.5) / KNOTS - 1) ** 2 for k in range(KNOTS)]  # busy open and close
        total = sum(weights)
        done[0] = 0.03  # opening auction
        for k in range(1, KNOTS + 1):
            highs[k] = max(highs[k - 1], prices[k])
            lows[k] = min(lows[k - 1], prices[k])
            done[k] = done[k - 1] + 0.97 * weights[k - 1] / total
        done[KNOTS] = 1.0
        return _Path(prices, highs, lows, done)

    # ---- history ------------------------------------------------------------------------------
    def history(self, inst: Instrument, epoch_s: float, start: date | None, end: date, period: str,
                limit: int) -> list[Bar]:
        """Up to `limit` bars of period D/W/M/Y between start and end, newest first; today's bar is live."""
        n_now, _ = session_position(epoch_s)
        live = self.quote(inst, epoch_s)
        last = min(n_now, trading_index(end))
        if trading_date(last) > end:
            last -= 1
        first = trading_index(start) if start else last - 40 * limit
        if start and trading_date(first) < start:
            first += 1
        first = max(first, 1)
        rows: list[Bar] = []
        group_key: tuple[int, ...] | None = None
        members: list[Bar] = []
        for n in range(last, first - 1, -1):
            day_bar = self._live_bar(live) if n == n_now and live.live else self.bar(inst, n)
            key = _period_key(day_bar.day, period)
            if key != group_key and members:
                rows.append(_merge(members))
                members = []
                if len(rows) == limit:
                    break
            group_key = key
            members.append(day_bar)
        if members and len(rows) < limit:
            rows.append(_merge(members))
        return rows

    @staticmethod
    def _live_bar(q: Quote) -> Bar:
        return Bar(q.day, q.open, q.high, q.low, q.price, q.volume, q.value, q.prev_close)

    # ---- randomness ---------------------------------------------------------------------------
    def _normals(self, key: str, count: int) -> tuple[float, ...]:
        """`count` (≤ 8) standard normals, clipped to ±2.5, from one hash of the key."""
        words = struct.unpack(f">{2 * count}I", hashlib.blake2b(f"{self.seed}|{key}".encode(),
                                                                digest_size=8 * count).digest())
        out = []
        for j in range(0, 2 * count, 2):
            z = math.sqrt(-2.0 * math.log((words[j] + 0.5) / 2**32)) * math.cos(2.0 * math.pi * words[j + 1] / 2**32)
            out.append(-2.5 if z < -2.5 else 2.5 if z > 2.5 else z)
        return tuple(out)

    def _day_normals_uncached(self, code: str, n: int) -> tuple[float, ...]:
        """(close noise, opening gap, high, low, volume) of one day."""
        return self._normals(f"{code}|d|{n}", 5)

    def _knot_uncached(self, code: str, tag: str, k: int) -> float:
        return self._normals(f"{code}|{tag}|{k}", 1)[0]

    def _knotted(self, code: str, tag: str, n: int, every: int) -> float:
        k, r = divmod(n, every)
        a, b = self._knot(code, tag, k), self._knot(code, tag, k + 1)
        return a + (b - a) * r / every

    @staticmethod
    def _round(inst: Instrument, value: float) -> int:
        return max(1, int(round(value))) if inst.is_index else round_to_tick(value)

    @staticmethod
    def _grid(inst: Instrument) -> Callable[[float], int]:
        if inst.is_index:
            return lambda v: max(1, int(round(v)))
        return round_to_tick


def _period_key(day: date, period: str) -> tuple[int, ...]:
    if period == "W":
        iso = day.isocalendar()
        return (iso[0], iso[1])
    if period == "M":
        return (day.year, day.month)
    if period == "Y":
        return (day.year,)
    return (day.toordinal(),)


def _merge(newest_first: list[Bar]) -> Bar:
    """One period bar from its days (given newest first); dated by its last trading day, like KIS."""
    newest, oldest = newest_first[0], newest_first[-1]
    return Bar(newest.day, oldest.open, max(b.high for b in newest_first), min(b.low for b in newest_first),
               newest.close, sum(b.volume for b in newest_first), sum(b.value for b in newest_first),
               oldest.prev_close)
