"""The one definition of the gateway's scheduled jobs.

Read by the local scheduler (`shared/cloud/local_scheduler.py`) and by the Terraform variables generator,
so a job's time, target and time zone cannot drift between the local stack and Cloud Scheduler.

Cloud Scheduler cron cannot express KRX holidays or shifted sessions, so the preload job fires on every
weekday, at the configured time and again one hour later; the preload handler asks `preload_due()` (which
consults the KRX calendar) and does nothing on a holiday or at the firing that is not today's. On a day
whose session opens late (first trading day of the year, CSAT day: 10:00 instead of 09:00) the preload
moves by the same delay, so it keeps its configured lead before the open (08:30 -> 09:30).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared.config import Settings
from shared.market.calendar import KST, REGULAR_OPEN, SHIFTED_OPEN, KRXCalendar

SCHEDULER_TIME_ZONE = "Asia/Seoul"
PRELOAD_TARGET = "/internal/preload"
REFRESH_TOKEN_TARGET = "/internal/refresh-token"
REFRESH_TOKEN_EVERY_MIN = 30
# How much later a shifted session opens; KRX shifts by whole hours (10:00 instead of 09:00).
_SESSION_SHIFT = datetime.combine(date.min, SHIFTED_OPEN) - datetime.combine(date.min, REGULAR_OPEN)


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str          # minute hour day-of-month month day-of-week, in `time_zone`
    time_zone: str     # IANA zone; always Asia/Seoul here
    target: str        # path on the gateway the job POSTs to
    description: str
    trading_days_only: bool  # the handler skips non-trading days (the cron cannot)


def _hh_mm(value: str) -> tuple[int, int]:
    hh, mm = value.split(":")
    return int(hh), int(mm)


def schedules(settings: Settings) -> tuple[Schedule, ...]:
    hh, mm = _hh_mm(settings.preload_time_kst)
    shift_h = int(_SESSION_SHIFT.total_seconds() // 3600)
    hours = [hh] + ([hh + shift_h] if hh + shift_h < 24 else [])
    return (
        Schedule(
            name="preload",
            cron=f"{mm} {','.join(str(h) for h in hours)} * * 1-5",
            time_zone=SCHEDULER_TIME_ZONE,
            target=PRELOAD_TARGET,
            description=(f"Preload daily prices and symbol info at {settings.preload_time_kst} KST on KRX trading "
                         "days (one hour later when the session opens late); fires every weekday, the handler "
                         "consults the KRX calendar"),
            trading_days_only=True,
        ),
        Schedule(
            name="refresh-token",
            cron=f"*/{REFRESH_TOKEN_EVERY_MIN} * * * *",
            time_zone=SCHEDULER_TIME_ZONE,
            target=REFRESH_TOKEN_TARGET,
            description=(f"Refresh the KIS access token when it would expire before the next run plus "
                         f"{settings.token_refresh_margin_s} s; otherwise a no-op"),
            trading_days_only=False,
        ),
    )


def preload_time_on(day: date, calendar: KRXCalendar, settings: Settings) -> datetime | None:
    """When the preload should run on `day` (aware, Asia/Seoul), or None when KRX does not trade."""
    session = calendar.session(day)
    if session is None:
        return None
    hh, mm = _hh_mm(settings.preload_time_kst)
    regular = datetime(day.year, day.month, day.day, hh, mm, tzinfo=KST)
    delay = session[0] - datetime.combine(day, REGULAR_OPEN, KST)
    return regular + delay if delay > timedelta(0) else regular


def parse_schedule_time(value: str) -> float:
    """Epoch seconds of an `X-CloudScheduler-ScheduleTime` header (RFC 3339, e.g. 2026-03-03T23:30:00Z)."""
    at = datetime.fromisoformat(value.strip())
    if at.tzinfo is None:
        raise ValueError(f"schedule time {value!r} has no UTC offset")
    return at.timestamp()


def preload_due(scheduled_ts: float, calendar: KRXCalendar, settings: Settings) -> bool:
    """True when a preload firing scheduled at `scheduled_ts` is the one that should do the work today.

    Compared at minute resolution, as Cloud Scheduler fires on whole minutes. The handler passes
    `parse_schedule_time(request.headers["X-CloudScheduler-ScheduleTime"])`; a manual call without the
    header is the caller's decision.
    """
    at = datetime.fromtimestamp(scheduled_ts, KST).replace(second=0, microsecond=0)
    due = preload_time_on(at.date(), calendar, settings)
    return due is not None and due == at
