"""The market data service: cache first, then pending + batched drains through limiter, breaker and retries.

A request never hangs past its deadline and never drops a symbol: every requested code comes back as
`fresh`, `stale` (last-known copy, with its age), `pending` (still being fetched) or `error` (with a reason).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings
from shared.kis.client import KISClient
from shared.kis.errors import KISError, KISUnknownSymbolError
from shared.kis.http import is_ledger_tr
from shared.kis.models import plain
from shared.market import admission
from shared.market.breaker import BreakerOpenError, SharedBreaker
from shared.market.cache import DataCache
from shared.market.limiter import RateLimitTimeout, SlidingLimiter
from shared.market.pending import PendingSymbols
from shared.market.ports import DrainTrigger, DrainTriggerError
from shared.market.retry import RetryPolicy
from shared.market.symbol_master import SymbolMaster
from shared.market.token import TokenManager, TokenUnavailableError

log = logging.getLogger(__name__)

# Instant (clock.monotonic) by which the KIS call being made must have its rate grant.
_call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("kis_call_deadline", default=None)
# The claim a drain is working on, so the KIS gate can keep its lease alive (see MarketService.gate).
_current_claim: contextvars.ContextVar[_Claim | None] = contextvars.ContextVar("pending_claim", default=None)
# Waiters wake on notification; the slice only bounds how late a waiter notices a new drain slot.
WAIT_SLICE_S = 0.5
# Drain requests are deduplicated per kind and time slot (per process, and fleet-wide by the task's name). A miss
# that arrives after its slot's drain has finished waits for the next slot, so the slot bounds a miss's latency:
# a quarter second keeps a miss near one KIS round trip, at most 4 drain tasks a second per kind.
DRAIN_SLOTS_PER_S = 4
UNKNOWN = "unknown symbol"
# Batches one drain fetches at once (each call still passes the shared limiter).
DRAIN_WORKERS = 3
# What a fetch returns: symbol -> value to cache (an {"error": ...} value is a short-lived negative answer).
Values = dict[str, dict[str, Any]]
# Failures of a fetch that end it for this batch (after the retry policy has had its go).
FETCH_FAILURES: tuple[type[BaseException], ...] = (BreakerOpenError, TokenUnavailableError, KISError)
# What stops a drain batch: a rate-grant wait that ran out, or one of the fetch failures.
BATCH_FAILURES: tuple[type[BaseException], ...] = (RateLimitTimeout, *FETCH_FAILURES)
PAPER_NO_INFO = "symbol info is not offered to paper-trading keys (KIS serves CTPF1002R on real keys only)"
PAPER_NO_INDEX = "index quotes are not offered to paper-trading keys (KIS serves FHPUP02100000 on real keys only)"
PAPER_REFUSED = {"info": PAPER_NO_INFO, "index": PAPER_NO_INDEX}


@dataclass(frozen=True)
class KindSpec:
    """How one kind of data is fetched and kept."""

    kind: str
    call_class: str
    batch: int
    ttl_s: float


@dataclass(frozen=True)
class SymbolResult:
    status: str  # fresh | stale | pending | error
    value: Mapping[str, Any] | None = None
    age_s: float | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.value is not None:
            out.update(self.value)
        if self.age_s is not None:
            out["age_s"] = round(self.age_s, 3)
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass
class DrainReport:
    kind: str
    batches: int = 0
    fetched: int = 0
    failed: int = 0
    released: int = 0
    kis_calls: int = 0
    stopped: str = ""
    fill: list[int] = field(default_factory=list)


def to_value(model: Any) -> dict[str, Any]:
    """A domain model as plain JSON-able data (Decimal and dates as strings)."""
    raw = dataclasses.asdict(model) if dataclasses.is_dataclass(model) and not isinstance(model, type) else dict(model)
    return {k: plain(v) for k, v in raw.items()}


class _Claim:
    """Symbols a drain holds under a lease: the lease is renewed before and after each wait for a rate grant,
    and no wait may outlast it, so nobody else claims (and fetches again) what this drain is still doing."""

    def __init__(self, pend: PendingSymbols, symbols: list[str], owner: str) -> None:
        self.pend, self.symbols, self.owner = pend, symbols, owner

    @property
    def longest_wait_s(self) -> float:
        lease = self.pend.lease_s
        return max(0.0, lease - min(1.0, lease / 4))

    def renew(self) -> None:
        try:
            self.pend.renew(self.symbols, self.owner)
        except Exception:  # the wait bound still keeps the work inside the lease
            log.warning("could not renew the lease of %d %s symbols", len(self.symbols), self.pend.kind,
                        exc_info=True)


class MarketService:
    def __init__(
        self,
        settings: Settings,
        *,
        kis: KISClient,
        limiter: SlidingLimiter,
        breaker: SharedBreaker,
        tokens: TokenManager,
        caches: Mapping[str, DataCache],
        pending: Mapping[str, PendingSymbols],
        trigger: DrainTrigger,
        retry: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_drain: Callable[[DrainReport], None] | None = None,
        symbols: SymbolMaster | None = None,
        ledger: SlidingLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.kis = kis
        self.limiter = limiter
        self.breaker = breaker
        self.tokens = tokens
        self.caches = caches
        self.pending = pending
        self.trigger = trigger
        self.retry = retry or RetryPolicy.from_settings(settings, clock)
        self.clock = clock
        self.on_drain = on_drain
        self.symbols = symbols  # the symbol master: unknown codes never reach KIS
        self.ledger = ledger  # paces balance and order TRs under KIS's account-ledger limit (EGW00215)
        self.kinds = {
            "quote": KindSpec("quote", "quotes", settings.effective_batch_size, settings.quote_ttl_s),
            "index": KindSpec("index", "quotes", 3, settings.index_ttl_s),
            "daily": KindSpec("daily", "reference", 5, settings.daily_ttl_s),
            "info": KindSpec("info", "reference", 5, settings.info_ttl_s),
        }
        self._requested: dict[str, int] = {}
        self._requested_lock = threading.Lock()
        self._fetchers: dict[str, Callable[[list[str]], Values]] = {
            "quote": self._fetch_quotes,
            "index": self._fetch_each(lambda c: self.kis.get_index_price(c)),
            "daily": self._fetch_each(lambda s: {"bars": [to_value(b) for b in self.kis.get_daily_prices(s)]}),
            "info": self._fetch_each(lambda s: self._noted(self.kis.get_stock_info(s))),
        }

    # ---- the KIS gate: every KIS call passes the shared limiter ----------------------------------
    def gate(self, call_class: str, tr_id: str) -> None:
        deadline = _call_deadline.get()
        if self.ledger is not None and is_ledger_tr(tr_id):
            self.ledger.acquire("orders", None if deadline is None else max(0.0, deadline - self.clock.monotonic()))
        remaining = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
        claim = _current_claim.get()
        if claim is None:
            self.limiter.acquire(call_class, remaining)
            return
        # A drain: the wait never outlasts the (just renewed) lease, and the call that follows gets a fresh one.
        claim.renew()
        remaining = claim.longest_wait_s if remaining is None else min(remaining, claim.longest_wait_s)
        self.limiter.acquire(call_class, remaining)
        claim.renew()

    def call_kis(self, fn: Callable[[], Any], *, deadline: float) -> Any:
        """One logical KIS call: breaker → limiter (in the client's gate) → HTTP, with the retry policy."""
        token = _call_deadline.set(deadline)
        try:
            return self.retry.run(lambda: self.breaker.call(fn), refresh_token=self.tokens.on_rejected,
                                  on_rate_limited=self.limiter.report_rate_limited, deadline=deadline)
        finally:
            _call_deadline.reset(token)

    def call_kis_once(self, fn: Callable[[], Any], *, deadline_s: float | None = None) -> Any:
        """A KIS call that must never be repeated (orders): breaker and limiter, no retry."""
        deadline = self.clock.monotonic() + (self.settings.request_deadline_s if deadline_s is None else deadline_s)
        token = _call_deadline.set(deadline)
        try:
            return self.breaker.call(fn)
        finally:
            _call_deadline.reset(token)

    # ---- reads -----------------------------------------------------------------------------------
    def get(self, kind: str, symbols: Sequence[str], deadline_s: float | None = None,
            refresh: bool = False, caller: str | None = None) -> dict[str, SymbolResult]:
        """Raises admission.AdmissionRefused (with every symbol's answer) when some misses were not queued."""
        if self.settings.paper and kind in PAPER_REFUSED:
            # Real-only TRs (CTPF1002R, FHPUP02100000): KIS refuses them on paper keys.
            return {s: SymbolResult("error", reason=PAPER_REFUSED[kind]) for s in dict.fromkeys(symbols)}
        unknown = set(self.symbols.unknown(kind, symbols)) if self.symbols is not None else set()
        if unknown:  # not in the symbol master: answered at once, never pending, never a KIS call
            order = list(dict.fromkeys(symbols))
            try:
                known = self.get(kind, [s for s in symbols if s not in unknown], deadline_s, refresh, caller) \
                    if len(unknown) < len(set(symbols)) else {}
            except admission.AdmissionRefused as exc:
                exc.results = {s: exc.results.get(s) or SymbolResult("error", reason=UNKNOWN) for s in order}
                raise
            return {s: known.get(s) or SymbolResult("error", reason=UNKNOWN) for s in order}
        cache = self.caches[kind]
        start = self.clock.monotonic()
        deadline = start + (self.settings.request_deadline_s if deadline_s is None else deadline_s)
        wanted = list(dict.fromkeys(symbols))
        entries = cache.get_many(wanted)
        results: dict[str, SymbolResult] = {}
        need: list[str] = []
        for s in wanted:
            e = entries.get(s)
            if e is not None and e.fresh and not refresh:
                results[s] = self._from_entry(e)
            else:
                need.append(s)
        if not need:
            return results
        if self.breaker.refusing():
            for s in need:
                results[s] = self._unavailable(entries.get(s), "KIS unavailable (circuit open)")
            return {s: results[s] for s in wanted}

        written_after = self.clock.time() if refresh else None
        pend = self.pending[kind]
        if not refresh:
            # Written since the first look (another request's drain): answered, not queued again.
            for s, e in self.caches[kind].get_many(need).items():
                if e.fresh:
                    results[s] = self._from_entry(e)
            need = [s for s in need if s not in results]
            if not need:
                return {s: results[s] for s in wanted}
        spec = self.kinds[kind]
        adm = admission.admit(self.settings, pend, kind, need, caller=caller, wait_s=deadline - start,
                              drain_rate=admission.drain_rate(self.settings, spec.call_class, spec.batch))
        for s in adm.unknown:
            results[s] = SymbolResult("error", reason=UNKNOWN)
        for s in adm.refused:
            results[s] = self._unavailable(entries.get(s), admission.refused_reason(adm, s))
        need = adm.accepted
        if not need:
            return self._answer(results, wanted, adm)
        slot = self._slot()
        self._request_drain(kind, slot)
        waiting = set(need)
        while waiting:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            cache.wait_for(waiting, min(WAIT_SLICE_S, remaining), only_new=refresh)
            now_entries = cache.get_many(sorted(waiting))
            for s, e in now_entries.items():
                if e.fresh and (written_after is None or e.stored_at >= written_after):
                    results[s] = self._from_entry(e)
                    waiting.discard(s)
            if waiting:
                for s, reason in pend.failures(sorted(waiting)).items():
                    results[s] = self._unavailable(now_entries.get(s) or entries.get(s), reason)
                    waiting.discard(s)
            if waiting and self._slot() != slot:
                # A drain that finished just before our symbols arrived will not come back for them.
                slot = self._slot()
                self._request_drain(kind, slot)
        for s in waiting:
            e = entries.get(s)
            results[s] = (SymbolResult("stale", e.value, e.age_s, "refresh pending") if e is not None
                          else SymbolResult("pending", reason="being fetched from KIS"))
        return self._answer(results, wanted, adm)

    @staticmethod
    def _answer(results: dict[str, SymbolResult], wanted: list[str],
                adm: admission.Admission) -> dict[str, SymbolResult]:
        ordered = {s: results[s] for s in wanted}
        if adm.refused:
            raise admission.AdmissionRefused(ordered, adm)
        return ordered

    def add_missing(self, kind: str, need: list[str]) -> dict[str, Any]:
        """Mark pending those of `need` that still have no fresh copy, atomically with that check (WATCH on their
        fresh keys), so a symbol written since the caller's miss is not fetched twice; returns those found fresh."""
        cache, pend = self.caches[kind], self.pending[kind]
        with self.pending[kind]._redis.pipeline(transaction=True) as pipe:
            for _ in range(5):
                try:
                    pipe.watch(*(cache.fresh_key(s) for s in need))
                    raw = cast(list[Any], pipe.mget(cache.read_keys(need)))
                    found = {s: e for s, e in cache.entries(need, raw).items() if e.fresh}
                    missing = [s for s in need if s not in found]
                    if not missing:
                        pipe.unwatch()
                        return found
                    pipe.multi()
                    pipe.evalsha(pend.add_sha(), len(pend.add_keys(missing)), *pend.add_keys(missing), *missing)
                    pipe.execute()
                    return found
                except redis.WatchError:
                    continue
                except redis.exceptions.NoScriptError:
                    break
        pend.add(need)  # a very busy key (or the script not loaded yet): fetching twice is the lesser harm
        return {}

    def _from_entry(self, e: Any) -> SymbolResult:
        if "error" in e.value:
            return SymbolResult("error", reason=str(e.value["error"]))
        return SymbolResult("fresh", e.value, e.age_s)

    @staticmethod
    def _unavailable(e: Any, reason: str) -> SymbolResult:
        if e is not None and "error" not in e.value:
            return SymbolResult("stale", e.value, e.age_s, reason)
        return SymbolResult("error", reason=reason)

    def _request_drain(self, kind: str, slot: int) -> None:
        if self.claim_drain_request(kind, slot):
            self.send_drain_request(kind, slot)

    def claim_drain_request(self, kind: str, slot: int) -> bool:
        """True for the first caller of this process asking for `kind`'s drain in `slot` (no I/O)."""
        # Hundreds of waiters of one instance would otherwise each ask the queue for the same slot's task.
        with self._requested_lock:
            if self._requested.get(kind) == slot:
                return False
            self._requested[kind] = slot
            return True

    def send_drain_request(self, kind: str, slot: int) -> None:
        """Ask the queue for the drain (blocking I/O: the async reader runs it in a worker thread)."""
        try:
            self.trigger.request_drain(kind, self.kinds[kind].call_class, slot)
        except DrainTriggerError as exc:
            # The queue is unreachable: drain here rather than leave accepted symbols waiting.
            log.error("drain trigger failed (%s); draining %s in-process", exc, kind)
            threading.Thread(target=self.drain, args=(kind,), daemon=True, name=f"drain-{kind}").start()

    def _slot(self) -> int:
        return int(self.clock.time() * DRAIN_SLOTS_PER_S)

    def _until_next_slot(self) -> float:
        """Seconds until the next drain slot begins (a waiter wakes then to ask for that slot's drain)."""
        now = self.clock.time()
        return max(0.0, (int(now * DRAIN_SLOTS_PER_S) + 1) / DRAIN_SLOTS_PER_S - now)

    # ---- drains ----------------------------------------------------------------------------------
    def _fail(self, kind: str, symbols: list[str], owner: str, reason: str) -> None:
        self.pending[kind].fail(symbols, owner, reason)
        self.caches[kind].notify(symbols)  # waiters look again and answer stale/error at once

    def drain(self, kind: str, deadline_s: float | None = None) -> DrainReport:
        """Fetch pending symbols of `kind` in batches until none are left or the deadline comes.

        Up to DRAIN_WORKERS batches are in flight at once (the limiter still spaces the calls), so one KIS
        answer's latency does not hold up the next batch; a part-filled batch is left to a worker already
        fetching, which comes back for it, so parallel fetching does not cost extra, half-empty calls."""
        spec = self.kinds[kind]
        pend = self.pending[kind]
        owner = uuid.uuid4().hex
        stop = self.clock.monotonic() + (self.settings.drain_deadline_s if deadline_s is None else deadline_s)
        state = _DrainState(DrainReport(kind))
        window = self.settings.collect_window_ms / 1000.0
        if window and pend.size() < spec.batch:
            self.clock.sleep(window)  # let concurrent requests join this batch
        ctx = contextvars.copy_context
        helpers = [threading.Thread(target=ctx().run, args=(self._drain_worker, kind, owner, stop, state, window),
                                    name=f"drain-{kind}-worker", daemon=True) for _ in range(DRAIN_WORKERS - 1)]
        for t in helpers:
            t.start()
        self._drain_worker(kind, owner, stop, state, window)
        for t in helpers:
            t.join(max(0.0, stop - self.clock.monotonic()) + self.settings.kis_http_timeout_s + 1.0)
        report = state.report
        if pend.size() > 0:
            self._request_drain(kind, self._slot() + 1)
        if self.on_drain is not None:
            self.on_drain(report)
        return report

    def _drain_worker(self, kind: str, owner: str, stop: float, state: _DrainState, window: float) -> None:
        spec = self.kinds[kind]
        pend = self.pending[kind]
        report = state.report
        while self.clock.monotonic() < stop and not report.stopped:
            with state.lock:
                in_flight = pend.in_flight()
                unclaimed = pend.size() - in_flight
                partial = 0 < unclaimed < spec.batch
                if partial and (state.active > 0 or in_flight > 0):
                    # A worker fetching now (of this drain or another) comes back for these, with whatever
                    # joined meanwhile; the drain that ends last asks for one more if any are left.
                    return
                state.active += 1  # fetching (or filling a batch): others leave part-filled batches to it
            try:
                if partial and window:
                    # Let concurrent requests join this batch: a storm's symbols arriving slower than the
                    # fetches would otherwise go out in part-filled batches, each costing a whole KIS call.
                    self.clock.sleep(min(window, max(0.0, stop - self.clock.monotonic())))
                claimed = pend.claim(spec.batch, owner)
                if not claimed:
                    return
                self._drain_batch(kind, owner, stop, state, claimed)
            finally:
                with state.lock:
                    state.active -= 1

    def _drain_batch(self, kind: str, owner: str, stop: float, state: _DrainState, claimed: list[str]) -> None:
        pend = self.pending[kind]
        report = state.report
        with state.lock:
            report.batches += 1
            report.fill.append(len(claimed))
        error: BaseException | None = None
        try:
            values = self._run_fetch(kind, claimed, stop, owner)
        except _Partial as part:  # some symbols fetched before the batch stopped: keep them
            values, rest, error = part.values, part.rest, part.error
        except BATCH_FAILURES as exc:
            values, rest, error = {}, claimed, exc
        except BaseException:
            pend.release(claimed, owner)  # unexpected: leave them pending for the next drain
            raise
        if isinstance(error, RateLimitTimeout):
            pend.release(rest, owner)  # still pending: the next drain takes them
        elif error is not None:
            self._fail(kind, rest, owner, failure_reason(error))
        if values:
            self.caches[kind].put_many(values)
            pend.complete(list(values), owner)
        with state.lock:
            if isinstance(error, RateLimitTimeout):
                report.released += len(rest)
                report.stopped = "rate limit wait exceeded the drain deadline"
            elif error is not None:
                report.failed += len(rest)
            report.fetched += len(values)

    def _run_fetch(self, kind: str, symbols: list[str], stop: float, owner: str = "") -> Values:
        token = _call_deadline.set(stop)
        claim = _current_claim.set(_Claim(self.pending[kind], symbols, owner) if owner else None)
        try:
            return self._fetchers[kind](symbols)
        finally:
            _current_claim.reset(claim)
            _call_deadline.reset(token)

    def _deadline(self) -> float:
        d = _call_deadline.get()
        return d if d is not None else self.clock.monotonic() + self.settings.drain_deadline_s

    def _fetch_quotes(self, symbols: list[str]) -> Values:
        if self.kinds["quote"].batch == 1:
            return self._fetch_each(lambda s: self.kis.get_current_price(s))(symbols)
        rows = self.call_kis(lambda: self.kis.get_multi_quotes(symbols), deadline=self._deadline())
        values = {s: to_value(q) for s, q in rows.items() if s in symbols}
        # Multi-quote answers no row for a code KIS does not know; remember that briefly (negative cache).
        unknown = {s: {"error": UNKNOWN} for s in symbols if s not in values}
        return {**values, **unknown}

    def _fetch_each(self, one: Callable[[str], Any]) -> Callable[[list[str]], Values]:
        def fetch(symbols: list[str]) -> Values:
            values: dict[str, dict[str, Any]] = {}
            for i, s in enumerate(symbols):
                try:
                    got = self.call_kis(lambda s=s: one(s), deadline=self._deadline())  # type: ignore[misc]
                except KISUnknownSymbolError:
                    values[s] = {"error": UNKNOWN}
                    continue
                except BATCH_FAILURES as exc:
                    if values:  # the symbols fetched so far cost KIS calls: keep them
                        raise _Partial(values, symbols[i:], exc) from exc
                    raise
                values[s] = got if isinstance(got, dict) else to_value(got)
            return values
        return fetch

    def _noted(self, info: Any) -> Any:
        """Symbol info answers carry the English name the master files lack: keep it for search."""
        english: str = getattr(info, "english_name", "")
        if self.symbols is not None and english:
            self.symbols.note_english(info.symbol, english)
        return info

    # ---- preload ---------------------------------------------------------------------------------
    def preload(self, symbols: Iterable[str], kinds: Sequence[str] = ("daily", "info")) -> dict[str, int]:
        """Queue daily data for the day; drains fetch it within the reference share of the budget."""
        out: dict[str, int] = {}
        symbols = list(symbols)
        for kind in kinds:
            out[kind] = self.pending[kind].add(symbols)
            self._request_drain(kind, self._slot())
        return out


TOKEN_REASON = "no KIS token"


def failure_reason(exc: BaseException) -> str:
    """What a waiting caller is told when its symbol could not be fetched."""
    if isinstance(exc, BreakerOpenError):
        return "KIS unavailable (circuit open)"
    if isinstance(exc, TokenUnavailableError):
        return f"{TOKEN_REASON}: {exc}"
    if isinstance(exc, KISError):
        return f"KIS error {exc.msg_cd or type(exc).__name__}"
    return type(exc).__name__


class _DrainState:
    """What the workers of one drain share: the report and how many of them are fetching."""

    def __init__(self, report: DrainReport) -> None:
        self.report = report
        self.lock = threading.Lock()
        self.active = 0


class _Partial(Exception):
    def __init__(self, values: Values, rest: list[str], error: BaseException) -> None:
        self.values, self.rest, self.error = values, rest, error
        super().__init__("partial fetch")
