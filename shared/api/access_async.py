"""Access checks of the async read path: the same principals, scopes and answers as `access.AccessControl`,
without a store read per request.

Verified API-key records are kept in-process for API_KEY_CACHE_S seconds (keyed by a digest of the presented
key, never the key). A revocation (`kisgw keys revoke`) is announced on Redis pub/sub and the process's one
listener drops the key at once; where that notice cannot arrive, the entry's expiry ends the key's use within
API_KEY_CACHE_S. The inbound rate check is the same GCRA script and key as the sync side, taken in leases of
several requests for a busy key (`shared.api.rate_lease`: the approximation and its bound), and the cap on a
key's requests in flight the same script and sorted set as the sync side (key_limits.ConcurrencyGate). The
serve path asks for a lease and takes the slot in one pipeline with the cache read, and gives the slot back
once it has answered; a read answered at once from the near cache holds no slot (the cap is for requests
that wait).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from flask import Request

from shared.api import key_limits
from shared.api.access import AccessControl, Credential, Principal
from shared.api.rate_lease import RateLeases
from shared.clock import SYSTEM_CLOCK, Clock
from shared.orders.api_keys import ApiKeyRecord, key_id_of

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared.market.reader import AsyncReader

API_KEY_CACHE_S = 5.0
# A cached record read in the last part of its life is verified again in the background (one check at a time
# per key): a busy key's requests never wait for the store, and a key revoked where no notice arrived still
# ends within API_KEY_CACHE_S (the re-check finds it revoked and drops it, or the entry expires).
API_KEY_RECHECK_SHARE = 0.4
API_KEY_CACHE_MAX = 10_000


class VerifiedKeys:
    """Active API-key records verified recently by this process. Thread-safe."""

    def __init__(self, *, ttl_s: float = API_KEY_CACHE_S, max_entries: int = API_KEY_CACHE_MAX,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[float, ApiKeyRecord]] = OrderedDict()
        self.revocations = 0  # notices seen so far

    @staticmethod
    def _slot(presented: str) -> bytes:
        return hashlib.sha256(presented.encode()).digest()

    def get(self, presented: str) -> ApiKeyRecord | None:
        return self.lookup(presented)[0]

    def lookup(self, presented: str) -> tuple[ApiKeyRecord | None, bool]:
        """(the record, or None; whether it is due for a re-check: in the last API_KEY_RECHECK_SHARE of its
        life, when a re-check in the background keeps the key's requests from ever waiting for the store)."""
        record, recheck_at = self.lookup_until(presented)
        return record, record is not None and recheck_at <= self._clock.monotonic()

    def lookup_until(self, presented: str) -> tuple[ApiKeyRecord | None, float]:
        """(the record, or None; the clock's monotonic time its re-check is due)."""
        slot = self._slot(presented)
        with self._lock:
            hit = self._entries.get(slot)
            if hit is None:
                return None, 0.0
            if hit[0] <= self._clock.monotonic():
                del self._entries[slot]
                return None, 0.0
            return hit[1], hit[0] - self.ttl_s * API_KEY_RECHECK_SHARE

    def put(self, presented: str, record: ApiKeyRecord) -> None:
        with self._lock:
            self._entries[self._slot(presented)] = (self._clock.monotonic() + self.ttl_s, record)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def now(self) -> float:
        return self._clock.monotonic()

    def forget(self, presented: str) -> None:
        with self._lock:
            self._entries.pop(self._slot(presented), None)

    def revoke(self, key_id: str) -> None:
        """Forget every cached entry of this key id (a revocation notice arrived)."""
        with self._lock:
            self.revocations += 1
            for slot in [s for s, (_, r) in self._entries.items() if r.key_id == key_id]:
                del self._entries[slot]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class AsyncAccess:
    def __init__(self, control: AccessControl, reader: AsyncReader) -> None:
        self.control = control
        self.keys = VerifiedKeys()
        self.reader = reader
        reader.key_callbacks.append(self.keys.revoke)
        self._gcra_source = control.limiter.source if control.limiter is not None else None
        self._gcra_sha: str | None = None
        self.leases = RateLeases()
        self._slot_sha: str | None = None
        self._verifying: dict[bytes, asyncio.Task[ApiKeyRecord | None]] = {}
        # (digest of the presented key, Origin, scope) -> (the principal, the monotonic time it holds until, or
        # None for the process's life; key revocations seen then): see `principal`.
        self._decided: dict[tuple[bytes, str | None, str | None], tuple[Principal, float | None, int]] = {}
        self._renewing: set[asyncio.Task[None]] = set()  # lease renewals in flight (held until done)

    async def load_scripts(self) -> None:
        """Load the rate and in-flight scripts once (pipelines then call them by SHA, with no SCRIPT EXISTS round
        trip)."""
        if self._gcra_source is not None:
            self._gcra_sha = await self.reader.redis.script_load(self._gcra_source)
        if self.control.inflight is not None:
            self._slot_sha = await self.reader.redis.script_load(self.control.inflight.source)

    async def identify(self, request: Request, scope: str | None) -> Principal | None:
        return (await self._identify(request, scope))[0]

    async def _identify(self, request: Request, scope: str | None) -> tuple[Principal | None, float | None]:
        """(the caller or None; the monotonic time until which the same credential stands for the same caller
        without another look-up, None for the process's life, 0 for this request only)."""
        from shared.market.reader import blocking

        c = self.control
        found = c.credential(request, scope)  # the same decision as the sync side; only the look-ups differ
        if not isinstance(found, Credential):
            return found, None  # public, or the local dev key: fixed by the settings
        if found.kind == "id_token":
            assert c.id_tokens is not None
            return await blocking(c.id_tokens.verify, found.value), 0.0
        presented = found.value
        if key_id_of(presented) is None:
            return None, 0.0
        record, recheck_at = self.keys.lookup_until(presented)
        if record is None:
            record = await asyncio.shield(self._verify(presented))
            recheck_at = 0.0
        elif recheck_at <= self.keys.now():
            self._verify(presented)  # in the background; this request goes on with the cached record
            recheck_at = 0.0
        return (c.key_principal(record), recheck_at) if record else (None, 0.0)

    def _verify(self, presented: str) -> asyncio.Task[ApiKeyRecord | None]:
        """The store's check of a presented key, one at a time per key (the key's other requests share it)."""
        slot = VerifiedKeys._slot(presented)
        task = self._verifying.get(slot)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._verify_now(presented))
            self._verifying[slot] = task
            task.add_done_callback(lambda t: self._verified(slot, t))
        return task

    def _verified(self, slot: bytes, task: asyncio.Task[ApiKeyRecord | None]) -> None:
        self._verifying.pop(slot, None)
        if not task.cancelled() and task.exception() is not None:  # a background re-check: the entry stays
            log.warning("re-checking an API key failed: %s", type(task.exception()).__name__)

    async def _verify_now(self, presented: str) -> ApiKeyRecord | None:
        from shared.market.reader import blocking

        revocations = self.keys.revocations  # a notice arriving during the check: its answer is not kept
        record = await blocking(self.control.keys.verify, presented)
        if record is None:
            self.keys.forget(presented)
        elif self.keys.revocations == revocations:
            self.keys.put(presented, record)
        return record

    async def principal(self, request: Request, scope: str | None) -> Principal:
        """The caller if it may use `scope` (401/403 otherwise); the rate check is the caller's to run.

        A key's decision is kept (by a digest of the key, with the Origin and scope it was made for) for as long
        as its verified record needs no re-check and no revocation notice came, the local dev key's for the
        process's life: a key's next requests skip the checks, and get the same answer they would."""
        headers = request.headers
        presented = headers.get("X-API-Key", "").strip() if scope is not None else ""
        origin = headers.get("Origin")
        decided = None
        if presented:
            decided = (VerifiedKeys._slot(presented), origin, scope)
            known = self._known(decided)
            if known is not None:
                return known
        revocations = self.keys.revocations
        found, until = await self._identify(request, scope)
        principal = self.control.check_scope(request, found, scope)
        key_limits.check_origin(principal.origins, origin)  # browser keys
        if decided is not None and until != 0.0:
            if len(self._decided) >= API_KEY_CACHE_MAX:
                self._decided.clear()
            self._decided[decided] = (principal, until, revocations)
        return principal

    def decided(self, presented: str, origin: str | None, scope: str | None) -> Principal | None:
        """The caller a key (X-API-Key, stripped) stands for with this Origin and scope, when `principal` decided
        it before and that decision still holds; None otherwise (ask `principal`)."""
        return self._known((VerifiedKeys._slot(presented), origin, scope))

    def _known(self, decided: tuple[bytes, str | None, str | None]) -> Principal | None:
        hit = self._decided.get(decided)
        if hit is not None and hit[2] == self.keys.revocations and (hit[1] is None or self.keys.now() < hit[1]):
            return hit[0]
        return None

    async def add_rate_check(self, pipe: aioredis.client.Pipeline, principal: Principal, scope: str | None) -> bool:
        """Queue the inbound rate check on `pipe`; False when this request is not counted."""
        if self._gcra_source is None or not self.control.counts(scope):
            return False
        if self._gcra_sha is None:
            await self.load_scripts()
        limiter = self.control.limiter
        assert limiter is not None and self._gcra_sha is not None
        keys = limiter.keys(principal.id)
        pipe.evalsha(self._gcra_sha, len(keys), *keys, *limiter.args(self.control.limits(principal)[0]))
        return True

    # ---- the rate check in leases (see shared.api.rate_lease) ------------------------------------------
    def admitted_locally(self, principal: Principal, scope: str | None) -> bool:
        """True when this request needs no shared rate check: not counted, or one of its key's leased
        requests in this process is spent on it."""
        if self._gcra_source is None or not self.control.counts(scope):
            return True
        if not self.leases.take(principal.id):
            return False
        if self.leases.renewal_due(principal.id):
            n = self.leases.renewal_size(principal.id, self.control.limits(principal)[0])
            if n:
                self._renew(principal, n)
        return True

    def _renew(self, principal: Principal, n: int) -> None:
        """Ask for the key's next lease now, in the background (`rate_lease`: a busy key's lease is renewed
        before it runs out); the key's requests that find no request left meanwhile wait for it."""
        self.leases.begin(principal.id)
        task = asyncio.get_running_loop().create_task(self._renew_now(principal, n))
        self._renewing.add(task)
        task.add_done_callback(self._renewing.discard)

    async def _renew_now(self, principal: Principal, n: int) -> None:
        limiter = self.control.limiter
        assert limiter is not None
        try:
            if limiter.wait_s(await self._ask_lease(principal, n)) == 0:
                self.leases.renewed(principal.id, n)
            # Refused: the key is near its limit; its requests ask one by one once the live lease is spent.
        except Exception as exc:  # Redis down: the key's requests ask themselves, and meet the error there
            log.warning("renewing a rate lease failed (%s)", type(exc).__name__)
        finally:
            self.leases.end(principal.id)

    async def _ask_lease(self, principal: Principal, n: int) -> Any:
        """One step of the shared limit (GCRA) for n of the key's requests, on the lease connections: its reply."""
        import redis

        if self._gcra_sha is None:
            await self.load_scripts()
        limiter = self.control.limiter
        assert limiter is not None and self._gcra_sha is not None
        keys = limiter.keys(principal.id)
        client: Any = self.reader.lease_redis
        try:
            return await client.evalsha(self._gcra_sha, len(keys), *keys, *self._lease_args(principal, n))
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            await self.load_scripts()
            return await client.evalsha(self._gcra_sha, len(keys), *keys, *self._lease_args(principal, n))

    async def admit(self, principal: Principal, scope: str | None) -> None:
        """The inbound rate check of one request: a request of its key's lease in this process, else of the
        lease another request of the key is asking for (waited for; its requests go to those who waited, in
        turn), else of a new lease this request asks for. One lease request per key in flight: a burst of a
        thousand requests of one key costs a handful of round trips (lease sizes double while they run out),
        not a thousand queued ones; the waiters are woken in turn, as many as each lease has room for. Raises
        the 429 ApiError when the key is over its limit."""
        if self.admitted_locally(principal, scope):
            return
        refused_for = self.leases.refused_for(principal.id)
        if refused_for > 0:  # the shared limit has nothing for this key before then: no need to ask it
            self.refuse_if_limited_for(refused_for, principal)
        while True:
            if not self.leases.asking(principal.id):
                await self.take_lease(principal)
                return
            if await self.leases.wait_turn(principal.id):
                return  # a request of the lease that came was spent for this one
            refused_for = self.leases.refused_for(principal.id)  # woken to ask next, or the key was refused
            if refused_for > 0:
                self.refuse_if_limited_for(refused_for, principal)

    async def take_lease(self, principal: Principal) -> None:
        """Ask for a lease of this key's requests (one of them this request's) on the lease connections, alone:
        raises the 429 ApiError when the key is over its limit. Requests of the key arriving meanwhile wait for
        this one (`admit`) instead of asking too."""
        n = self.leases.size(principal.id, self.control.limits(principal)[0])
        self.leases.begin(principal.id)
        try:
            await self.settle_lease(principal, await self._ask_lease(principal, n), n)
        finally:
            self.leases.end(principal.id)

    def _lease_args(self, principal: Principal, n: int) -> list[str]:
        limiter = self.control.limiter
        assert limiter is not None
        interval = float(limiter.args(self.control.limits(principal)[0])[0]) * n
        return [f"{interval:.3f}", f"{1_000_000 - interval:.3f}"]

    async def settle_lease(self, principal: Principal, reply: Any, n: int) -> None:
        """The answer to a lease request: keep the lease, or (a lease of several refused: the key is near its
        limit) ask for this request alone; raises 429 when that is refused too."""
        limiter = self.control.limiter
        assert limiter is not None
        try:
            if limiter.wait_s(reply) == 0:
                self.leases.granted(principal.id, n)
                return
            if n > 1:
                reply = await self._ask_lease(principal, 1)
                if limiter.wait_s(reply) == 0:
                    self.leases.granted(principal.id, 1)
                    return
            self.leases.refused(principal.id, limiter.wait_s(reply))
            self.refuse_if_limited(reply, principal)
        finally:
            self.leases.end(principal.id)

    def slot_for(self, principal: Principal, scope: str | None) -> tuple[str, str, int] | None:
        """(caller, slot member, cap) of the in-flight slot this request must take, as `AccessControl.authorize`
        does; None when the request is not capped."""
        gate = self.control.inflight
        if gate is None or not self.control.counts(scope):
            return None
        cap = self.control.limits(principal)[1]
        return (principal.id, gate.new_member(), cap) if cap else None

    async def slot_take(self, slot: tuple[str, str, int]) -> tuple[Any, ...]:
        """The command taking the slot (for the serve path's step pipeline); check its reply with `slot_taken`,
        give it back with `leave`."""
        gate = self.control.inflight
        assert gate is not None
        if self._slot_sha is None:
            await self.load_scripts()
        assert self._slot_sha is not None
        caller, member, cap = slot
        return ("EVALSHA", self._slot_sha, 1, gate.key(caller), *gate.args(cap, member))

    def slot_taken(self, reply: Any) -> bool:
        assert self.control.inflight is not None
        return self.control.inflight.taken(reply)

    def refuse_in_flight(self, cap: int) -> None:
        assert self.control.inflight is not None
        raise self.control.inflight.refusal(cap)

    async def leave(self, caller: str, member: str) -> None:
        """The request is answered: give back its in-flight slot (left behind, it expires on its own)."""
        assert self.control.inflight is not None
        try:
            (reply,) = await self.reader.serve_batch.run(("ZREM", self.control.inflight.key(caller), member))
            if isinstance(reply, Exception):
                raise reply
        except Exception as exc:  # Redis down or the request cancelled: the slot expires after SLOT_TTL_S
            log.warning("could not free an in-flight slot (%s); it expires in %.0f s", type(exc).__name__,
                        key_limits.SLOT_TTL_S)

    def refuse_if_limited_for(self, wait_s: float, principal: Principal) -> None:
        self.control.refuse_if_limited(wait_s, self.control.limits(principal)[0])

    def refuse_if_limited(self, reply: Any, principal: Principal | None = None) -> None:
        assert self.control.limiter is not None
        rate = self.control.limits(principal)[0] if principal is not None else None
        self.control.refuse_if_limited(self.control.limiter.wait_s(reply), rate)


_lock = threading.Lock()


_by_reader: weakref.WeakKeyDictionary[AsyncReader, AsyncAccess] = weakref.WeakKeyDictionary()
_last: tuple[AsyncReader, AsyncAccess] | None = None


def async_access_for(gw: Any, reader: AsyncReader) -> AsyncAccess:
    """The async access checks of this gateway on this reader's event loop, built once per reader and held here.

    Not built by the composition root: a reader belongs to one running event loop (its Redis connections cannot
    exist before the loop does), so its checks are made on the loop's first request; nothing is attached to the
    reader or the gateway."""
    global _last
    last = _last
    if last is not None and last[0] is reader:
        return last[1]
    with _lock:
        found = _by_reader.get(reader)
        if found is None:
            found = _by_reader[reader] = AsyncAccess(gw.access, reader)
    _last = (reader, found)
    return found
