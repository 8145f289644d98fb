"""Circuit-breaker state in Firestore: one document per breaker, written only on transitions.

Firestore sustains about one write per second per document, so the run of consecutive failures is not
kept there: it is counted in this instance's memory (or in Redis when a client is given, to make the run
fleet-wide), and the document changes only when the breaker opens, a probe takes the half-open lease, or
the probe's verdict closes or reopens it. Each transition is a conditional write (`create()` for a new
document, `update()` with a last-update-time precondition otherwise): when instances race, one wins and
the others re-read and find nothing left to do. Threads of one instance do not race each other: one
tries, the rest carry on with what the cache says.

Reads are served from a per-instance cache for `read_ttl_s` (default 1 s), so a storm of calls costs at
most one document read per second per instance; another instance's transition is seen within that time.
With a Redis client, each document read (and each transition) is also left in Redis for `read_ttl_s`: an
instance whose own copy is due takes that one while it lives, so the fleet reads the document about once a
`read_ttl_s`, not once per instance, and a new instance (a health or stats check just started) answers
without loading the Firestore client at all. The bound is kept: a copy is trusted only for what is left of
its `read_ttl_s`, counted from the document read it came from.

What is only shown (health, stats, metrics: `shown_snapshot`) may come from an older copy: the same read or
transition is also kept for SHOWN_FOR_S, and shown with its age, so a health check started on an idle fleet
answers without loading the Firestore client (200-400 ms of a cold start). Every transition writes that copy,
so it lags the document only when a transition's write to Redis failed. Decisions never use it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.lazy import lazy_module
from shared.market import redis_keys
from shared.market.breaker_storage import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSnapshot,
    BreakerStorage,
    probe_allowed,
)

if TYPE_CHECKING:
    from google.api_core import exceptions as api_errors
else:
    api_errors = lazy_module("google.api_core.exceptions")  # loaded with the client, on the first read

Fields = dict[str, Any]
# How long the last read or transition is kept for display (`shown_snapshot`).
SHOWN_FOR_S = 60.0
_WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class _BreakerDoc:
    state: str = CLOSED
    opened_at: float | None = None
    probe_owner: str | None = None
    probe_until: float | None = None
    update_time: Any = None  # None: the document does not exist yet

    @classmethod
    def from_fields(cls, data: Fields | None, update_time: Any) -> _BreakerDoc:
        data = data or {}
        return cls(state=data.get("state") or CLOSED, opened_at=data.get("opened_at"),
                   probe_owner=data.get("probe_owner"), probe_until=data.get("probe_until"),
                   update_time=update_time)


class _LocalFailureRun:
    """Consecutive failures seen by this instance."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def incr(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def reset(self) -> None:
        with self._lock:
            self._n = 0

    @property
    def value(self) -> int:
        return self._n


class _RedisFailureRun:
    """Consecutive failures seen by the whole fleet, in one Redis counter."""

    shared = True

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self._key = key

    def incr(self) -> int:
        return cast(int, self._redis.incr(self._key))

    def reset(self) -> None:
        self._redis.set(self._key, 0)

    @property
    def value(self) -> int:
        raw = cast(bytes | None, self._redis.get(self._key))
        return int(raw) if raw else 0


