"""KRX trading calendar: which days trade, and when the regular session opens and closes (Asia/Seoul).

Holiday source: the `holidays` package's financial calendar `XKRX` (Korea Exchange), which already
contains the year-end closure (the last weekday of December) and the election days it knows. When a
`holidays` release lacks `XKRX`, the country calendar `holidays.KR` plus our own year-end rule is used.
Neither knows closures announced at short notice (e.g. a snap election): pass them as `extra_holidays`.

Start-up cost: importing `holidays` and computing a year costs tens of milliseconds, paid by the first market-hours
check of every cold instance. The years of `PRECOMPUTED` are therefore kept here as a table, generated from that
package's XKRX calendar (`python -m shared.market.calendar` prints it; a test checks it still equals what the
installed package gives); the package is imported only for a year outside the table.

Shifted days (regular session only; pre/after-hours shift with them but are not modelled here):
- the first trading day of a year opens at 10:00 (opening ceremony) and closes at 15:30;
- CSAT (수능) day opens at 10:00 and closes at 16:30.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from shared.lazy import lazy_module

if TYPE_CHECKING:
    import holidays
else:
    holidays = lazy_module("holidays")  # only for a year outside PRECOMPUTED

KST = ZoneInfo("Asia/Seoul")
REGULAR_OPEN = time(9, 0)
REGULAR_CLOSE = time(15, 30)
SHIFTED_OPEN = time(10, 0)
CSAT_CLOSE = time(16, 30)

# CSAT (College Scholastic Ability Test) days, a Thursday in mid-November, set by the Ministry of Education.
# 2024-11-14 and 2025-11-13: held on those days (KRX opened 10:00).
# 2026-11-19: the announced date for the 2027 test, as far as we know; confirm against the KRX notice.
# 2027-11-18: UNVERIFIED guess (third Thursday of November); replace when the ministry announces it.
CSAT_DAYS: frozenset[date] = frozenset({
    date(2024, 11, 14),
    date(2025, 11, 13),
    date(2026, 11, 19),
    date(2027, 11, 18),
})
UNVERIFIED_CSAT_DAYS: frozenset[date] = frozenset({date(2027, 11, 18)})

# A holiday run plus weekends never exceeds this; bounds the search for the next session.
_MAX_CLOSED_RUN_DAYS = 40


# KRX closures (month-day) by year, from the `holidays` package's XKRX calendar (release 0.109).
PRECOMPUTED: dict[int, str] = {
    2024: "0101 0209 0212 0301 0410 0501 0506 0515 0606 0815 0916 0917 0918 1001 1003 1009 1225 1231",
    2025: "0101 0127 0128 0129 0130 0303 0501 0505 0506 0603 0606 0815 1003 1006 1007 1008 1009 1225 1231",
    2026: "0101 0216 0217 0218 0302 0501 0505 0525 0603 0717 0817 0924 0925 1005 1009 1225 1231",
    2027: "0101 0208 0209 0301 0503 0505 0513 0719 0816 0914 0915 0916 1004 1011 1227 1231",
    2028: "0126 0127 0128 0301 0412 0501 0502 0505 0606 0717 0815 1002 1003 1004 1005 1009 1225 1229",
    2029: "0101 0212 0213 0214 0301 0501 0507 0521 0606 0717 0815 0921 0924 1003 1009 1225 1231",
    2030: "0101 0204 0205 0301 0327 0501 0506 0509 0606 0612 0717 0815 0911 0912 0913 1003 1009 1225 1231",
}


def _holiday_source_name() -> str:
    return "holidays.XKRX" if hasattr(holidays, "XKRX") else "holidays.KR + year-end rule"


def __getattr__(name: str) -> Any:
    if name == "HOLIDAY_SOURCE":  # which source the package offers (imports it: not for the start-up path)
        return _holiday_source_name()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _year_end_closure(year: int) -> date:
    """KRX closes on Dec 31, or on the last weekday before it when Dec 31 falls on a weekend."""
    d = date(year, 12, 31)
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


def _official_holidays(year: int) -> frozenset[date]:
    table = PRECOMPUTED.get(year)
    if table is not None:
        return frozenset(date(year, int(md[:2]), int(md[2:])) for md in table.split())
    return package_holidays(year)


def package_holidays(year: int) -> frozenset[date]:
    """The closures of `year` as the installed `holidays` package gives them (imports it)."""
    if hasattr(holidays, "XKRX"):
        return frozenset(holidays.financial_holidays("XKRX", years=year).keys())
    return frozenset(holidays.country_holidays("KR", years=year).keys()) | {_year_end_closure(year)}


class KRXCalendar:
    """Regular-session calendar of the Korea Exchange. Thread-safe; holidays are computed once per year."""

    tz = KST

    def __init__(self, extra_holidays: Iterable[date] = (), csat_days: Iterable[date] = CSAT_DAYS) -> None:
        self._extra = frozenset(extra_holidays)
        self._csat = frozenset(csat_days)
        self._by_year: dict[int, frozenset[date]] = {}
        self._lock = threading.Lock()

    # ---- days -------------------------------------------------------------------------
    def holidays_of(self, year: int) -> frozenset[date]:
        with self._lock:
            found = self._by_year.get(year)
            if found is None:
                found = _official_holidays(year) | {d for d in self._extra if d.year == year}
                self._by_year[year] = found
            return found

    def is_trading_day(self, d: date) -> bool:
        return d.weekday() < 5 and d not in self.holidays_of(d.year)

    def first_trading_day(self, year: int) -> date:
        d = date(year, 1, 1)
        while not self.is_trading_day(d):
            d += timedelta(days=1)
        return d

    # ---- sessions ---------------------------------------------------------------------
    def session(self, d: date) -> tuple[datetime, datetime] | None:
        """The regular session (open, close) of a day as aware Asia/Seoul datetimes, or None when closed."""
        if not self.is_trading_day(d):
            return None
        opens, closes = REGULAR_OPEN, REGULAR_CLOSE
        if d in self._csat:
            opens, closes = SHIFTED_OPEN, CSAT_CLOSE
        elif d == self.first_trading_day(d.year):
            opens = SHIFTED_OPEN
        return datetime.combine(d, opens, KST), datetime.combine(d, closes, KST)

    def is_shifted(self, d: date) -> bool:
        """True when the day trades but its session does not open at 09:00."""
        s = self.session(d)
        return s is not None and s[0].time() != REGULAR_OPEN

    def is_open(self, ts: float) -> bool:
        now = datetime.fromtimestamp(ts, KST)
        s = self.session(now.date())
        return s is not None and s[0] <= now < s[1]

    def next_open(self, ts: float) -> float:
        """The earliest instant at or after `ts` when the regular session is open (ts itself if open now)."""
        now = datetime.fromtimestamp(ts, KST)
        d = now.date()
        for _ in range(_MAX_CLOSED_RUN_DAYS):
            s = self.session(d)
            if s is not None and now < s[1]:
                return max(ts, s[0].timestamp())
            d += timedelta(days=1)
        raise RuntimeError(f"no KRX session within {_MAX_CLOSED_RUN_DAYS} days of {now.isoformat()}")

    def next_close(self, ts: float) -> float:
        """The end of the session that is open at `ts`, or of the next one."""
        opens = self.next_open(ts)
        s = self.session(datetime.fromtimestamp(opens, KST).date())
        assert s is not None  # next_open only returns instants inside a session
        return s[1].timestamp()


def precomputed_table(years: Iterable[int]) -> str:
    """The source lines of PRECOMPUTED for `years`, from the installed package."""
    return "\n".join(f'    {y}: "{" ".join(sorted(d.strftime("%m%d") for d in package_holidays(y)))}",' for y in years)


if __name__ == "__main__":
    print(precomputed_table(sorted(PRECOMPUTED)))
