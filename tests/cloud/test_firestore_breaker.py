"""FirestoreBreakerStorage against the real Firestore emulator: writes only on transitions, bounded under storms."""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.clock import FakeClock
from shared.kis.errors import KISServerError
from shared.market.breaker import CLOSED, HALF_OPEN, OPEN, BreakerOpenError, SharedBreaker


class CountingClient:
    """The real client, with every document read and write counted (attempted writes, not just committed)."""

    def __init__(self, client):
        self._client = client
        self.lock = threading.Lock()
        self.writes: list[tuple[str, dict]] = []  # every attempt, including those a precondition refused
        self.committed: list[str] = []
        self.reads = 0

    def collection(self, name):
        return _CountingCollection(self, self._client.collection(name))

    def write_option(self, **kw):
        return self._client.write_option(**kw)


class _CountingCollection:
    def __init__(self, counter, ref):
        self._counter, self._ref = counter, ref

    def document(self, name):
        return _CountingDocument(self._counter, self._ref.document(name))


class _CountingDocument:
    def __init__(self, counter, ref):
        self._counter, self._ref = counter, ref

    def get(self, *a, **kw):
        with self._counter.lock:
            self._counter.reads += 1
        return self._ref.get(*a, **kw)

    def _write(self, method, data, *a, **kw):
        with self._counter.lock:
            self._counter.writes.append((method, dict(data)))
        result = getattr(self._ref, method)(data, *a, **kw)
        with self._counter.lock:
            self._counter.committed.append(data["state"])
        return result

    def create(self, data, *a, **kw):
        return self._write("create", data, *a, **kw)

    def update(self, data, *a, **kw):
        return self._write("update", data, *a, **kw)

    def set(self, data, *a, **kw):
        return self._write("set", data, *a, **kw)


