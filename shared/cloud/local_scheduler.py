"""Local stand-in for Cloud Scheduler: POSTs to the gateway at each job's cron times, with the real headers.

Jobs come from `shared.schedules.schedules(settings)`, the same list Terraform turns into Cloud Scheduler
jobs. Time comes from a `Clock`, so tests drive it with a FakeClock and `tick()`; `start()` runs a thread
that ticks whenever a job is due. Like Cloud Scheduler, a job that missed several times (the process was
asleep, the clock jumped) fires once, for the latest missed time; there is no backlog.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from shared.clock import SYSTEM_CLOCK, Clock
from shared.schedules import Schedule

log = logging.getLogger(__name__)

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_NAMES = {
    3: {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                     "DEC"), start=1)},
    4: {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))},
}
_SEARCH_LIMIT = timedelta(days=5 * 366)  # Feb 29 on a given weekday can be years away


def _parse_field(text: str, index: int) -> frozenset[int]:
    label, lo, hi = _FIELDS[index]
    names = _NAMES.get(index, {})

    def value(token: str) -> int:
        v = names.get(token.upper()) if token.upper() in names else int(token)
        if v is None or not lo <= v <= hi:
            raise ValueError(f"{label} {token!r} is outside {lo}-{hi}")
        return v

    out: set[int] = set()
    for item in text.split(","):
        spec, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"{label} step must be >= 1")
        if spec == "*":
            start, end = lo, hi
        elif "-" in spec:
            a, b = spec.split("-", 1)
            start, end = value(a), value(b)
        else:
            start = value(spec)
            end = hi if step_text else start
        if start > end:
            raise ValueError(f"{label} range {spec!r} runs backwards")
        out.update(range(start, end + 1, step))
    if index == 4 and 7 in out:  # 7 is Sunday too
        out = (out - {7}) | {0}
    return frozenset(out)


@dataclass(frozen=True)
class CronExpr:
    """Five-field cron (minute hour day-of-month month day-of-week): `*`, lists, ranges, steps, names."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]   # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expr: str) -> CronExpr:
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(f"cron {expr!r} must have 5 fields: minute hour day-of-month month day-of-week")
        minutes, hours, days, months, weekdays = (_parse_field(p, i) for i, p in enumerate(parts))
        return cls(minutes, hours, days, months, weekdays, days_restricted=not parts[2].startswith("*"),
                   weekdays_restricted=not parts[4].startswith("*"))

    def _day_matches(self, dt: datetime) -> bool:
        if dt.month not in self.months:
            return False
        dom = dt.day in self.days
        dow = (dt.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow  # classic cron: either restriction selects the day
        return dom and dow

    def matches(self, dt: datetime) -> bool:
        return self._day_matches(dt) and dt.hour in self.hours and dt.minute in self.minutes

    def next_after(self, dt: datetime) -> datetime:
        """The first matching minute strictly after `dt`, in dt's time zone."""
        t = dt.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + _SEARCH_LIMIT
        while t < limit:
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ValueError("cron expression never matches")


@dataclass(frozen=True)
class Firing:
    job: str
    schedule_time: float
    status: int | None   # None when the gateway did not answer
    error: str = ""


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class LocalScheduler:
    def __init__(self, base_url: str, schedules: Iterable[Schedule], clock: Clock = SYSTEM_CLOCK, *,
                 poll_s: float = 1.0, timeout_s: float = 30.0, target_urls: Mapping[str, str] | None = None,
                 id_token: Callable[[str], str] | None = None) -> None:
        """`target_urls`: job name -> the URL of the function serving it (else `base_url`); `id_token(audience)`:
        an OIDC token of the scheduler's service account for that URL, sent as Cloud Scheduler does."""
        self._base_url = base_url.rstrip("/")
        self._target_urls = {k: v.rstrip("/") for k, v in (target_urls or {}).items()}
        self._id_token = id_token
        self._jobs = {s.name: s for s in schedules}
        self._crons = {s.name: CronExpr.parse(s.cron) for s in self._jobs.values()}
        self._clock = clock
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._session = requests.Session()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.history: list[Firing] = []
        now = clock.time()
        self._next_due = {name: self._next(name, now) for name in self._jobs}

    def _next(self, name: str, after: float) -> float:
        tz = ZoneInfo(self._jobs[name].time_zone)
        return self._crons[name].next_after(datetime.fromtimestamp(after, tz)).timestamp()

    def next_due(self, name: str) -> float:
        return self._next_due[name]

    def tick(self) -> list[Firing]:
        """Fire every job that is due at the clock's current time; returns what was fired."""
        fired = []
        now = self._clock.time()
        for name, due in list(self._next_due.items()):
            if due > now:
                continue
            latest = due
            while (following := self._next(name, latest)) <= now:
                latest = following
            self._next_due[name] = self._next(name, latest)
            fired.append(self._fire(name, latest))
        return fired

    def run_now(self, name: str) -> Firing:
        """Fire a job at once, as `gcloud scheduler jobs run` does; its regular times are unchanged."""
        if name not in self._jobs:
            raise KeyError(f"no scheduled job {name!r}; jobs: {', '.join(self._jobs)}")
        return self._fire(name, self._clock.time())

    def _fire(self, name: str, schedule_time: float) -> Firing:
        job = self._jobs[name]
        headers = {"X-CloudScheduler": "true", "X-CloudScheduler-JobName": name,
                   "X-CloudScheduler-ScheduleTime": rfc3339(schedule_time), "User-Agent": "Google-Cloud-Scheduler"}
        base = self._target_urls.get(name, self._base_url)
        if self._id_token is not None:
            headers["Authorization"] = f"Bearer {self._id_token(base)}"
        try:
            with self._lock:  # requests.Session is not thread-safe; run_now may race the ticking thread
                resp = self._session.post(base + job.target, headers=headers, timeout=self._timeout_s)
            firing = Firing(name, schedule_time, resp.status_code)
        except requests.RequestException as exc:
            firing = Firing(name, schedule_time, None, exc.__class__.__name__)
        log.info("scheduler job %s at %s -> %s", name, rfc3339(schedule_time), firing.status or firing.error)
        self.history.append(firing)
        return firing

    # ---- background thread ------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="local-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout_s + 1)
        self._session.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            wait = min(self._next_due.values(), default=self._clock.time() + self._poll_s) - self._clock.time()
            self._stop.wait(min(self._poll_s, max(0.0, wait)))


def run(argv: list[str] | None = None) -> int:
    """`python -m shared.cloud.local_scheduler --base-url http://127.0.0.1:8080 [--run-now JOB]`."""
    from shared.config import load_settings
    from shared.schedules import schedules

    parser = argparse.ArgumentParser(prog="local-scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="gateway base URL the jobs POST to")
    parser.add_argument("--run-now", metavar="JOB", help="fire one job once and exit")
    args = parser.parse_args(argv)
    scheduler = LocalScheduler(args.base_url, schedules(load_settings()))
    if args.run_now:
        firing = scheduler.run_now(args.run_now)
        print(f"{firing.job}: {firing.status or firing.error}")
        return 0 if firing.status and 200 <= firing.status < 300 else 1
    scheduler.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
