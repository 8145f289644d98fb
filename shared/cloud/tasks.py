"""Drain triggers: how a request that found cache misses asks for a drain of its call class.

`DrainTrigger` (in market.ports) is the port the service layer talks to. Adapters:
- `CloudTasksTrigger` — one Cloud Tasks queue per call class (`{prefix}-{call_class}`), one task per time
  slot (`drain-{kind}-{slot}`), so every caller in a slot collapses onto one task: ALREADY_EXISTS is the
  normal answer for all but the first. Cloud Tasks keeps a name reserved for about an hour after the task
  ran, so a slot drains at most once; callers pick slots short enough that new misses land in a new slot.
(The in-process triggers, `local://` and `inline://`, are `inline_trigger.InlineTrigger`.)

`queue_specs(settings)` is the single source of the queues' rate, concurrency and retry numbers: the same
function feeds `ensure_queues` here and the Terraform variables.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shared import budget
from shared.budget import CALL_CLASSES
from shared.config import Settings
from shared.deployment import DEFAULT_QUEUE_PREFIX, REFRESH_QUEUE_ID
from shared.lazy import lazy_module
from shared.market.ports import DrainTriggerError, drain_task_id
from shared.observability import logs

if TYPE_CHECKING:
    from google.api_core import exceptions as gexc
    from google.cloud import tasks_v2
    from google.protobuf import field_mask_pb2
else:  # imported on first use (gRPC, protobuf, google-auth): a read function answering from the cache never
    # asks for a drain, and its cold start does not load them
    gexc = lazy_module("google.api_core.exceptions")
    tasks_v2 = lazy_module("google.cloud.tasks_v2")
    field_mask_pb2 = lazy_module("google.protobuf.field_mask_pb2")

log = logging.getLogger(__name__)

DRAIN_PATH = "/internal/drain"
# A drain is idempotent (claims carry leases), so retrying is safe; five attempts cover a KIS blip without
# keeping a dead slot's task alive for long, since the next slot's task picks up the same pending symbols.
DRAIN_MAX_ATTEMPTS = 5
DRAIN_MAX_DOUBLINGS = 4
# ---- queue definitions ------------------------------------------------------------------

@dataclass(frozen=True)
class QueueSpec:
    call_class: str
    queue_id: str
    max_dispatches_per_second: float
    max_concurrent_dispatches: int
    max_attempts: int
    min_backoff_s: float
    max_backoff_s: float
    max_doublings: int

    def queue(self, project: str, location: str) -> tasks_v2.Queue:
        return tasks_v2.Queue(
            name=f"projects/{project}/locations/{location}/queues/{self.queue_id}",
            rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=self.max_dispatches_per_second,
                                            max_concurrent_dispatches=self.max_concurrent_dispatches),
            retry_config=tasks_v2.RetryConfig(max_attempts=self.max_attempts, min_backoff=_duration(self.min_backoff_s),
                                              max_backoff=_duration(self.max_backoff_s),
                                              max_doublings=self.max_doublings),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _duration(seconds: float) -> dict[str, int]:
    whole = int(seconds)
    return {"seconds": whole, "nanos": round((seconds - whole) * 1e9)}


def queue_specs(settings: Settings, queue_prefix: str = DEFAULT_QUEUE_PREFIX) -> tuple[QueueSpec, ...]:
    # A drain already retried its KIS calls for up to retry_max_delay_s, so the queue waits longer than that
    # before resending; past the breaker's open period a faster retry would only meet an open breaker.
    min_backoff = max(1.0, settings.retry_max_delay_s)
    max_backoff = max(min_backoff, float(int(settings.breaker_reset_timeout_s)))
    return tuple(
        QueueSpec(
            call_class=c,
            queue_id=f"{queue_prefix}-{c}",
            max_dispatches_per_second=budget.queue_rate(settings, c),
            max_concurrent_dispatches=budget.queue_concurrency(settings, c),
            max_attempts=DRAIN_MAX_ATTEMPTS,
            min_backoff_s=min_backoff,
            max_backoff_s=max_backoff,
            max_doublings=DRAIN_MAX_DOUBLINGS,
        )
        for c in CALL_CLASSES
    )


# The refresh function's queue (REFRESH_QUEUE_ID): one dispatch at a time, and KIS issues at most one token a
# minute anyway. A refresh held back by that rule (the writer's 60 s guard, or KIS's EGW00133) answers 503 and is
# tried again every 10-20 s, so the token is issued within 20 s of the rule allowing it, not a whole backoff of
# a minute or two later; a try under the guard costs a Redis read, never a KIS call.
REFRESH_PATH = "/internal/refresh-token"


def refresh_queue_spec() -> QueueSpec:
    return QueueSpec(call_class="token", queue_id=REFRESH_QUEUE_ID, max_dispatches_per_second=1.0,
                     max_concurrent_dispatches=1, max_attempts=12, min_backoff_s=10.0, max_backoff_s=20.0,
                     max_doublings=1)


_UPDATED_FIELDS = ["rate_limits.max_dispatches_per_second", "rate_limits.max_concurrent_dispatches", "retry_config"]


def ensure_queues(client: tasks_v2.CloudTasksClient, project: Settings | str, location: str = "",
                  specs: tuple[QueueSpec, ...] = ()) -> list[str]:
    """Create missing queues and bring existing ones to the spec; returns the queue names.

    `ensure_queues(client, settings)` uses the settings' project (or "local"), region and queue specs.
    """
    if isinstance(project, Settings):
        settings = project
        project, location = settings.gcp_project or "local", settings.gcp_region
        specs = specs or (*queue_specs(settings), refresh_queue_spec())
    names = []
    for spec in specs:
        queue = spec.queue(project, location)
        try:
            client.get_queue(name=queue.name)
        except gexc.NotFound:
            client.create_queue(parent=f"projects/{project}/locations/{location}", queue=queue)
        else:
            client.update_queue(queue=queue, update_mask=field_mask_pb2.FieldMask(paths=_UPDATED_FIELDS))
        names.append(queue.name)
    return names


# ---- adapters ---------------------------------------------------------------------------

class CloudTasksTrigger:
    def __init__(self, client: tasks_v2.CloudTasksClient, project: str, location: str, queue_prefix: str,
                 target_url: str, oidc_service_account: str = "", dispatch_deadline_s: int = 60,
                 rpc_timeout_s: float = 5.0) -> None:
        self._client = client
        self._project, self._location, self._prefix = project, location, queue_prefix
        self._url = target_url.rstrip("/") + DRAIN_PATH
        self._audience = target_url.rstrip("/")
        self._oidc_sa = oidc_service_account
        self._deadline_s = dispatch_deadline_s
        self._rpc_timeout_s = rpc_timeout_s

    def queue_name(self, call_class: str) -> str:
        return f"projects/{self._project}/locations/{self._location}/queues/{self._prefix}-{call_class}"

    def request_drain(self, kind: str, call_class: str, slot: int) -> bool:
        parent = self.queue_name(call_class)
        body = json.dumps({"kind": kind, "call_class": call_class, "slot": slot}).encode()
        headers = {"Content-Type": "application/json"}
        origin = logs.request_id.get()
        if origin:  # the drain logs under the id of the request that asked for it first
            headers["X-Request-Id"] = origin
        request = tasks_v2.HttpRequest(http_method=tasks_v2.HttpMethod.POST, url=self._url,
                                       headers=headers, body=body)
        if self._oidc_sa:
            request.oidc_token = tasks_v2.OidcToken(service_account_email=self._oidc_sa, audience=self._audience)
        task = tasks_v2.Task(name=f"{parent}/tasks/{drain_task_id(kind, call_class, slot)}", http_request=request,
                             dispatch_deadline={"seconds": self._deadline_s})
        try:
            self._client.create_task(parent=parent, task=task, timeout=self._rpc_timeout_s)
        except gexc.AlreadyExists:
            return False
        except gexc.GoogleAPICallError as exc:
            raise DrainTriggerError(f"cannot enqueue a drain on {parent}: {exc.__class__.__name__}") from exc
        return True


class RefreshRequester:
    """Asks the refresh function for a new KIS token through its queue: one task per minute fleet-wide (the task
    is named by the minute), at most one enqueue attempt per `min_gap_s` per process."""

    def __init__(self, client: tasks_v2.CloudTasksClient, project: str, location: str, target_url: str,
                 oidc_service_account: str = "", *, min_gap_s: float = 10.0, rpc_timeout_s: float = 5.0,
                 clock: Any = None) -> None:
        import time as _time

        self._client = client
        self._queue = f"projects/{project}/locations/{location}/queues/{REFRESH_QUEUE_ID}"
        self._url = target_url.rstrip("/") + REFRESH_PATH
        self._audience = target_url.rstrip("/")
        self._oidc_sa = oidc_service_account
        self._min_gap_s = min_gap_s
        self._rpc_timeout_s = rpc_timeout_s
        self._time = clock.time if clock is not None else _time.time
        self._lock = threading.Lock()
        self._last = float("-inf")

    def __call__(self, reason: str) -> bool:
        now = self._time()
        with self._lock:
            if now - self._last < self._min_gap_s:
                return False
            self._last = now
        body = json.dumps({"reason": reason[:100]}).encode()
        request = tasks_v2.HttpRequest(http_method=tasks_v2.HttpMethod.POST, url=self._url,
                                       headers={"Content-Type": "application/json"}, body=body)
        if self._oidc_sa:
            request.oidc_token = tasks_v2.OidcToken(service_account_email=self._oidc_sa, audience=self._audience)
        task = tasks_v2.Task(name=f"{self._queue}/tasks/token-refresh-{int(now // 60)}", http_request=request)
        try:
            self._client.create_task(parent=self._queue, task=task, timeout=self._rpc_timeout_s)
        except gexc.AlreadyExists:
            return False  # another instance asked this minute
        except gexc.GoogleAPICallError as exc:
            log.error("cannot ask for a token refresh on %s: %s", self._queue, exc.__class__.__name__)
            return False
        log.info("asked the refresh function for a new KIS token (%s)", reason[:100])
        return True


def tasks_client(settings: Settings, credential: Any = None) -> tasks_v2.CloudTasksClient:
    """A Cloud Tasks client: Google's (ADC) or a local server's (cloudtasks://host:port), with the caller's
    local credential as gRPC metadata when one is given."""
    rest = settings.task_queue.partition("://")[2]
    if not rest:
        return tasks_v2.CloudTasksClient()
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    from shared.cloud.identity import authorized_channel

    channel = authorized_channel(rest, credential)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


class LazyClient:
    """A Cloud Tasks client made on first use: building it loads gRPC and google-auth, which a read function
    answering from the cache never needs (cold start)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return getattr(client, name)
