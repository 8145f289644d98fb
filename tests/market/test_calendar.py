from datetime import date, datetime, time

import pytest

from shared.market.calendar import CSAT_DAYS, HOLIDAY_SOURCE, KST, KRXCalendar


def kst(y, mo, d, h=0, mi=0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=KST).timestamp()


@pytest.fixture(scope="module")
def cal() -> KRXCalendar:
    return KRXCalendar()


def test_holiday_source_is_the_exchange_calendar():
    assert HOLIDAY_SOURCE == "holidays.XKRX"


@pytest.mark.parametrize("day", [
    date(2026, 1, 1),    # New Year
    date(2026, 2, 17),   # Seollal
    date(2026, 9, 24), date(2026, 9, 25),  # Chuseok
    date(2026, 10, 9),   # Hangul Day
    date(2026, 12, 25),  # Christmas
    date(2026, 12, 31),  # year-end closure (a Thursday)
    date(2026, 1, 3), date(2026, 1, 4),    # weekend
    date(2023, 12, 29),  # year-end closure moves to the last weekday when Dec 31 is a Sunday
])
def test_closed_days(cal, day):
    assert not cal.is_trading_day(day)
    assert cal.session(day) is None


def test_regular_day_session(cal):
    opens, closes = cal.session(date(2026, 3, 4))
    assert (opens.time(), closes.time()) == (time(9, 0), time(15, 30))
    assert opens.tzinfo == KST == cal.tz
    assert not cal.is_shifted(date(2026, 3, 4))


def test_first_trading_day_of_year_opens_at_ten(cal):
    assert cal.first_trading_day(2026) == date(2026, 1, 2)
    opens, closes = cal.session(date(2026, 1, 2))
    assert (opens.time(), closes.time()) == (time(10, 0), time(15, 30))
    assert cal.is_shifted(date(2026, 1, 2))
    # 2027-01-01 is a Friday holiday, so the first session is Monday the 4th.
    assert cal.first_trading_day(2027) == date(2027, 1, 4)
    assert cal.session(date(2027, 1, 4))[0].time() == time(10, 0)


def test_csat_day_shifts_open_and_close(cal):
    for day in CSAT_DAYS:
        opens, closes = cal.session(day)
        assert (opens.time(), closes.time()) == (time(10, 0), time(16, 30)), day
        assert day.weekday() == 3  # always a Thursday


def test_is_open_at_edges(cal):
    assert not cal.is_open(kst(2026, 3, 4, 8, 59))
    assert cal.is_open(kst(2026, 3, 4, 9, 0))
    assert cal.is_open(kst(2026, 3, 4, 15, 29))
    assert not cal.is_open(kst(2026, 3, 4, 15, 30))
    assert not cal.is_open(kst(2026, 1, 2, 9, 30))   # shifted opening
    assert cal.is_open(kst(2026, 11, 19, 16, 0))     # CSAT runs to 16:30
    assert not cal.is_open(kst(2026, 9, 25, 11, 0))  # Chuseok


def test_next_open_skips_weekends_and_holidays(cal):
    # Chuseok 2026: Thu 24 and Fri 25 closed, then the weekend: next session Monday the 28th.
    assert cal.next_open(kst(2026, 9, 23, 16, 0)) == kst(2026, 9, 28, 9, 0)
    # New Year's Eve after close -> 2026-01-02 at 10:00.
    assert cal.next_open(kst(2025, 12, 30, 20, 0)) == kst(2026, 1, 2, 10, 0)
    # Before the open on a trading day -> that morning.
    assert cal.next_open(kst(2026, 3, 4, 7, 0)) == kst(2026, 3, 4, 9, 0)
    # While open -> now.
    now = kst(2026, 3, 4, 10, 15)
    assert cal.next_open(now) == now
    assert cal.next_close(now) == kst(2026, 3, 4, 15, 30)
    # Friday after close -> Monday.
    assert cal.next_open(kst(2026, 3, 6, 15, 30)) == kst(2026, 3, 9, 9, 0)


def test_extra_holidays_close_the_market():
    cal = KRXCalendar(extra_holidays=[date(2026, 3, 4)])
    assert not cal.is_trading_day(date(2026, 3, 4))
    assert cal.next_open(kst(2026, 3, 3, 16, 0)) == kst(2026, 3, 5, 9, 0)


def test_the_precomputed_table_is_what_the_holidays_package_gives():
    """PRECOMPUTED saves the package's import at start-up; regenerate it (`python -m shared.market.calendar`)
    when a `holidays` release changes a year it covers."""
    from shared.market.calendar import PRECOMPUTED, _official_holidays, package_holidays

    assert set(PRECOMPUTED) >= {2025, 2026, 2027}
    for year in PRECOMPUTED:
        assert _official_holidays(year) == package_holidays(year), year


def test_a_year_outside_the_table_comes_from_the_package():
    from shared.market.calendar import PRECOMPUTED, package_holidays

    year = max(PRECOMPUTED) + 1
    assert KRXCalendar().holidays_of(year) == package_holidays(year)
    assert date(year, 1, 1) in KRXCalendar().holidays_of(year)
