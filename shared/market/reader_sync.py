"""The synchronous read path: what a read request gets, for callers that wait in a thread.

The promise it keeps (the same as the async reader in `reader.py`, which serves the deployed read functions
without holding a thread; this one serves the synchronous routes, the benchmark and the tools):
- cache first: symbols with a fresh copy are answered from the cache at once;
- coalescing: a missed symbol is marked pending once however many callers want it, admitted under the caps
  of `admission.py`, and one drain per kind and time slot is asked for per process (`drain.Drain.request`);
- waiting: a request waits until its symbols are written, failed or its deadline comes, woken by the cache's
  notices; it never hangs past its deadline;
- answers: every requested code comes back `fresh`, `stale`, `pending` or `error` in the requested order,
  chosen in `answers.py` (the home of stale answers under outage). Codes outside the symbol master are
  answered `error` at once and never reach KIS.
It is its own module, beside `reader.py`, because the two wait differently (threads and the cache's
condition vs. one pub/sub listener per event loop) while they answer alike: what they answer lives in one
place, `answers.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import Settings
from shared.market import admission
from shared.market.answers import (
    CIRCUIT_OPEN,
    PAPER_REFUSED,
    UNKNOWN,
    SymbolResult,
    from_entry,
    not_admitted,
    still_waiting,
    unavailable,
)
from shared.market.breaker import SharedBreaker
from shared.market.cache import DataCache
from shared.market.drain import Drain
from shared.market.pending import PendingSymbols
from shared.market.symbol_master import SymbolMaster

# Waiters wake on notification; the slice only bounds how late a waiter notices a new drain slot.
WAIT_SLICE_S = 0.5


class MarketReader:
    def __init__(self, settings: Settings, *, caches: Mapping[str, DataCache], pending: Mapping[str, PendingSymbols],
                 breaker: SharedBreaker, drain: Drain, symbols: SymbolMaster | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.caches = caches
        self.pending = pending
        self.breaker = breaker
        self.drain = drain
        self.symbols = symbols  # the symbol master: unknown codes never reach KIS
        self.clock = clock

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
                results[s] = from_entry(e)
            else:
                need.append(s)
        if not need:
            return results
        if self.breaker.refusing():
            for s in need:
                results[s] = unavailable(entries.get(s), CIRCUIT_OPEN)
            return {s: results[s] for s in wanted}

        written_after = self.clock.time() if refresh else None
        pend = self.pending[kind]
        if not refresh:
            # Written since the first look (another request's drain): answered, not queued again.
            for s, e in cache.get_many(need).items():
                if e.fresh:
                    results[s] = from_entry(e)
            need = [s for s in need if s not in results]
            if not need:
                return {s: results[s] for s in wanted}
        spec = self.drain.kinds[kind]
        adm = admission.admit(self.settings, pend, kind, need, caller=caller, wait_s=deadline - start,
                              drain_rate=admission.drain_rate(self.settings, spec.call_class, spec.batch))
        not_admitted(results, entries, adm)
        if admission.waits_for_room(adm, results):
            adm = self._room_for(kind, adm, caller, deadline, results)
            not_admitted(results, entries, adm)
        need = adm.accepted
        if not need:
            return answer_of(results, wanted, adm)
        slot = self.drain.slot()
        self.drain.request(kind, slot)
        waiting = set(need)
        while waiting:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            cache.wait_for(waiting, min(WAIT_SLICE_S, remaining), only_new=refresh)
            now_entries = cache.get_many(sorted(waiting))
            for s, e in now_entries.items():
                if e.fresh and (written_after is None or e.stored_at >= written_after):
                    results[s] = from_entry(e)
                    waiting.discard(s)
            if waiting:
                for s, reason in pend.failures(sorted(waiting)).items():
                    results[s] = unavailable(now_entries.get(s) or entries.get(s), reason)
                    waiting.discard(s)
            if waiting and self.drain.slot() != slot:
                # A drain that finished just before our symbols arrived will not come back for them.
                slot = self.drain.slot()
                self.drain.request(kind, slot)
        for s in waiting:
            results[s] = still_waiting(entries.get(s))
        return answer_of(results, wanted, adm)


    def _room_for(self, kind: str, adm: admission.Admission, caller: str | None, deadline: float,
                  results: dict[str, SymbolResult]) -> admission.Admission:
        """`admission.waits_for_room`: ask again for room every ROOM_POLL_S until the deadline (as the async
        reader does). A symbol written meanwhile is answered from its copy."""
        spec = self.drain.kinds[kind]
        cache = self.caches[kind]
        accepted, full, over = list(adm.accepted), list(adm.full), list(adm.over_rate)
        retry = adm.retry_after_s
        while full and not over and deadline - self.clock.monotonic() > admission.ROOM_POLL_S:
            self.clock.sleep(admission.ROOM_POLL_S)
            for s, e in cache.get_many(full).items():
                if e.fresh:
                    results[s] = from_entry(e)
            full = [s for s in full if s not in results or results[s].status == "error"]
            if not full:
                break
            again = admission.admit(self.settings, self.pending[kind], kind, full, caller=caller,
                                    wait_s=deadline - self.clock.monotonic(),
                                    drain_rate=admission.drain_rate(self.settings, spec.call_class, spec.batch))
            accepted += again.accepted
            full, over, retry = list(again.full), list(again.over_rate), again.retry_after_s
        return admission.after_wait(adm, accepted, over, full, retry)


def answer_of(results: dict[str, SymbolResult], wanted: list[str],
              adm: admission.Admission) -> dict[str, SymbolResult]:
    """The answers in the requested order; raises admission.AdmissionRefused (with them) when some misses were
    refused: always for the caller's own rate of new symbols (429: the caller's doing, its remedy is to slow
    down); for a full pending set (503) only when the request has nothing to answer with, no symbol fresh or
    stale. Under overload (the fleet's doing, not the caller's) a request with data is answered 200: each
    refused symbol from its last-known copy (stale, with its age and the reason) or, without one, as an error
    naming the reason and when to retry. Shared by both readers."""
    ordered = {s: results[s] for s in wanted}
    if adm.over_rate:
        raise admission.AdmissionRefused(ordered, adm)
    if adm.full and not any(r.status in ("fresh", "stale") for r in ordered.values()):
        raise admission.AdmissionRefused(ordered, adm)
    return ordered
