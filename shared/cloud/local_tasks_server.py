"""A local Cloud Tasks server speaking the real v2 gRPC API, for the local stack and the adapter tests.

Built from google-cloud-tasks' own request/response types, so the production client talks to it unchanged:
    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=grpc.insecure_channel(addr)))

Honoured: rate_limits (token bucket), max_concurrent_dispatches, retry_config (attempts, duration, backoff
doublings; a task's own retry_config wins), task-name dedup (ALREADY_EXISTS while a name is in use and for
`name_reuse_s` after the task is deleted, purged or finished), schedule_time, dispatch_deadline,
pause/resume/purge, and HTTP pushes with the real X-CloudTasks-* headers (local_tasks_dispatch.py).
Where the service leaves things unspecified the choice is the conservative one:
- burst: the service picks its own bucket size; here it is 1 by default (evenly spaced dispatches), or
  ceil(rate) with `default_burst=None`; a queue sent with max_burst_size > 0 gets exactly that.
- no extra throttling on 429/503, no ramp-up, Retry-After not read; ListQueues ignores `filter`;
  deleted queue names are reusable at once; queue-level http_target and App Engine tasks are unsupported.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.protobuf import empty_pb2, field_mask_pb2

from shared.cloud.local_tasks_dispatch import (
    DEFAULT_DISPATCH_DEADLINE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_S,
    DEFAULT_MAX_CONCURRENT_DISPATCHES,
    DEFAULT_MAX_DISPATCHES_PER_SECOND,
    DEFAULT_MAX_DOUBLINGS,
    DEFAULT_MIN_BACKOFF_S,
    MAX_CONCURRENT_DISPATCHES,
    MAX_DISPATCH_DEADLINE_S,
    MAX_DISPATCHES_PER_SECOND,
    MIN_DISPATCH_DEADLINE_S,
    Dispatcher,
    QueueState,
    TaskEntry,
    TokenBucket,
    burst_for,
    utc,
)

SERVICE = "google.cloud.tasks.v2.CloudTasks"
_LOCATION = re.compile(r"^projects/[^/]+/locations/[^/]+$")
_QUEUE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_CODE = grpc.StatusCode


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _page(items: list[Any], page_size: int, page_token: str) -> tuple[list[Any], str]:
    start = int(page_token) if page_token.isdigit() else 0
    size = page_size if page_size > 0 else 1000
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


class QueueBook:
    """Queues and tasks, and the RPCs that change them. Callers hold `lock`."""

    def __init__(self, name_reuse_s: float, default_burst: int | None) -> None:
        self.lock = threading.Lock()
        self.queues: dict[str, QueueState] = {}  # by full queue name
        self._reserved: dict[str, float] = {}    # task name -> reusable after (epoch)
        self._name_reuse_s = name_reuse_s
        self._default_burst = default_burst
        self._seq = itertools.count()

    # ---- helpers ----------------------------------------------------------------------
    def _queue(self, name: str) -> QueueState:
        q = self.queues.get(name)
        if q is None:
            raise Abort(_CODE.NOT_FOUND, f"Queue {name} does not exist.")
        return q

    def _normalised(self, queue: tasks_v2.Queue, burst_requested: int) -> tasks_v2.Queue:
        q = tasks_v2.Queue(queue)
        rl, rc = q.rate_limits, q.retry_config
        rate = rl.max_dispatches_per_second or DEFAULT_MAX_DISPATCHES_PER_SECOND
        if not 0 < rate <= MAX_DISPATCHES_PER_SECOND:
            raise Abort(_CODE.INVALID_ARGUMENT, f"max_dispatches_per_second must be 0..{MAX_DISPATCHES_PER_SECOND}")
        concurrency = rl.max_concurrent_dispatches or DEFAULT_MAX_CONCURRENT_DISPATCHES
        if not 0 < concurrency <= MAX_CONCURRENT_DISPATCHES:
            raise Abort(_CODE.INVALID_ARGUMENT, f"max_concurrent_dispatches must be 1..{MAX_CONCURRENT_DISPATCHES}")
        rl.max_dispatches_per_second = rate
        rl.max_concurrent_dispatches = concurrency
        rl.max_burst_size = burst_for(rate, burst_requested, self._default_burst)
        if rc.max_attempts < -1:
            raise Abort(_CODE.INVALID_ARGUMENT, "max_attempts must be >= -1")
        rc.max_attempts = rc.max_attempts or DEFAULT_MAX_ATTEMPTS
        rc.max_doublings = rc.max_doublings or DEFAULT_MAX_DOUBLINGS
        if not rc.min_backoff.total_seconds():
            rc.min_backoff = {"nanos": int(DEFAULT_MIN_BACKOFF_S * 1e9)}
        if not rc.max_backoff.total_seconds():
            rc.max_backoff = {"seconds": int(DEFAULT_MAX_BACKOFF_S)}
        if rc.min_backoff > rc.max_backoff:
            raise Abort(_CODE.INVALID_ARGUMENT, "min_backoff must not exceed max_backoff")
        if q.state == tasks_v2.Queue.State.STATE_UNSPECIFIED:
            q.state = tasks_v2.Queue.State.RUNNING
        return q

    def _add_queue(self, queue: tasks_v2.Queue) -> QueueState:
        name = queue.name
        parent, _, queue_id = name.rpartition("/queues/")
        if not _LOCATION.match(parent) or not _QUEUE_ID.match(queue_id):
            raise Abort(_CODE.INVALID_ARGUMENT, f"bad queue name {name!r}")
        pb = self._normalised(queue, queue.rate_limits.max_burst_size)
        bucket = TokenBucket(pb.rate_limits.max_dispatches_per_second, pb.rate_limits.max_burst_size, time.time())
        state = QueueState(queue_id=queue_id, pb=pb, bucket=bucket)
        self.queues[name] = state
        return state

    def remove_task(self, q: QueueState, name: str, now: float) -> None:
        q.tasks.pop(name, None)
        self._reserved[name] = now + self._name_reuse_s

    def stats(self) -> dict[str, dict[str, int]]:
        return {q.queue_id: q.stats() for q in self.queues.values()}

    # ---- queue RPCs -------------------------------------------------------------------
    def create_queue(self, req: tasks_v2.CreateQueueRequest) -> tasks_v2.Queue:
        if not req.queue.name.startswith(req.parent + "/queues/"):
            raise Abort(_CODE.INVALID_ARGUMENT, "queue.name must be under parent")
        if req.queue.name in self.queues:
            raise Abort(_CODE.ALREADY_EXISTS, f"Queue {req.queue.name} already exists.")
        return tasks_v2.Queue(self._add_queue(req.queue).pb)

    def get_queue(self, req: tasks_v2.GetQueueRequest) -> tasks_v2.Queue:
        return tasks_v2.Queue(self._queue(req.name).pb)

    def update_queue(self, req: tasks_v2.UpdateQueueRequest) -> tasks_v2.Queue:
        existing = self.queues.get(req.queue.name)
        if existing is None:  # as in Cloud Tasks, UpdateQueue creates a missing queue
            return tasks_v2.Queue(self._add_queue(req.queue).pb)
        paths = list(req.update_mask.paths)
        merged = tasks_v2.Queue.pb(tasks_v2.Queue(existing.pb))
        if paths:
            mask = field_mask_pb2.FieldMask(paths=paths)
            mask.MergeMessage(tasks_v2.Queue.pb(req.queue), merged, replace_message_field=True)
        else:
            merged.rate_limits.CopyFrom(tasks_v2.Queue.pb(req.queue).rate_limits)
            merged.retry_config.CopyFrom(tasks_v2.Queue.pb(req.queue).retry_config)
        explicit = not paths or any(p in ("rate_limits", "rate_limits.max_burst_size") for p in paths)
        burst = req.queue.rate_limits.max_burst_size if explicit else existing.pb.rate_limits.max_burst_size
        pb = self._normalised(tasks_v2.Queue.wrap(merged), burst)
        existing.pb = pb
        existing.bucket.reconfigure(pb.rate_limits.max_dispatches_per_second, pb.rate_limits.max_burst_size,
                                    time.time())
        return tasks_v2.Queue(pb)

    def list_queues(self, req: tasks_v2.ListQueuesRequest) -> tasks_v2.ListQueuesResponse:
        names = sorted(n for n in self.queues if n.startswith(req.parent + "/queues/"))
        page, token = _page(names, req.page_size, req.page_token)
        return tasks_v2.ListQueuesResponse(queues=[tasks_v2.Queue(self.queues[n].pb) for n in page],
                                           next_page_token=token)

    def delete_queue(self, req: tasks_v2.DeleteQueueRequest) -> empty_pb2.Empty:
        self._queue(req.name)
        del self.queues[req.name]
        return empty_pb2.Empty()

    def purge_queue(self, req: tasks_v2.PurgeQueueRequest) -> tasks_v2.Queue:
        q = self._queue(req.name)
        now = time.time()
        for name in list(q.tasks):
            self.remove_task(q, name, now)
        q.pb.purge_time = utc(now)
        return tasks_v2.Queue(q.pb)

    def pause_queue(self, req: tasks_v2.PauseQueueRequest) -> tasks_v2.Queue:
        q = self._queue(req.name)
        q.pb.state = tasks_v2.Queue.State.PAUSED
        return tasks_v2.Queue(q.pb)

    def resume_queue(self, req: tasks_v2.ResumeQueueRequest) -> tasks_v2.Queue:
        q = self._queue(req.name)
        q.pb.state = tasks_v2.Queue.State.RUNNING
        return tasks_v2.Queue(q.pb)

    # ---- task RPCs --------------------------------------------------------------------
    def _view(self, entry: TaskEntry, view: tasks_v2.Task.View) -> tasks_v2.Task:
        out = tasks_v2.Task(entry.pb)
        out.view = view or tasks_v2.Task.View.BASIC
        return out

    def create_task(self, req: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        q = self._queue(req.parent)
        task = tasks_v2.Task(req.task)
        now = time.time()
        if task.name:
            parent, _, task_id = task.name.rpartition("/tasks/")
            if parent != req.parent or not _TASK_ID.match(task_id):
                raise Abort(_CODE.INVALID_ARGUMENT, f"bad task name {task.name!r} for queue {req.parent}")
            if task.name in q.tasks or self._reserved.get(task.name, 0.0) > now:
                raise Abort(_CODE.ALREADY_EXISTS, "Requested entity already exists")
        else:
            task.name = f"{req.parent}/tasks/{uuid.uuid4().int % 10**19:019d}"
        if "app_engine_http_request" in task:
            raise Abort(_CODE.UNIMPLEMENTED, "App Engine tasks are not supported by the local server")
        if not task.http_request.url.startswith(("http://", "https://")):
            raise Abort(_CODE.INVALID_ARGUMENT, "http_request.url must be an http(s) URL")
        deadline = task.dispatch_deadline.total_seconds() or DEFAULT_DISPATCH_DEADLINE_S
        if not MIN_DISPATCH_DEADLINE_S <= deadline <= MAX_DISPATCH_DEADLINE_S:
            raise Abort(_CODE.INVALID_ARGUMENT, "dispatch_deadline must be between 15 s and 30 min")
        task.dispatch_deadline = {"seconds": int(deadline), "nanos": int(deadline % 1 * 1e9)}
        due = task.schedule_time.timestamp() if "schedule_time" in task else now
        task.schedule_time = utc(due)
        task.create_time = utc(now)
        entry = TaskEntry(pb=task, due=due, seq=next(self._seq))
        q.tasks[task.name] = entry
        return self._view(entry, req.response_view)

    def _task(self, name: str) -> tuple[QueueState, TaskEntry]:
        q = self._queue(name.rpartition("/tasks/")[0])
        entry = q.tasks.get(name)
        if entry is None:
            raise Abort(_CODE.NOT_FOUND, f"Task {name} does not exist.")
        return q, entry

    def get_task(self, req: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
        return self._view(self._task(req.name)[1], req.response_view)

    def delete_task(self, req: tasks_v2.DeleteTaskRequest) -> empty_pb2.Empty:
        q, _ = self._task(req.name)
        self.remove_task(q, req.name, time.time())
        return empty_pb2.Empty()

    def list_tasks(self, req: tasks_v2.ListTasksRequest) -> tasks_v2.ListTasksResponse:
        q = self._queue(req.parent)
        entries = sorted(q.tasks.values(), key=lambda e: e.seq)
        page, token = _page(entries, req.page_size, req.page_token)
        return tasks_v2.ListTasksResponse(tasks=[self._view(e, req.response_view) for e in page],
                                          next_page_token=token)


class LocalCloudTasks:
    """In-process Cloud Tasks: `start()` serves gRPC on loopback and dispatches pushes until `stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, name_reuse_s: float = 3600.0,
                 default_burst: int | None = 1, push_workers: int = 32, signer: Any = None,
                 roles: Any = None) -> None:
        """`signer(email, audience)`: signs the OIDC tokens of pushes (a `LocalIssuer`'s id_token; without it an
        unsigned look-alike). `roles`: a `shared.cloud.identity.RoleCheck`; with it CreateTask needs a caller
        that may enqueue into the queue and act as the task's OIDC account, every other RPC the admin."""
        self._roles = roles
        self._host, self._port = host, port
        self._book = QueueBook(name_reuse_s=name_reuse_s, default_burst=default_burst)
        self._cond = threading.Condition(self._book.lock)
        self._dispatcher = Dispatcher(self._cond, self._book.queues, self._book.remove_task, push_workers, signer)
        self._server: grpc.Server | None = None
        self.address = ""

    def start(self) -> str:
        server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="local-tasks-rpc"))
        server.add_generic_rpc_handlers((self._handlers(),))
        port = server.add_insecure_port(f"{self._host}:{self._port}")
        server.start()
        self._server = server
        self.address = f"{self._host}:{port}"
        self._dispatcher.start()
        return self.address

    def stop(self) -> None:
        self._dispatcher.stop()
        if self._server is not None:
            self._server.stop(grace=0.5).wait(timeout=5)

    def __enter__(self) -> LocalCloudTasks:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self) -> tasks_v2.CloudTasksClient:
        """A real client connected to this server over an insecure loopback channel."""
        channel = grpc.insecure_channel(self.address)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))

    def stats(self) -> dict[str, dict[str, int]]:
        """Per queue id: dispatched (push attempts), succeeded, retried, failed (gave up), depth, in_flight."""
        with self._cond:
            return self._book.stats()

    def dispatch_times(self, queue_id: str) -> list[float]:
        """Epoch times of the latest pushes (every attempt) of a queue, oldest first."""
        with self._cond:
            for q in self._book.queues.values():
                if q.queue_id == queue_id:
                    return list(q.dispatch_log)
        return []

    def wait_idle(self, timeout: float) -> bool:
        """Block until every queue is empty or the timeout passes; True when idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(q.tasks for q in self._book.queues.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def _check(self, fn: Callable[[Any], Any], request: Any, context: grpc.ServicerContext) -> None:
        if self._roles is None:
            return
        if getattr(fn, "__name__", "") != "create_task":
            self._roles.check(context, "admin", "queues")
            return
        self._roles.check(context, "tasks.create", request.parent.rsplit("/", 1)[-1])
        oidc = request.task.http_request.oidc_token.service_account_email
        if oidc:
            self._roles.check(context, "act_as", oidc)

    def _handlers(self) -> grpc.GenericRpcHandler:
        def unary(fn: Callable[[Any], Any], req_type: Any,
                  serialize: Callable[[Any], bytes]) -> grpc.RpcMethodHandler[Any, Any]:
            def handle(request: Any, context: grpc.ServicerContext) -> Any:
                self._check(fn, request, context)
                try:
                    with self._cond:
                        out = fn(request)
                        self._cond.notify_all()  # the dispatcher re-reads queues and tasks
                    return out
                except Abort as exc:
                    context.abort(exc.code, exc.message)
            return grpc.unary_unary_rpc_method_handler(
                handle, request_deserializer=req_type.deserialize, response_serializer=serialize)

        b, t, empty = self._book, tasks_v2, empty_pb2.Empty.SerializeToString
        return grpc.method_handlers_generic_handler(SERVICE, {
            "CreateQueue": unary(b.create_queue, t.CreateQueueRequest, t.Queue.serialize),
            "GetQueue": unary(b.get_queue, t.GetQueueRequest, t.Queue.serialize),
            "UpdateQueue": unary(b.update_queue, t.UpdateQueueRequest, t.Queue.serialize),
            "ListQueues": unary(b.list_queues, t.ListQueuesRequest, t.ListQueuesResponse.serialize),
            "DeleteQueue": unary(b.delete_queue, t.DeleteQueueRequest, empty),
            "PurgeQueue": unary(b.purge_queue, t.PurgeQueueRequest, t.Queue.serialize),
            "PauseQueue": unary(b.pause_queue, t.PauseQueueRequest, t.Queue.serialize),
            "ResumeQueue": unary(b.resume_queue, t.ResumeQueueRequest, t.Queue.serialize),
            "CreateTask": unary(b.create_task, t.CreateTaskRequest, t.Task.serialize),
            "GetTask": unary(b.get_task, t.GetTaskRequest, t.Task.serialize),
            "DeleteTask": unary(b.delete_task, t.DeleteTaskRequest, empty),
            "ListTasks": unary(b.list_tasks, t.ListTasksRequest, t.ListTasksResponse.serialize),
        })


def run(argv: list[str] | None = None) -> int:
    """`python -m shared.cloud.local_tasks_server --port 8123`: serve, with the drain queues from settings."""
    import argparse

    from shared.cloud.tasks import ensure_queues, queue_specs
    from shared.config import load_settings

    parser = argparse.ArgumentParser(prog="local-cloud-tasks", description="local Cloud Tasks v2 gRPC server")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args(argv)
    settings = load_settings()
    with LocalCloudTasks(port=args.port) as server:
        names = ensure_queues(server.client(), settings.gcp_project or "local", settings.gcp_region,
                              queue_specs(settings))
        print(f"local Cloud Tasks on {server.address}: {', '.join(n.rsplit('/', 1)[1] for n in names)}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
