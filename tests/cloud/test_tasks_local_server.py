"""The real google-cloud-tasks client over gRPC against the local server, pushing to a loopback receiver."""

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from shared import budget
from shared.backends import trigger_from_settings
from shared.cloud.local_tasks_server import LocalCloudTasks
from shared.cloud.tasks import CloudTasksTrigger, ensure_queues, queue_specs
from shared.config import load_settings

PARENT = "projects/p/locations/l"


class Receiver:
    """A loopback HTTP endpoint recording every push; `statuses[task_id]` scripts the answers."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.pushes: list[dict] = []
        self.statuses: dict[str, list[int]] = {}
        self.delay_s = delay_s
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.active += 1
                    receiver.max_active = max(receiver.max_active, receiver.active)
                    receiver.pushes.append({"at": time.time(), "path": self.path, "headers": dict(self.headers),
                                            "body": body})
                    script = receiver.statuses.get(self.headers.get("X-CloudTasks-TaskName", ""), [])
                    status = script.pop(0) if script else 200
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    receiver.active -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.pushes) >= n:
                return True
            time.sleep(0.02)
        return len(self.pushes) >= n


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def local_tasks():
    server = LocalCloudTasks()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(local_tasks):
    return local_tasks.client()


def make_queue(client, queue_id, rate=500.0, concurrency=0, retry=None):
    queue = tasks_v2.Queue(name=f"{PARENT}/queues/{queue_id}",
                           rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=rate,
                                                           max_concurrent_dispatches=concurrency),
                           retry_config=retry)
    return client.create_queue(parent=PARENT, queue=queue)


def http_task(queue, task_id, url, **kw):
    name = f"{queue.name}/tasks/{task_id}" if task_id else ""
    return tasks_v2.Task(name=name, http_request=tasks_v2.HttpRequest(url=url, **kw))


@pytest.mark.slow
def test_fifty_tasks_on_a_five_per_second_queue_take_at_least_9_8_s(local_tasks, client, receiver):
    queue = make_queue(client, "paced", rate=5, concurrency=10)
    for i in range(50):
        client.create_task(parent=queue.name, task=http_task(queue, f"t{i}", receiver.url + "/drain"))
    assert receiver.wait_for(50, timeout=20)
    times = local_tasks.dispatch_times("paced")
    assert len(times) == 50
    span = times[-1] - times[0]
    print(f"50 tasks at 5/s: dispatch span {span:.3f} s, receive span "
          f"{receiver.pushes[-1]['at'] - receiver.pushes[0]['at']:.3f} s")
    assert span >= 9.8 - 1e-6
    # No 1-second window ever held more than the rate allows (5, the bucket holding 1).
    assert all(sum(1 for t in times if s <= t < s + 1.0) <= 5 for s in times)


def test_max_concurrent_dispatches_is_honoured(local_tasks, client):
    slow = Receiver(delay_s=0.25)
    try:
        queue = make_queue(client, "narrow", rate=100, concurrency=2)
        for i in range(8):
            client.create_task(parent=queue.name, task=http_task(queue, f"t{i}", slow.url))
        assert local_tasks.wait_idle(10)
        assert len(slow.pushes) == 8
        assert slow.max_active == 2
    finally:
        slow.close()


def test_duplicate_task_name_is_already_exists_while_in_use_and_after_completion(local_tasks, client, receiver):
    queue = make_queue(client, "dedup")
    client.create_task(parent=queue.name, task=http_task(queue, "drain-quotes-1", receiver.url))
    with pytest.raises(gexc.AlreadyExists):
        client.create_task(parent=queue.name, task=http_task(queue, "drain-quotes-1", receiver.url))
    assert local_tasks.wait_idle(5)
    with pytest.raises(gexc.AlreadyExists):  # the name stays reserved after the task ran
        client.create_task(parent=queue.name, task=http_task(queue, "drain-quotes-1", receiver.url))
    assert len(receiver.pushes) == 1


def test_name_reuse_window_is_configurable(receiver):
    with LocalCloudTasks(name_reuse_s=0.0) as server:
        client = server.client()
        queue = make_queue(client, "reuse")
        client.create_task(parent=queue.name, task=http_task(queue, "same", receiver.url))
        assert server.wait_idle(5)
        client.create_task(parent=queue.name, task=http_task(queue, "same", receiver.url))
        assert server.wait_idle(5)
    assert len(receiver.pushes) == 2


def test_a_503_task_is_retried_as_retry_config_says(local_tasks, client, receiver):
    retry = tasks_v2.RetryConfig(max_attempts=4, min_backoff={"nanos": 100_000_000}, max_backoff={"seconds": 10},
                                 max_doublings=2)
    queue = make_queue(client, "flaky", retry=retry)
    receiver.statuses["always-503"] = [503] * 10
    client.create_task(parent=queue.name, task=http_task(queue, "always-503", receiver.url))
    assert local_tasks.wait_idle(10)
    pushes = receiver.pushes
    assert len(pushes) == 4  # max_attempts counts the first attempt
    assert [p["headers"]["X-CloudTasks-TaskRetryCount"] for p in pushes] == ["0", "1", "2", "3"]
    assert {p["headers"]["X-CloudTasks-TaskExecutionCount"] for p in pushes} == {"0"}  # 5xx is not an execution
    assert [p["headers"].get("X-CloudTasks-TaskPreviousResponse") for p in pushes] == [None, "503", "503", "503"]
    gaps = [b["at"] - a["at"] for a, b in zip(pushes, pushes[1:], strict=False)]
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4], strict=True):  # min_backoff doubled max_doublings times
        assert gap >= expected - 0.01
    assert gaps[0] < gaps[1] < gaps[2]
    assert local_tasks.stats()["flaky"] == {"dispatched": 4, "succeeded": 0, "retried": 3, "failed": 1,
                                            "depth": 0, "in_flight": 0}


def test_a_4xx_counts_as_an_execution_and_a_later_2xx_finishes(local_tasks, client, receiver):
    retry = tasks_v2.RetryConfig(max_attempts=5, min_backoff={"nanos": 50_000_000}, max_backoff={"seconds": 1})
    queue = make_queue(client, "fourxx", retry=retry)
    receiver.statuses["t"] = [404, 200]
    client.create_task(parent=queue.name, task=http_task(queue, "t", receiver.url))
    assert local_tasks.wait_idle(5)
    assert [p["headers"]["X-CloudTasks-TaskExecutionCount"] for p in receiver.pushes] == ["0", "1"]
    assert local_tasks.stats()["fourxx"]["succeeded"] == 1


def test_push_carries_the_cloud_tasks_headers_body_and_oidc_token(local_tasks, client, receiver):
    queue = make_queue(client, "headers")
    task = http_task(queue, "h1", receiver.url + "/internal/drain", body=b'{"slot": 1}',
                     headers={"Content-Type": "application/json"},
                     oidc_token=tasks_v2.OidcToken(service_account_email="drain@p.iam.gserviceaccount.com",
                                                   audience="https://gw.example"))
    created = client.create_task(parent=queue.name, task=task)
    assert receiver.wait_for(1, timeout=5)
    push = receiver.pushes[0]
    h = push["headers"]
    assert push["path"] == "/internal/drain" and push["body"] == b'{"slot": 1}'
    assert h["Content-Type"] == "application/json"
    assert h["X-CloudTasks-QueueName"] == "headers"
    assert h["X-CloudTasks-TaskName"] == "h1"
    assert h["X-CloudTasks-TaskRetryCount"] == "0"
    assert h["X-CloudTasks-TaskExecutionCount"] == "0"
    assert float(h["X-CloudTasks-TaskETA"]) == pytest.approx(created.schedule_time.timestamp(), abs=1e-3)
    scheme, token = h["Authorization"].split(" ")
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert scheme == "Bearer"
    assert claims["aud"] == "https://gw.example"
    assert claims["email"] == "drain@p.iam.gserviceaccount.com"


def test_schedule_time_delays_the_dispatch(local_tasks, client, receiver):
    queue = make_queue(client, "later")
    eta = datetime.now(UTC) + timedelta(seconds=0.5)
    task = http_task(queue, "later", receiver.url)
    task.schedule_time = eta
    client.create_task(parent=queue.name, task=task)
    assert receiver.wait_for(1, timeout=5)
    assert local_tasks.dispatch_times("later")[0] >= eta.timestamp()


def test_get_list_delete_purge_pause_resume(local_tasks, client, receiver):
    queue = make_queue(client, "crud")
    client.pause_queue(name=queue.name)
    for i in range(3):
        client.create_task(parent=queue.name, task=http_task(queue, f"t{i}", receiver.url))
    unnamed = client.create_task(parent=queue.name, task=http_task(queue, "", receiver.url))
    assert unnamed.name.startswith(queue.name + "/tasks/")
    listed = [t.name for t in client.list_tasks(request={"parent": queue.name, "page_size": 2})]
    assert listed == [f"{queue.name}/tasks/t{i}" for i in range(3)] + [unnamed.name]
    got = client.get_task(name=f"{queue.name}/tasks/t1")
    assert got.http_request.url == receiver.url and got.dispatch_count == 0
    client.delete_task(name=f"{queue.name}/tasks/t1")
    with pytest.raises(gexc.NotFound):
        client.get_task(name=f"{queue.name}/tasks/t1")
    with pytest.raises(gexc.NotFound):
        client.delete_task(name=f"{queue.name}/tasks/t1")
    assert local_tasks.stats()["crud"]["depth"] == 3
    purged = client.purge_queue(name=queue.name)
    assert purged.purge_time is not None
    assert list(client.list_tasks(parent=queue.name)) == []
    client.resume_queue(name=queue.name)
    client.create_task(parent=queue.name, task=http_task(queue, "after-resume", receiver.url))
    assert local_tasks.wait_idle(5)
    assert [p["headers"]["X-CloudTasks-TaskName"] for p in receiver.pushes] == ["after-resume"]


def test_queue_lifecycle_and_errors(client, receiver):
    queue = make_queue(client, "life", rate=7)
    assert queue.rate_limits.max_burst_size == 1
    assert queue.state == tasks_v2.Queue.State.RUNNING
    with pytest.raises(gexc.AlreadyExists):
        make_queue(client, "life")
    with pytest.raises(gexc.InvalidArgument):
        make_queue(client, "too-fast", rate=501)
    assert [q.name for q in client.list_queues(parent=PARENT)] == [queue.name]
    client.delete_queue(name=queue.name)
    with pytest.raises(gexc.NotFound):
        client.get_queue(name=queue.name)
    with pytest.raises(gexc.NotFound):
        client.create_task(parent=queue.name, task=http_task(queue, "x", receiver.url))


def test_ensure_queues_creates_then_updates_from_settings(client):
    s = load_settings({})
    names = ensure_queues(client, "p", "l", queue_specs(s))
    assert len(names) == 3
    for spec in queue_specs(s):
        q = client.get_queue(name=f"{PARENT}/queues/{spec.queue_id}")
        assert q.rate_limits.max_dispatches_per_second == pytest.approx(spec.max_dispatches_per_second)
        assert q.rate_limits.max_concurrent_dispatches == spec.max_concurrent_dispatches
        assert q.retry_config.max_attempts == spec.max_attempts
    lower = load_settings({"GATEWAY_BUDGET": "5", "GCP_PROJECT": "p", "GCP_REGION": "l"})
    ensure_queues(client, lower)  # the settings form: project, region and specs from settings
    q = client.get_queue(name=f"{PARENT}/queues/kisgw-drain-quotes")
    assert q.rate_limits.max_dispatches_per_second == pytest.approx(budget.queue_rate(lower, "quotes"))


def test_cloud_tasks_trigger_collapses_repeated_names(local_tasks, client, receiver):
    s = load_settings({})
    ensure_queues(client, "p", "l", queue_specs(s))
    trigger = CloudTasksTrigger(client, "p", "l", "kisgw-drain", receiver.url,
                                oidc_service_account="drain@p.iam.gserviceaccount.com", dispatch_deadline_s=30)
    results = [trigger.request_drain("quotes", "quotes", 42) for _ in range(5)]
    assert results == [True, False, False, False, False]
    assert trigger.request_drain("quotes", "quotes", 43) is True
    assert receiver.wait_for(2, timeout=5)
    assert local_tasks.wait_idle(5)
    assert len(receiver.pushes) == 2
    first = receiver.pushes[0]
    assert first["path"] == "/internal/drain"
    assert json.loads(first["body"]) == {"kind": "quotes", "call_class": "quotes", "slot": 42}
    assert first["headers"]["X-CloudTasks-QueueName"] == "kisgw-drain-quotes"
    assert first["headers"]["X-CloudTasks-TaskName"] == "drain-quotes-42"
    assert first["headers"]["Authorization"].startswith("Bearer ")
    assert trigger.request_drain("quotes", "quotes", 42) is False  # still reserved after it ran


def test_trigger_from_settings_talks_to_a_local_server(local_tasks, receiver):
    s = load_settings({"TASK_QUEUE": f"cloudtasks://{local_tasks.address}", "TASK_TARGET_URL": receiver.url,
                       "GCP_PROJECT": "p", "GCP_REGION": "l"})
    ensure_queues(local_tasks.client(), "p", "l", queue_specs(s))
    trigger = trigger_from_settings(s)
    assert trigger.request_drain("info", "reference", 5) is True
    assert trigger.request_drain("info", "reference", 5) is False
    assert receiver.wait_for(1, timeout=5)
    assert receiver.pushes[0]["headers"]["X-CloudTasks-QueueName"] == "kisgw-drain-reference"
    assert "Authorization" not in receiver.pushes[0]["headers"]


def test_drain_task_carries_the_asking_request_id(local_tasks, client, receiver):
    from shared.observability import logs

    ensure_queues(client, "p", "l", queue_specs(load_settings({})))
    trigger = CloudTasksTrigger(client, "p", "l", "kisgw-drain", receiver.url)
    token = logs.request_id.set("req-trace-123")
    try:
        assert trigger.request_drain("quote", "quotes", 77) is True
    finally:
        logs.request_id.reset(token)
    assert receiver.wait_for(1, timeout=5)
    assert receiver.pushes[0]["headers"]["X-Request-Id"] == "req-trace-123"