class FirestoreBreakerStorage(BreakerStorage):
    def __init__(
        self,
        client: Any,
        *,
        collection: str = "breakers",
        name: str = "kis",
        clock: Clock = SYSTEM_CLOCK,
        read_ttl_s: float = 1.0,
        redis: redis.Redis | None = None,
        redis_prefix: str = "kisgw",
    ) -> None:
        super().__init__(name)
        self._client = client
        self._collection = collection
        self._doc_ref: Any = None  # the document, on first use (the client may be built on first use too)
        self._clock = clock
        self._read_ttl_s = read_ttl_s
        self._failures: _LocalFailureRun | _RedisFailureRun = (
            _RedisFailureRun(redis, redis_keys.breaker_failures(redis_prefix, name)) if redis is not None
            else _LocalFailureRun())
        self._copies = redis
        self._copy_key = redis_keys.breaker_copy(redis_prefix, name)
        self._shown_key = redis_keys.breaker_shown(redis_prefix, name)
        self._instance = uuid.uuid4().hex[:12]
        self._cache: tuple[float, _BreakerDoc] | None = None
        self._refresh_lock = threading.Lock()
        self._transition_lock = threading.Lock()
        self._successes = 0

    @property
    def _doc(self) -> Any:
        doc = self._doc_ref
        if doc is None:
            doc = self._doc_ref = self._client.collection(self._collection).document(self.name)
        return doc

    # ---- reading ---------------------------------------------------------------------------------
    def _read(self) -> _BreakerDoc:
        started = self._clock.monotonic()
        cached = self._cache
        # Mid-transition, this instance's own view is the newest there is: a read could only undo it.
        if cached and (started - cached[0] < self._read_ttl_s or self._transition_lock.locked()):
            return cached[1]
        # One reader per instance: threads arriving meanwhile wait for its answer rather than pass on a
        # stale view (under a storm that would let a burst of calls through an already open breaker).
        with self._refresh_lock:
            cached = self._cache
            if cached and cached[0] > started:
                return cached[1]
            copied = self._shared_copy()
            if copied is not None:
                doc, left_s = copied
                self._remember(doc, self._clock.monotonic() - (self._read_ttl_s - left_s))
                return doc
            doc = self._fetch()
            self._remember(doc)
            self._share(doc)
            return doc

    def _shared_copy(self) -> tuple[_BreakerDoc, float] | None:
        """The fleet's last read of the document and how long it may still be trusted (seconds), if any."""
        # Transitions read the document again (its update time is their precondition); this copy serves reads.
        return self._copy(self._copy_key)

    def _shown_copy(self) -> tuple[_BreakerDoc, float] | None:
        """The fleet's last read or transition kept for display, and its age (seconds), if any."""
        found = self._copy(self._shown_key)
        return None if found is None else (found[0], max(0.0, SHOWN_FOR_S - found[1]))

    def _copy(self, key: str) -> tuple[_BreakerDoc, float] | None:
        """The copy under `key` and the seconds it has left, if any (Redis unreachable: none)."""
        if self._copies is None:
            return None
        try:
            pipe = self._copies.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            raw, left_ms = pipe.execute()
            fields = json.loads(raw) if raw is not None else None
        except (redis.RedisError, ValueError):
            return None  # the document itself is read
        if not isinstance(fields, dict) or not isinstance(left_ms, int) or left_ms <= 0:
            return None
        return _BreakerDoc.from_fields(fields, None), left_ms / 1000

    def _share(self, doc: _BreakerDoc) -> None:
        """Leave this read (or transition) for the fleet: to decide with for read_ttl_s, to show for
        SHOWN_FOR_S."""
        if self._copies is None:
            return
        fields = json.dumps({"state": doc.state, "opened_at": doc.opened_at, "probe_owner": doc.probe_owner,
                             "probe_until": doc.probe_until})
        with contextlib.suppress(redis.RedisError):  # unreachable: the next reader reads the document
            pipe = self._copies.pipeline(transaction=False)
            pipe.set(self._copy_key, fields, px=max(1, int(self._read_ttl_s * 1000)))
            pipe.set(self._shown_key, fields, px=int(SHOWN_FOR_S * 1000))
            pipe.execute()

    def _fetch(self) -> _BreakerDoc:
        snap = self._doc.get()
        return _BreakerDoc.from_fields(snap.to_dict() if snap.exists else None,
                                       snap.update_time if snap.exists else None)

    def _remember(self, doc: _BreakerDoc, read_at: float | None = None) -> None:
        previous = self._cache
        self._cache = (self._clock.monotonic() if read_at is None else read_at, doc)
        if previous and previous[1].state != doc.state and not self._failures.shared:
            self._failures.reset()  # a new period starts: this instance's old failures no longer count

    def snapshot(self) -> BreakerSnapshot:
        doc = self._read()
        return BreakerSnapshot(doc.state, doc.opened_at, self._failures.value, doc.probe_until)

    def shown_snapshot(self) -> BreakerSnapshot:
        """As `snapshot`, but when this instance's own read is due, the fleet's last read or transition (kept
        for SHOWN_FOR_S) is shown with its age rather than the document read."""
        cached = self._cache
        if cached is None or self._clock.monotonic() - cached[0] >= self._read_ttl_s:
            shown = self._shown_copy()
            if shown is not None:
                doc, age_s = shown
                return BreakerSnapshot(doc.state, doc.opened_at, self._failures.value, doc.probe_until,
                                       age_s=round(age_s, 3))
        return self.snapshot()

    # ---- transitions -----------------------------------------------------------------------------
    def _transition(self, decide: Callable[[_BreakerDoc], Fields | None]) -> bool:
        """Write decide(current) with a precondition on the document's version; re-decide if we lost."""
        current = _BreakerDoc()
        for _ in range(_WRITE_ATTEMPTS):
            current = self._fetch()
            fields = decide(current)
            if fields is None:
                break
            fields = {**fields, "changed_by": self._instance}
            try:
                if current.update_time is None:
                    result = self._doc.create({"state": CLOSED, "opened_at": None, "probe_owner": None,
                                               "probe_until": None, **fields})
                else:
                    option = self._client.write_option(last_update_time=current.update_time)
                    result = self._doc.update(fields, option=option)
            except (api_errors.AlreadyExists, api_errors.FailedPrecondition, api_errors.NotFound):
                continue
            merged = {**current.__dict__, **fields}
            written = _BreakerDoc.from_fields(merged, result.update_time)
            self._remember(written)
            self._share(written)
            return True
        self._remember(current)  # another instance got there first: adopt what it wrote
        self._share(current)
        return False

    def record_failure(self, fail_max: int, now: float) -> bool:
        cached = self._read()
        if cached.state != CLOSED:
            return False
        if self._failures.incr() < fail_max:
            return False
        if not self._transition_lock.acquire(blocking=False):
            return False  # another thread of this instance is already opening it
        try:
            # Refuse calls here at once, not only once the write is done: it takes a round trip, and a
            # storm of calls would otherwise keep reaching KIS meanwhile. The write below replaces this.
            self._remember(replace(cached, state=OPEN, opened_at=now))
            opened = self._transition(
                lambda cur: {"state": OPEN, "opened_at": now, "probe_owner": None, "probe_until": None}
                if cur.state == CLOSED else None)
            if self._failures.shared:
                self._failures.reset()
            return opened
        finally:
            self._transition_lock.release()

    def record_success(self) -> None:
        if self._failures.value:
            self._failures.reset()

    def begin_probe(self, owner: str, now: float, reset_timeout_s: float, lease_s: float) -> bool:
        cached = self._read()
        if not probe_allowed(cached.state, cached.opened_at, cached.probe_until, now, reset_timeout_s):
            return False
        if not self._transition_lock.acquire(blocking=False):
            return False  # a sibling thread is taking the lease for this instance
        try:
            return self._transition(
                lambda cur: {"state": HALF_OPEN, "probe_owner": owner, "probe_until": now + lease_s}
                if probe_allowed(cur.state, cur.opened_at, cur.probe_until, now, reset_timeout_s) else None)
        finally:
            self._transition_lock.release()

    def end_probe(self, owner: str, success: bool, now: float) -> str | None:
        verdict: Fields = ({"state": CLOSED, "opened_at": None} if success else {"state": OPEN, "opened_at": now})
        with self._transition_lock:
            written = self._transition(
                lambda cur: {**verdict, "probe_owner": None, "probe_until": None}
                if cur.state == HALF_OPEN and cur.probe_owner == owner else None)
        if written and success:
            self._failures.reset()
        return verdict["state"] if written else None

    # ---- pybreaker's unconditional writes (compatibility; SharedBreaker does not use them) ------
    def force_state(self, state: str) -> None:
        fields: Fields = {"state": state, "probe_owner": None, "probe_until": None, "changed_by": self._instance}
        if state == CLOSED:
            fields["opened_at"] = None
        self._doc.set(fields, merge=True)
        self._forget()

    def force_opened_at(self, ts: float) -> None:
        self._doc.set({"opened_at": ts}, merge=True)
        self._forget()

    def _forget(self) -> None:
        """After an unconditional write: the next read reads the document, here and in the fleet."""
        self._cache = None
        if self._copies is not None:
            with contextlib.suppress(redis.RedisError):  # unreachable: gone within read_ttl_s anyway
                self._copies.delete(self._copy_key)

    def increment_counter(self) -> None:
        self._failures.incr()

    def reset_counter(self) -> None:
        self._failures.reset()

    def increment_success_counter(self) -> None:
        self._successes += 1

    def reset_success_counter(self) -> None:
        self._successes = 0

    @property
    def success_counter(self) -> int:
        return self._successes
