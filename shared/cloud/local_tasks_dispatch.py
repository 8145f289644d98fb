"""Dispatch rules of the local Cloud Tasks server: rate bucket, retry schedule, and the HTTP push itself.

Kept apart from the gRPC surface so each rule is a small pure function that tests pin down without a server.
Numbers and header names follow the Cloud Tasks v2 documentation for HTTP target tasks.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from google.cloud import tasks_v2

# What Cloud Tasks picks when a queue leaves a field unset (proto3 zero).
DEFAULT_MAX_DISPATCHES_PER_SECOND = 500.0
MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_CONCURRENT_DISPATCHES = 1000
MAX_CONCURRENT_DISPATCHES = 5000
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF_S = 0.1
DEFAULT_MAX_BACKOFF_S = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
DEFAULT_DISPATCH_DEADLINE_S = 600.0
MIN_DISPATCH_DEADLINE_S = 15.0
MAX_DISPATCH_DEADLINE_S = 1800.0


class TokenBucket:
    """Dispatch tokens: `rate` per second, at most `burst` saved up. Not thread-safe (the caller holds a lock)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now

    def take(self, now: float) -> float:
        """Take a token and return 0, or return the seconds until one is available (taking nothing)."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def reconfigure(self, rate: float, burst: int, now: float) -> None:
        self._refill(now)
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = min(self._tokens, float(self.burst))


def burst_for(rate: float, requested: int, default_burst: int | None) -> int:
    """The bucket size: what the queue asked for, else the server's choice (None: ceil(rate))."""
    if requested > 0:
        return requested
    return default_burst if default_burst is not None else max(1, math.ceil(rate))


@dataclass(frozen=True)
class RetryRule:
    max_attempts: int        # -1 = unlimited
    max_retry_duration_s: float  # 0 = unlimited
    min_backoff_s: float
    max_backoff_s: float
    max_doublings: int

    @classmethod
    def from_config(cls, rc: tasks_v2.RetryConfig) -> RetryRule:
        return cls(
            max_attempts=rc.max_attempts or DEFAULT_MAX_ATTEMPTS,
            max_retry_duration_s=rc.max_retry_duration.total_seconds(),
            min_backoff_s=rc.min_backoff.total_seconds() or DEFAULT_MIN_BACKOFF_S,
            max_backoff_s=rc.max_backoff.total_seconds() or DEFAULT_MAX_BACKOFF_S,
            max_doublings=rc.max_doublings or DEFAULT_MAX_DOUBLINGS,
        )

    def delay(self, retry_index: int) -> float:
        """Wait before retry number `retry_index` (0 = the first retry).

        Cloud Tasks: start at min_backoff, double max_doublings times, then grow linearly by
        2**max_doublings * min_backoff, never above max_backoff.
        """
        if retry_index <= self.max_doublings:
            d = self.min_backoff_s * 2.0 ** retry_index
        else:
            d = self.min_backoff_s * 2.0 ** self.max_doublings * (retry_index - self.max_doublings + 1)
        return min(d, self.max_backoff_s)

    def exhausted(self, attempts: int, first_attempt_at: float, now: float) -> bool:
        """Cloud Tasks gives up only when both the attempt count and the retry duration are used up."""
        attempts_done = self.max_attempts != -1 and attempts >= self.max_attempts
        duration_done = self.max_retry_duration_s <= 0 or now - first_attempt_at >= self.max_retry_duration_s
        return attempts_done and duration_done


def fake_oidc_jwt(service_account: str, audience: str, now: float) -> str:
    """An unsigned JWT with the claims Google puts in a Cloud Tasks OIDC token; local receivers only."""
    def part(obj: dict[str, object] | bytes) -> str:
        raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"aud": audience, "azp": service_account, "email": service_account, "email_verified": True,
              "iat": int(now), "exp": int(now) + 3600, "iss": "https://accounts.google.com",
              "sub": service_account}
    return ".".join((part({"alg": "RS256", "kid": "local", "typ": "JWT"}), part(claims), part(b"local-unsigned")))


