"""The price model: tick grid, ±30% band, intraday consistency with the daily bar, determinism by seed."""

from __future__ import annotations

import pytest

from shared.sim.prices import KNOT_S, SESSION_S, PriceModel, trading_date, trading_index
from shared.sim.ticks import on_tick, price_limits, tick_size
from shared.sim.universe import Universe
from tests.sim.conftest import SESSION_TS, Kis

SESSION_OPEN = SESSION_TS - 5400  # 09:00 KST that day


@pytest.mark.parametrize(("price", "tick"), [(1_999, 1), (2_000, 5), (19_990, 10), (20_000, 50), (199_900, 100),
                                             (200_000, 500), (499_500, 500), (500_000, 1_000)])
def test_krx_tick_sizes(price, tick):
    assert tick_size(price) == tick


def test_limits_are_30_percent_on_the_grid():
    upper, lower = price_limits(72_000)
    assert (upper, lower) == (93_600, 50_400)
    upper, lower = price_limits(15_430)  # 20,059 → 20,050 (tick 50); 10,801 → 10,810 (tick 10)
    assert (upper, lower) == (20_050, 10_810)
    assert on_tick(upper) and on_tick(lower)


def test_trading_day_numbering_skips_weekends():
    for n in range(9000, 9020):
        day = trading_date(n)
        assert day.weekday() < 5 and trading_index(day) == n


def test_daily_closes_stay_on_grid_and_inside_the_band():
    universe, model = Universe(7), PriceModel(7)
    for inst in list(universe.stocks.values())[:40]:
        for n in range(9000, 9200):
            bar = model.bar(inst, n)
            upper, lower = price_limits(bar.prev_close)
            assert lower <= bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high <= upper
            assert all(on_tick(p) for p in (bar.open, bar.high, bar.low, bar.close))
            assert bar.prev_close == model.bar(inst, n - 1).close


def test_intraday_moves_and_ends_on_the_daily_bar():
    universe, model = Universe(1), PriceModel(1)
    for code in ("005930", "035720", "247540"):
        inst = universe.stock(code)
        seen = [model.quote(inst, SESSION_OPEN + s) for s in range(0, SESSION_S + 1, KNOT_S // 2)]
        assert len({q.price for q in seen}) > 10  # the price moves during the session
        pairs = zip(seen, seen[1:], strict=False)
        assert all(a.high <= b.high and a.low >= b.low and a.volume <= b.volume for a, b in pairs)
        assert all(q.low <= q.price <= q.high and on_tick(q.price) for q in seen)
        final = model.quote(inst, SESSION_OPEN + SESSION_S + 3600)
        bar = model.bar(inst, trading_index(final.day))
        assert not final.live and seen[-1].live is False
        assert (final.price, final.high, final.low, final.open) == (bar.close, bar.high, bar.low, bar.open)
        assert seen[-2].high <= bar.high and seen[-2].low >= bar.low


def test_before_the_open_the_last_session_shows():
    universe, model = Universe(1), PriceModel(1)
    inst = universe.stock("005930")
    early = model.quote(inst, SESSION_OPEN - 1800)  # 08:30 Wednesday
    tuesday = model.bar(inst, trading_index(early.day))
    assert early.day.weekday() == 1 and early.price == tuesday.close and not early.live


def test_same_seed_same_answers_other_seed_different(make_sim, clock):
    a, b, c = make_sim(clock=clock, seed=3), make_sim(clock=clock, seed=3), make_sim(clock=clock, seed=4)
    outputs = []
    for sim in (a, b, c):
        kis = Kis(sim).login()
        outputs.append({code: kis.price(code).json()["output"] for code in ("005930", "000660", "035420")})
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]
    assert a.symbols() == b.symbols() != c.symbols()


def test_prices_move_as_the_clock_moves(sim, kis, clock):
    prices = []
    for _ in range(30):
        prices.append(int(kis.price("000660").json()["output"]["stck_prpr"]))
        clock.advance(120)
    assert len(set(prices)) > 3
