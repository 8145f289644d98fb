from datetime import date, datetime

import pytest

from shared.config import load_settings
from shared.market.calendar import KST, KRXCalendar
from shared.schedules import parse_schedule_time, preload_due, preload_time_on, schedules


def kst(y, mo, d, h, mi, s=0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=KST).timestamp()


CAL = KRXCalendar()


def test_jobs_and_their_targets():
    jobs = {s.name: s for s in schedules(load_settings({}))}
    assert set(jobs) == {"preload", "refresh-token"}
    assert jobs["preload"].cron == "30 8,9 * * 1-5"
    assert jobs["preload"].target == "/internal/preload"
    assert jobs["preload"].trading_days_only
    assert jobs["refresh-token"].cron == "*/30 * * * *"
    assert jobs["refresh-token"].target == "/internal/refresh-token"
    assert not jobs["refresh-token"].trading_days_only
    assert {s.time_zone for s in jobs.values()} == {"Asia/Seoul"}


def test_preload_time_follows_settings():
    s = load_settings({"PRELOAD_TIME_KST": "07:45"})
    assert {x.name: x for x in schedules(s)}["preload"].cron == "45 7,8 * * 1-5"
    assert preload_time_on(date(2026, 3, 4), CAL, s) == datetime(2026, 3, 4, 7, 45, tzinfo=KST)


def test_preload_late_evening_has_no_shift_hour():
    s = load_settings({"PRELOAD_TIME_KST": "23:10"})
    assert {x.name: x for x in schedules(s)}["preload"].cron == "10 23 * * 1-5"


def test_preload_due_only_on_the_right_firing():
    s = load_settings({})
    # Regular trading day: the 08:30 firing works, the 09:30 one does not.
    assert preload_due(kst(2026, 3, 4, 8, 30, 2), CAL, s)
    assert not preload_due(kst(2026, 3, 4, 9, 30), CAL, s)
    # First trading day of 2026 opens at 10:00: the preload moves to 09:30.
    assert not preload_due(kst(2026, 1, 2, 8, 30), CAL, s)
    assert preload_due(kst(2026, 1, 2, 9, 30), CAL, s)
    # CSAT day likewise.
    assert preload_due(kst(2026, 11, 19, 9, 30), CAL, s)
    # Holidays and weekends: never.
    assert not preload_due(kst(2026, 9, 25, 8, 30), CAL, s)
    assert not preload_due(kst(2026, 9, 25, 9, 30), CAL, s)
    assert preload_time_on(date(2026, 3, 7), CAL, s) is None


def test_preload_due_from_the_scheduler_header():
    s = load_settings({})
    # The header the local scheduler (and Cloud Scheduler) sends, in UTC.
    assert parse_schedule_time("2026-03-03T23:30:00Z") == kst(2026, 3, 4, 8, 30)
    assert preload_due(parse_schedule_time("2026-03-03T23:30:00Z"), CAL, s)
    assert not preload_due(parse_schedule_time("2026-03-04T00:30:00Z"), CAL, s)
    with pytest.raises(ValueError):
        parse_schedule_time("2026-03-03T23:30:00")
