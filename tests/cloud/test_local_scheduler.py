import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.clock import FakeClock
from shared.cloud.local_scheduler import CronExpr, LocalScheduler, rfc3339
from shared.config import load_settings
from shared.market.calendar import KST
from shared.schedules import Schedule, schedules


def kst(y, mo, d, h=0, mi=0, s=0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=KST)


# ---- cron evaluator ------------------------------------------------------------------

def test_cron_next_after_weekday_job():
    cron = CronExpr.parse("30 8,9 * * 1-5")
    assert cron.next_after(kst(2026, 3, 4, 8, 0)) == kst(2026, 3, 4, 8, 30)
    assert cron.next_after(kst(2026, 3, 4, 8, 30)) == kst(2026, 3, 4, 9, 30)   # strictly after
    assert cron.next_after(kst(2026, 3, 6, 9, 30)) == kst(2026, 3, 9, 8, 30)   # Friday -> Monday
    assert not cron.matches(kst(2026, 3, 7, 8, 30))                             # Saturday


def test_cron_steps_lists_ranges_and_names():
    assert CronExpr.parse("*/30 * * * *").next_after(kst(2026, 3, 4, 10, 31)) == kst(2026, 3, 4, 11, 0)
    assert CronExpr.parse("*/15 * * * *").minutes == frozenset({0, 15, 30, 45})
    assert CronExpr.parse("5-20/5 * * * *").minutes == frozenset({5, 10, 15, 20})
    assert CronExpr.parse("10/20 * * * *").minutes == frozenset({10, 30, 50})
    assert CronExpr.parse("0 0 * * 7").weekdays == frozenset({0})
    assert CronExpr.parse("0 0 * JAN,jul MON-FRI").months == frozenset({1, 7})
    assert CronExpr.parse("0 12 29 2 *").next_after(kst(2026, 3, 1)) == kst(2028, 2, 29, 12, 0)


def test_cron_day_of_month_or_day_of_week_when_both_restricted():
    cron = CronExpr.parse("0 0 13 * 5")  # the 13th, or any Friday
    assert cron.matches(kst(2026, 3, 13))     # Friday the 13th
    assert cron.matches(kst(2026, 3, 6))      # a Friday
    assert cron.matches(kst(2026, 4, 13))     # a Monday, but the 13th
    assert not cron.matches(kst(2026, 3, 9))


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "5-1 * * * *",
                                 "* * 0 * *", "* * * 13 *", "x * * * *"])
def test_cron_rejects_bad_expressions(bad):
    with pytest.raises(ValueError):
        CronExpr.parse(bad)


# ---- scheduler over HTTP ---------------------------------------------------------------

class Receiver:
    def __init__(self, status=200):
        self.requests = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.path, dict(self.headers)))
                outer.arrived.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_tick_fires_jobs_at_their_cron_times_with_scheduler_headers(receiver):
    clock = FakeClock(kst(2026, 3, 4, 8, 29, 30).timestamp())
    sched = LocalScheduler(receiver.url, schedules(load_settings({})), clock)
    assert sched.tick() == []
    clock.advance(30)  # 08:30:00 KST: preload and refresh-token are both due
    fired = sorted(sched.tick(), key=lambda f: f.job)
    assert [(f.job, f.status) for f in fired] == [("preload", 200), ("refresh-token", 200)]
    by_path = dict(receiver.requests)
    h = by_path["/internal/preload"]
    assert h["X-CloudScheduler"] == "true"
    assert h["X-CloudScheduler-JobName"] == "preload"
    assert h["X-CloudScheduler-ScheduleTime"] == "2026-03-03T23:30:00Z"
    assert by_path["/internal/refresh-token"]["X-CloudScheduler-JobName"] == "refresh-token"
    assert sched.tick() == []  # nothing twice
    assert sched.next_due("preload") == kst(2026, 3, 4, 9, 30).timestamp()
    clock.advance(30 * 60)  # 09:00 -> refresh-token only
    assert [f.job for f in sched.tick()] == ["refresh-token"]


def test_missed_times_fire_once_for_the_latest(receiver):
    clock = FakeClock(kst(2026, 3, 4, 10, 0, 30).timestamp())
    job = Schedule("every-30", "*/30 * * * *", "Asia/Seoul", "/job", "test", False)
    sched = LocalScheduler(receiver.url, [job], clock)
    clock.advance(3 * 3600)  # 13:00:30: six times missed
    fired = sched.tick()
    assert [(f.job, f.schedule_time) for f in fired] == [("every-30", kst(2026, 3, 4, 13, 0).timestamp())]
    assert len(receiver.requests) == 1


def test_run_now_fires_at_once_and_reports_failures(receiver):
    clock = FakeClock(kst(2026, 3, 7, 12, 0).timestamp())  # a Saturday: no preload due
    sched = LocalScheduler(receiver.url, schedules(load_settings({})), clock)
    firing = sched.run_now("preload")
    assert firing.status == 200
    assert receiver.requests[0][1]["X-CloudScheduler-ScheduleTime"] == rfc3339(clock.time())
    with pytest.raises(KeyError):
        sched.run_now("nope")
    dead = LocalScheduler("http://127.0.0.1:9", schedules(load_settings({})), clock, timeout_s=1)
    failed = dead.run_now("refresh-token")
    assert failed.status is None and failed.error


def test_background_thread_fires_when_the_clock_reaches_the_time(receiver):
    clock = FakeClock(kst(2026, 3, 4, 8, 29, 59).timestamp())
    job = Schedule("preload", "30 8 * * 1-5", "Asia/Seoul", "/internal/preload", "test", True)
    sched = LocalScheduler(receiver.url, [job], clock, poll_s=0.02)
    sched.start()
    try:
        time.sleep(0.1)
        assert receiver.requests == []
        clock.advance(1)
        assert receiver.arrived.wait(5)
    finally:
        sched.stop()
    assert [p for p, _ in receiver.requests] == ["/internal/preload"]