_METHODS = {
    tasks_v2.HttpMethod.POST: "POST", tasks_v2.HttpMethod.GET: "GET", tasks_v2.HttpMethod.HEAD: "HEAD",
    tasks_v2.HttpMethod.PUT: "PUT", tasks_v2.HttpMethod.DELETE: "DELETE", tasks_v2.HttpMethod.PATCH: "PATCH",
    tasks_v2.HttpMethod.OPTIONS: "OPTIONS",
}


@dataclass(frozen=True)
class PushAttempt:
    queue_id: str
    task_id: str
    retry_count: int          # previous attempts of this task
    execution_count: int      # previous responses that were not 5xx
    eta: float                # the task's schedule time, epoch seconds
    previous_response: int | None


_sessions = threading.local()


def _session() -> requests.Session:
    # requests.Session is not safe to share between threads; one per push worker keeps connections alive.
    s: requests.Session | None = getattr(_sessions, "session", None)
    if s is None:
        s = requests.Session()
        _sessions.session = s
    return s


IdTokenSigner = Callable[[str, str], str]  # (service account email, audience) -> ID token


def push(request: tasks_v2.HttpRequest, attempt: PushAttempt, timeout_s: float,
         signer: IdTokenSigner | None = None) -> int | None:
    """Send one HTTP push; the status code, or None when no response arrived (refused, reset, deadline)."""
    headers = dict(request.headers)
    headers.setdefault("User-Agent", "Google-Cloud-Tasks")
    headers.update({
        "X-CloudTasks-QueueName": attempt.queue_id,
        "X-CloudTasks-TaskName": attempt.task_id,
        "X-CloudTasks-TaskRetryCount": str(attempt.retry_count),
        "X-CloudTasks-TaskExecutionCount": str(attempt.execution_count),
        "X-CloudTasks-TaskETA": f"{attempt.eta:.6f}",
    })
    if attempt.previous_response is not None:
        headers["X-CloudTasks-TaskPreviousResponse"] = str(attempt.previous_response)
    oidc = request.oidc_token
    if oidc.service_account_email:
        audience = oidc.audience or request.url
        token = (signer(oidc.service_account_email, audience) if signer is not None
                 else fake_oidc_jwt(oidc.service_account_email, audience, time.time()))
        headers["Authorization"] = f"Bearer {token}"
    method = _METHODS.get(request.http_method, "POST")
    try:
        resp = _session().request(method, request.url, headers=headers, data=request.body or None,
                                  timeout=timeout_s)
    except requests.RequestException:
        return None
    resp.close()
    return resp.status_code


# ---- queue and task state, and the loop that dispatches them ----------------------------

def utc(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


@dataclass(eq=False)
class TaskEntry:
    pb: tasks_v2.Task
    due: float               # epoch seconds of the next attempt
    seq: int                 # creation order breaks ties between equal due times
    leased: bool = False     # a push is in flight
    retries: int = 0         # failed attempts so far
    executions: int = 0      # responses other than 5xx so far
    first_attempt_at: float | None = None
    last_status: int | None = None


@dataclass(eq=False)
class QueueState:
    queue_id: str
    pb: tasks_v2.Queue
    bucket: TokenBucket
    tasks: dict[str, TaskEntry] = field(default_factory=dict)  # by full task name
    in_flight: int = 0
    dispatched: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    dispatch_log: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))  # epoch of each push

    def stats(self) -> dict[str, int]:
        return {"dispatched": self.dispatched, "succeeded": self.succeeded, "retried": self.retried,
                "failed": self.failed, "depth": len(self.tasks), "in_flight": self.in_flight}


