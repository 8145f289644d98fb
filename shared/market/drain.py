"""The drain: nothing accepted is lost.

The promise it keeps: a symbol a reader (or the preload) marked pending is fetched from KIS, or its failure is
recorded for its waiters, or it stays pending for the next drain; it is never dropped and never fetched by two
drains at once. How:
- requests: a reader asks for one drain per kind and time slot (`request`); when the queue cannot be reached
  the drain runs in this process instead;
- claim: a drain claims up to one batch of pending symbols under a lease (`pending.py`, Lua), renewed around
  every wait for a rate grant (the KIS gate cuts each wait to what the lease allows);
- batch: up to DRAIN_WORKERS batches are fetched at once, part-filled batches are left to a worker already
  fetching (which comes back for them), and a short collect window lets concurrent misses join a batch;
- settle: fetched values go to the cache (waiters wake) and leave the pending set; a KIS failure is recorded
  as the waiters' reason (they answer stale/error at once); a rate-grant wait that ran out releases the
  symbols to the next drain; anything unexpected releases them too;
- the drain that ends with symbols still pending asks for the next slot's drain.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings
from shared.kis.client import KISClient
from shared.kis.errors import KISError, KISUnknownSymbolError
from shared.kis.models import plain
from shared.market.answers import UNKNOWN, failure_reason
from shared.market.breaker import BreakerOpenError
from shared.market.cache import DataCache
from shared.market.gate import KISGate
from shared.market.kinds import KindSpec, kind_specs
from shared.market.limiter import RateLimitTimeout
from shared.market.pending import PendingSymbols
from shared.market.ports import DrainCallback, DrainTrigger, DrainTriggerError
from shared.market.symbol_master import SymbolMaster
from shared.market.token import TokenUnavailableError

log = logging.getLogger(__name__)

# Drain requests are deduplicated per kind and time slot (per process, and fleet-wide by the task's name). A miss
# that arrives after its slot's drain has finished waits for the next slot, so the slot bounds a miss's latency:
# a quarter second keeps a miss near one KIS round trip, at most 4 drain tasks a second per kind.
DRAIN_SLOTS_PER_S = 4
# Batches one drain fetches at once (each call still passes the shared limiter).
DRAIN_WORKERS = 3
# How often a worker standing by (while another of its drain fetches) looks for a full batch to fetch beside it,
# and a drain in its collect window looks whether a full batch is pending already (then it ends the window).
STANDBY_POLL_S = 0.02
# What a fetch returns: symbol -> value to cache (an {"error": ...} value is a short-lived negative answer).
Values = dict[str, dict[str, Any]]
# Failures of a fetch that end it for this batch (after the retry policy has had its go).
FETCH_FAILURES: tuple[type[BaseException], ...] = (BreakerOpenError, TokenUnavailableError, KISError)
# What stops a drain batch: a rate-grant wait that ran out, or one of the fetch failures.
BATCH_FAILURES: tuple[type[BaseException], ...] = (RateLimitTimeout, *FETCH_FAILURES)


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


class Drain:
    """Drains of one gateway: `trigger` is the queue that runs them, or `trigger_for(run)` builds one that runs
    `run(kind, call_class, slot)` (an in-process trigger runs this drain: built here, in dependency order)."""

    def __init__(
        self,
        settings: Settings,
        *,
        kis: KISClient,
        gate: KISGate,
        caches: Mapping[str, DataCache],
        pending: Mapping[str, PendingSymbols],
        trigger: DrainTrigger | None = None,
        trigger_for: Callable[[DrainCallback], DrainTrigger] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_drain: Callable[[DrainReport], None] | None = None,
        symbols: SymbolMaster | None = None,
    ) -> None:
        self.settings = settings
        self.kis = kis
        self.gate = gate
        self.caches = caches
        self.pending = pending
        self.clock = clock
        self.on_drain = on_drain
        self.symbols = symbols  # the symbol master: keeps the English names info answers carry
        self.kinds: dict[str, KindSpec] = kind_specs(settings)
        if trigger is None:
            if trigger_for is None:
                raise ValueError("pass a trigger, or trigger_for to build one that runs this drain")
            trigger = trigger_for(self._run_requested)
        self.trigger: DrainTrigger = trigger
        self._requested: dict[str, int] = {}
        self._requested_lock = threading.Lock()
        self._fetchers: dict[str, Callable[[list[str]], Values]] = {
            "quote": self._fetch_quotes,
            "index": self._fetch_each(lambda c: self.kis.get_index_price(c)),
            "daily": self._fetch_each(lambda s: {"bars": [plain(b) for b in self.kis.get_daily_prices(s)]}),
            "info": self._fetch_each(lambda s: self._noted(self.kis.get_stock_info(s))),
        }

    def _run_requested(self, kind: str, call_class: str, slot: int) -> DrainReport:
        return self.drain(kind)

    # ---- requests ----------------------------------------------------------------------------------
    def slot(self) -> int:
        """The time slot drain requests are made for (one drain per kind and slot)."""
        return int(self.clock.time() * DRAIN_SLOTS_PER_S)

    def until_next_slot(self) -> float:
        """Seconds until the next drain slot begins (a waiter wakes then to ask for that slot's drain)."""
        now = self.clock.time()
        return max(0.0, (int(now * DRAIN_SLOTS_PER_S) + 1) / DRAIN_SLOTS_PER_S - now)

    def request(self, kind: str, slot: int) -> None:
        if self.claim_request(kind, slot):
            self.send_request(kind, slot)

    def claim_request(self, kind: str, slot: int) -> bool:
        """True for the first caller of this process asking for `kind`'s drain in `slot` (no I/O)."""
        # Hundreds of waiters of one instance would otherwise each ask the queue for the same slot's task.
        with self._requested_lock:
            if self._requested.get(kind) == slot:
                return False
            self._requested[kind] = slot
            return True

    def send_request(self, kind: str, slot: int) -> None:
        """Ask the queue for the drain (blocking I/O: the async reader runs it in a worker thread)."""
        try:
            self.trigger.request_drain(kind, self.kinds[kind].call_class, slot)
        except DrainTriggerError as exc:
            # The queue is unreachable: drain here rather than leave accepted symbols waiting.
            log.error("drain trigger failed (%s); draining %s in-process", exc, kind)
            threading.Thread(target=self.drain, args=(kind,), daemon=True, name=f"drain-{kind}").start()

    def preload(self, symbols: Iterable[str], kinds: Sequence[str] = ("daily", "info")) -> dict[str, int]:
        """Queue daily data for the day; drains fetch it within the reference share of the budget."""
        out: dict[str, int] = {}
        symbols = list(symbols)
        for kind in kinds:
            out[kind] = self.pending[kind].add(symbols)
            self.request(kind, self.slot())
        return out

    # ---- the drain ---------------------------------------------------------------------------------
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
            self._collect(kind, min(window, max(0.0, stop - self.clock.monotonic())))
        ctx = contextvars.copy_context
        helpers = [threading.Thread(target=ctx().run, args=(self._worker, kind, owner, stop, state, window),
                                    name=f"drain-{kind}-worker", daemon=True) for _ in range(DRAIN_WORKERS - 1)]
        for t in helpers:
            t.start()
        self._worker(kind, owner, stop, state, window)
        for t in helpers:
            t.join(max(0.0, stop - self.clock.monotonic()) + self.settings.kis_http_timeout_s + 1.0)
        report = state.report
        if pend.size() > 0:
            self.request(kind, self.slot() + 1)
        if self.on_drain is not None:
            self.on_drain(report)
        return report

    def _worker(self, kind: str, owner: str, stop: float, state: _DrainState, window: float) -> None:
        spec = self.kinds[kind]
        pend = self.pending[kind]
        report = state.report
        while self.clock.monotonic() < stop and not report.stopped:
            with state.lock:
                in_flight = pend.in_flight()
                unclaimed = pend.size() - in_flight
                partial = 0 < unclaimed < spec.batch
                # Nothing to take now, or only a part-filled batch that a worker fetching now (of this drain or
                # another) comes back for, with whatever joined meanwhile: stand by while this drain still has a
                # worker fetching, so that a batch filling up meanwhile (a storm's symbols arriving) is fetched
                # at once, beside it, not after it; the drain that ends last asks for one more if any are left.
                idle = unclaimed <= 0 or (partial and (state.active > 0 or in_flight > 0))
                if idle and state.active == 0:
                    return
                if not idle:
                    state.active += 1  # fetching (or filling a batch): others leave part-filled batches to it
            if idle:
                self.clock.sleep(STANDBY_POLL_S)
                continue
            try:
                full = not partial
                if partial and window:
                    # Let concurrent requests join this batch: a storm's symbols arriving slower than the
                    # fetches would otherwise go out in part-filled batches, each costing a whole KIS call.
                    full = self._collect(kind, min(window, max(0.0, stop - self.clock.monotonic())))
                claimed = pend.claim(spec.batch, owner)
                if not claimed:
                    return
                if full and len(claimed) < spec.batch:
                    # A full batch was there, and another worker (of this drain or another) took it first: the
                    # rest goes back, to be fetched with what joins it, not alone in a call of its own.
                    pend.release(claimed, owner)
                    continue
                self._batch(kind, owner, stop, state, claimed)
            finally:
                with state.lock:
                    state.active -= 1

    def _collect(self, kind: str, window: float) -> bool:
        """Let concurrent requests join the next batch for up to `window`, and no longer than until a full batch
        is pending (True then): a storm's first call waited the whole window with its batch full after a few ms."""
        pend = self.pending[kind]
        batch = self.kinds[kind].batch
        end = self.clock.monotonic() + window
        while (left := end - self.clock.monotonic()) > 0:
            self.clock.sleep(min(STANDBY_POLL_S, left))
            if pend.size() - pend.in_flight() >= batch:
                return True
        return False

    def _batch(self, kind: str, owner: str, stop: float, state: _DrainState, claimed: list[str]) -> None:
        """Fetch one claimed batch and settle every symbol of it: cached, failed (with the reason) or released."""
        pend = self.pending[kind]
        report = state.report
        error: BaseException | None = None
        try:
            values = self.fetch(kind, claimed, stop, owner)  # `claimed` may grow: topped up at its grant
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
            report.batches += 1
            report.fill.append(len(claimed))
            if isinstance(error, RateLimitTimeout):
                report.released += len(rest)
                report.stopped = "rate limit wait exceeded the drain deadline"
            elif error is not None:
                report.failed += len(rest)
            report.fetched += len(values)

    def _fail(self, kind: str, symbols: list[str], owner: str, reason: str) -> None:
        self.pending[kind].fail(symbols, owner, reason)
        self.caches[kind].notify(symbols)  # waiters look again and answer stale/error at once

    # ---- fetching ----------------------------------------------------------------------------------
    def fetch(self, kind: str, symbols: list[str], stop: float, owner: str = "") -> Values:
        """The values of `symbols` from KIS, every call through the gate by `stop` (under `owner`'s lease).

        A batch fetched in one call (multi-quote) that is short of full when its rate grant comes is topped up
        then, under the same lease: the symbols that became pending while it waited for its slot go in the same
        call, and are added to `symbols`. (A storm's first drain starts with the first request's symbols; its
        collect window can end before the others are queued, and the part-filled call cost a whole slot.)"""
        spec = self.kinds[kind]
        lease = _Claim(self.pending[kind], symbols, owner) if owner else None
        with self.gate.bounded(stop, lease):
            if not (owner and spec.one_call and len(symbols) < spec.batch):
                return self._fetchers[kind](symbols)
            with self.gate.granted(spec.call_class):
                symbols += self.pending[kind].claim(spec.batch - len(symbols), owner)
                return self._fetchers[kind](symbols)

    def _deadline(self) -> float:
        return self.gate.deadline(self.settings.drain_deadline_s)

    def _fetch_quotes(self, symbols: list[str]) -> Values:
        if self.kinds["quote"].batch == 1:
            return self._fetch_each(lambda s: self.kis.get_current_price(s))(symbols)
        rows = self.gate.call(lambda: self.kis.get_multi_quotes(symbols), deadline=self._deadline())
        values = {s: plain(q) for s, q in rows.items() if s in symbols}
        # Multi-quote answers no row for a code KIS does not know; remember that briefly (negative cache).
        unknown = {s: {"error": UNKNOWN} for s in symbols if s not in values}
        return {**values, **unknown}

    def _fetch_each(self, one: Callable[[str], Any]) -> Callable[[list[str]], Values]:
        def fetch(symbols: list[str]) -> Values:
            values: dict[str, dict[str, Any]] = {}
            for i, s in enumerate(symbols):
                try:
                    got = self.gate.call(lambda s=s: one(s), deadline=self._deadline())  # type: ignore[misc]
                except KISUnknownSymbolError:
                    values[s] = {"error": UNKNOWN}
                    continue
                except BATCH_FAILURES as exc:
                    if values:  # the symbols fetched so far cost KIS calls: keep them
                        raise _Partial(values, symbols[i:], exc) from exc
                    raise
                values[s] = got if isinstance(got, dict) else plain(got)
            return values
        return fetch

    def _noted(self, info: Any) -> Any:
        """Symbol info answers carry the English name the master files lack: keep it for search."""
        english: str = getattr(info, "english_name", "")
        if self.symbols is not None and english:
            self.symbols.note_english(info.symbol, english)
        return info


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
