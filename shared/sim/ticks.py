"""KRX price grid: tick sizes (unified KOSPI/KOSDAQ table since 2023) and the ±30% daily limits."""

from __future__ import annotations

# (price below which the tick applies, tick) — prices at or above 500,000 move by 1,000
_TICKS: tuple[tuple[int, int], ...] = (
    (2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500),
)
LIMIT_PCT = 30


def tick_size(price: int | float) -> int:
    for below, tick in _TICKS:
        if price < below:
            return tick
    return 1_000


def round_to_tick(price: int | float) -> int:
    tick = tick_size(price)
    return max(tick, int(round(price / tick)) * tick)


def floor_to_tick(price: int) -> int:
    tick = tick_size(price)
    return price // tick * tick


def ceil_to_tick(price: int) -> int:
    tick = tick_size(price)
    return -(-price // tick) * tick


def on_tick(price: int) -> bool:
    return price > 0 and price % tick_size(price) == 0


def price_limits(prev_close: int) -> tuple[int, int]:
    """(upper, lower): ±30% of the previous close, inside the band and on the grid."""
    upper = floor_to_tick(prev_close * (100 + LIMIT_PCT) // 100)
    lower = ceil_to_tick(-(-prev_close * (100 - LIMIT_PCT) // 100))
    return upper, lower