@pytest.fixture
def client(firestore_host):
    from google.cloud import firestore

    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_host

    return firestore.Client(project=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def doc_name():
    return f"kis-{uuid.uuid4().hex[:6]}"


def storage_for(client, doc_name, clock, **kw):
    from shared.cloud.firestore_breaker import FirestoreBreakerStorage

    return FirestoreBreakerStorage(client, collection="breakers", name=doc_name, clock=clock, **kw)


def fleet_member(counting, doc_name, redis_client, redis_prefix, read_ttl_s):
    """An instance's breaker (fail_max 1) sharing its reads through Redis, on the system clock."""
    from shared.clock import SYSTEM_CLOCK

    return SharedBreaker(storage_for(counting, doc_name, SYSTEM_CLOCK, redis=redis_client, redis_prefix=redis_prefix,
                                     read_ttl_s=read_ttl_s), fail_max=1, reset_timeout_s=60, clock=SYSTEM_CLOCK)


def fail() -> None:
    raise KISServerError("down", http_status=503)


def test_no_writes_without_a_transition(client, doc_name):
    clock = FakeClock()
    counting = CountingClient(client)
    breaker = SharedBreaker(storage_for(counting, doc_name, clock), fail_max=20, reset_timeout_s=60, clock=clock)
    for _ in range(300):
        assert breaker.call(lambda: "ok") == "ok"
    for _ in range(19):
        with pytest.raises(KISServerError):
            breaker.call(fail)
    assert counting.writes == []
    assert counting.reads == 1  # one read, then the cache (the clock has not moved)
    assert not client.collection("breakers").document(doc_name).get().exists

    with pytest.raises(KISServerError):
        breaker.call(fail)
    assert [m for m, _ in counting.writes] == ["create"]
    stored = client.collection("breakers").document(doc_name).get().to_dict()
    assert stored["state"] == OPEN
    assert stored["opened_at"] == pytest.approx(clock.time())
    assert "failures" not in stored and "failure_count" not in stored


def test_other_instance_sees_transition_within_read_ttl(client, doc_name):
    clock = FakeClock()
    first = SharedBreaker(storage_for(client, doc_name, clock), fail_max=3, reset_timeout_s=60, clock=clock)
    second = SharedBreaker(storage_for(client, doc_name, clock), fail_max=3, reset_timeout_s=60, clock=clock)
    assert second.call(lambda: "warm cache") == "warm cache"
    for _ in range(3):
        with pytest.raises(KISServerError):
            first.call(fail)
    assert first.state == OPEN
    assert second.call(lambda: "cached view, still closed") == "cached view, still closed"
    clock.advance(1.0)
    with pytest.raises(BreakerOpenError):
        second.call(lambda: "x")


def test_failure_run_shared_through_redis(client, doc_name, redis_client, redis_prefix):
    clock = FakeClock()
    first, second = (SharedBreaker(storage_for(client, doc_name, clock, redis=redis_client, redis_prefix=redis_prefix),
                                   fail_max=20, reset_timeout_s=60, clock=clock) for _ in range(2))
    for _ in range(10):
        for breaker in (first, second):
            with pytest.raises(KISServerError):
                breaker.call(fail)
    assert second.state == OPEN  # the 20th failure of the fleet was second's 10th
    clock.advance(1.0)
    assert first.state == OPEN


def test_storm_of_failures_writes_a_handful_per_transition(client, doc_name):
    """500 failing calls from 8 threads on 2 instances, 50 simulated seconds: the document changes only
    on transitions, and each transition costs at most one attempted write per instance."""
    clock = FakeClock()
    clock_lock = threading.Lock()
    counting = CountingClient(client)
    transitions: list[tuple[str, str]] = []
    instances = [SharedBreaker(storage_for(counting, doc_name, clock), fail_max=20, reset_timeout_s=20, clock=clock,
                               listeners=[lambda old, new: transitions.append((old, new))]) for _ in range(2)]
    attempts = {"kis": 0, "refused": 0}

    def failing_kis_call() -> None:
        with clock_lock:
            attempts["kis"] += 1
        fail()

    def worker(i: int) -> None:
        breaker = instances[i % 2]
        for _ in range(500 // 8 + (1 if i < 500 % 8 else 0)):
            try:
                breaker.call(failing_kis_call)
            except BreakerOpenError:
                with clock_lock:
                    attempts["refused"] += 1
            except KISServerError:
                pass
            with clock_lock:
                clock.advance(0.1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))

    stored = client.collection("breakers").document(doc_name).get().to_dict()
    print(f"\nstorm: {attempts['kis']} calls reached KIS, {attempts['refused']} refused; "
          f"{len(counting.writes)} write attempts, committed {counting.committed}; {counting.reads} reads")
    assert attempts["kis"] + attempts["refused"] == 500
    # Each instance needs its own 20 failures (local runs) plus the probes; calls already admitted when
    # the breaker opened (at most one per thread) may still fail.
    assert attempts["kis"] <= 2 * 20 + 8 + 4
    # Opens at ~2 s, then a probe every 20 s that fails: open, half-open, open, half-open, open.
    assert stored["state"] == OPEN
    assert counting.committed[0] == OPEN and counting.committed.count(HALF_OPEN) >= 1
    assert CLOSED not in counting.committed
    assert len(counting.committed) <= 1 + 2 * 3
    assert len(counting.writes) <= 2 * len(counting.committed)  # at most one attempt per instance per transition
    assert counting.reads < 200  # cached: about one per simulated second per instance, plus transitions


def test_instances_share_the_last_read_through_redis(client, doc_name, redis_client, redis_prefix):
    """A transition (or a document read) is left in Redis for read_ttl_s: a new instance answers from it
    without reading the document, and reads the document once the copy is due."""

    def instance(counting):
        return fleet_member(counting, doc_name, redis_client, redis_prefix, read_ttl_s=2.0)

    first = instance(CountingClient(client))
    with pytest.raises(KISServerError):
        first.call(fail)  # opens it: the transition is the copy
    later = CountingClient(client)
    assert instance(later).state == OPEN
    assert later.reads == 0
    # The copy is due 2 s after the transition: the next instance reads the document, then leaves its copy.
    threading.Event().wait(2.1)
    due = CountingClient(client)
    assert instance(due).state == OPEN and due.reads == 1
    last = CountingClient(client)
    assert instance(last).state == OPEN and last.reads == 0


def test_a_copy_is_trusted_only_for_what_is_left_of_its_read_ttl(client, doc_name, redis_client, redis_prefix):
    from shared.clock import SYSTEM_CLOCK

    def storage(counting):
        return storage_for(counting, doc_name, SYSTEM_CLOCK, redis=redis_client, redis_prefix=redis_prefix,
                           read_ttl_s=3.0)

    assert storage(CountingClient(client)).snapshot().state == CLOSED  # read, and left for 3 s
    threading.Event().wait(1.5)
    late = CountingClient(client)
    reader = storage(late)
    assert reader.snapshot().state == CLOSED and late.reads == 0  # the copy, about 1.5 s of it left
    # Another writer changes the document; the reader sees it once the copy's 3 s are over, not 3 s later.
    client.collection("breakers").document(doc_name).set({"state": OPEN, "opened_at": SYSTEM_CLOCK.time()})
    threading.Event().wait(1.7)
    assert reader.snapshot().state == OPEN and late.reads == 1



def test_what_is_shown_may_be_an_older_read_with_its_age_and_decisions_never_are(client, doc_name, redis_client,
                                                                                 redis_prefix):
    """Health and stats show the fleet's last read or transition, with its age, without reading the document once
    the deciding copy is due; a decision (`state`, `refusing`) in the same instance reads the document."""

    def instance(counting):
        return fleet_member(counting, doc_name, redis_client, redis_prefix, read_ttl_s=0.5)

    first = instance(CountingClient(client))
    with pytest.raises(KISServerError):
        first.call(fail)  # opens it: the transition is left in Redis
    threading.Event().wait(0.8)  # the deciding copy (0.5 s) is over; the shown one is not
    later = CountingClient(client)
    shown = instance(later).describe()
    assert shown["state"] == OPEN and 0.7 <= shown["age_s"] < 5 and later.reads == 0
    assert shown["retry_after_s"] > 0
    # Another writer closes it without the gateway (no copy written): a decision sees it, the shown state lags
    # until a read of the document is left in Redis again, which the decision's read is.
    client.collection("breakers").document(doc_name).set({"state": CLOSED})
    deciding = CountingClient(client)
    other = instance(deciding)
    assert other.state == CLOSED and deciding.reads == 1
    again = instance(CountingClient(client)).describe()
    assert again["state"] == CLOSED and again.get("age_s", 0) < 0.5


def test_without_a_shown_copy_the_document_is_read_for_the_health_check(client, doc_name):
    counting = CountingClient(client)
    shown = SharedBreaker(storage_for(counting, doc_name, FakeClock(), read_ttl_s=1.0), fail_max=1,
                          reset_timeout_s=60).describe()
    assert shown["state"] == CLOSED and "age_s" not in shown and counting.reads == 1