class Dispatcher:
    """Leases due tasks within each running queue's rate and concurrency, pushes them on worker threads,
    and settles the outcome (done, retry later, or give up). Every state change happens under `cond`."""

    def __init__(self, cond: threading.Condition, queues: dict[str, QueueState],
                 release: Callable[[QueueState, str, float], None], push_workers: int,
                 signer: IdTokenSigner | None = None) -> None:
        self._signer = signer
        self._cond = cond
        self._queues = queues
        self._release = release  # removes a finished task and reserves its name
        self._pushers = ThreadPoolExecutor(max_workers=push_workers, thread_name_prefix="local-tasks-push")
        self._thread = threading.Thread(target=self._loop, name="local-tasks-dispatch", daemon=True)
        self._stopping = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._pushers.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        with self._cond:
            while not self._stopping:
                now = time.time()
                wake = now + 1.0
                for q in list(self._queues.values()):
                    if q.pb.state == tasks_v2.Queue.State.RUNNING:
                        wake = min(wake, self._dispatch_due(q, now))
                self._cond.wait(max(0.0, wake - time.time()))

    def _dispatch_due(self, q: QueueState, now: float) -> float:
        """Lease what may go now; return when this queue next needs a look."""
        limit = q.pb.rate_limits.max_concurrent_dispatches
        for entry in sorted((t for t in q.tasks.values() if not t.leased), key=lambda t: (t.due, t.seq)):
            if q.in_flight >= limit:
                break  # a settling push wakes the loop
            if entry.due > now:
                return entry.due
            wait = q.bucket.take(now)
            if wait > 0:
                return now + wait
            self._lease(q, entry, now)
        return now + 1.0

    def _lease(self, q: QueueState, entry: TaskEntry, now: float) -> None:
        entry.leased = True
        q.in_flight += 1
        q.dispatched += 1
        q.dispatch_log.append(now)
        if entry.first_attempt_at is None:
            entry.first_attempt_at = now
        task = entry.pb
        task.dispatch_count += 1
        attempt = tasks_v2.Attempt(schedule_time=utc(entry.due), dispatch_time=utc(now))
        if entry.retries == 0:
            task.first_attempt = attempt
        task.last_attempt = attempt
        info = PushAttempt(queue_id=q.queue_id, task_id=task.name.rsplit("/", 1)[1], retry_count=entry.retries,
                           execution_count=entry.executions, eta=entry.due, previous_response=entry.last_status)
        request = tasks_v2.HttpRequest(task.http_request)
        self._pushers.submit(self._push_and_settle, q, entry, request, info, task.dispatch_deadline.total_seconds())

    def _push_and_settle(self, q: QueueState, entry: TaskEntry, request: tasks_v2.HttpRequest,
                         info: PushAttempt, deadline_s: float) -> None:
        status = push(request, info, deadline_s, self._signer)
        with self._cond:
            self._settle(q, entry, status, time.time())
            self._cond.notify_all()

    def _settle(self, q: QueueState, entry: TaskEntry, status: int | None, now: float) -> None:
        entry.leased = False
        q.in_flight -= 1
        task = entry.pb
        if q.tasks.get(task.name) is not entry:  # deleted or purged while in flight: the outcome is moot
            return
        entry.last_status = status
        if status is not None:
            task.response_count += 1
            task.last_attempt.response_time = utc(now)
            task.last_attempt.response_status = {"code": 0 if 200 <= status < 300 else 2, "message": f"HTTP {status}"}
            if status < 500:
                entry.executions += 1
        if status is not None and 200 <= status < 300:
            q.succeeded += 1
            self._release(q, task.name, now)
            return
        own = task.retry_config.max_attempts != 0
        rule = RetryRule.from_config(task.retry_config if own else q.pb.retry_config)
        assert entry.first_attempt_at is not None
        if rule.exhausted(entry.retries + 1, entry.first_attempt_at, now):
            q.failed += 1
            self._release(q, task.name, now)
            return
        entry.due = now + rule.delay(entry.retries)
        entry.retries += 1
        task.schedule_time = utc(entry.due)
        q.retried += 1
