"""Admission of readers' misses into the pending sets: what a single caller may add, and what the fleet keeps.

A miss costs a KIS call later, so pending work is admitted, not just accepted:
- only codes the symbol master knows become pending (the readers ask `gw.symbols` before admission; `is_known`
  here defaults to "all known"), others are answered `error: unknown symbol` at once;
- a caller may enter at most `GATEWAY_PENDING_NEW_PER_CALLER_S` new symbols per second per kind: beyond it
  the request is answered 429 with Retry-After (and cached data where it exists);
- a kind's pending set holds at most `GATEWAY_PENDING_MAX` symbols: beyond it a refused symbol is answered from
  its last-known copy, else as an error naming the reason and when to retry; a request none of whose symbols
  has data first asks again for room until its deadline (`waits_for_room`), and is 503 with Retry-After only
  when the set stayed full (see `reader_sync.answer_of`);
- admitted symbols are "wanted" until their reader's deadline: claims serve wanted symbols first, and a
  symbol nobody has waited for in `GATEWAY_PENDING_IDLE_S` is dropped (see pending_claim.lua).

Plain functions over PendingSymbols, so any read path (threads or asyncio) can call them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import budget
from shared.config import Settings
from shared.market.pending import FRESH, FULL, OVER_RATE, AdmitResult, PendingSymbols

# How often a request waiting for room in a full pending set asks again (`waits_for_room`): a batch leaves the set
# with every call and idle entries expire, so under a burst the set is full for moments only.
ROOM_POLL_S = 0.1

# (kind, code) -> is the code a listed instrument of that kind? (a caller passes its symbol master's check)
SymbolMaster = Callable[[str, str], bool]


def all_known(kind: str, code: str) -> bool:
    """The default symbol master: every well-formed code is taken as known."""
    return True


@dataclass(frozen=True)
class Admission:
    """What happened to a reader's misses."""

    accepted: list[str] = field(default_factory=list)  # pending now (new or already), to wait for
    unknown: list[str] = field(default_factory=list)  # not in the symbol master: never pending
    over_rate: list[str] = field(default_factory=list)  # refused: the caller's new-symbol rate
    full: list[str] = field(default_factory=list)  # refused: the kind's pending set is full
    retry_after_s: int = 0

    @property
    def refused(self) -> list[str]:
        return self.over_rate + self.full


class AdmissionRefused(Exception):
    """Some symbols were refused; `results` holds every requested symbol's answer (cached data where it
    exists), `status` is 503 (pending set full) or 429 (caller's rate of new symbols)."""

    def __init__(self, results: Mapping[str, Any], admission: Admission) -> None:
        self.results = dict(results)
        self.admission = admission
        self.status = 503 if admission.full else 429
        self.code = "pending_full" if admission.full else "too_many_new_symbols"
        self.retry_after_s = max(1, admission.retry_after_s)
        if admission.full:
            message = (f"{len(admission.full)} symbol(s) not queued: too much work is pending for KIS; cached "
                       f"data is included where it exists; retry in {self.retry_after_s} s")
        else:
            message = (f"{len(admission.over_rate)} symbol(s) not queued: this credential asks for too many new "
                       f"symbols per second; cached data is included where it exists; retry in "
                       f"{self.retry_after_s} s")
        super().__init__(message)


def admit(settings: Settings, pend: PendingSymbols, kind: str, symbols: Sequence[str], *, caller: str | None,
          wait_s: float, drain_rate: float, is_known: SymbolMaster = all_known) -> Admission:
    """Enter a reader's misses into `pend` within the limits. `drain_rate` (symbols/s the kind is fetched at)
    sizes Retry-After when the set is full."""
    known, unknown = split_known(kind, symbols, is_known)
    if not known:
        return Admission(unknown=unknown)
    got = pend.admit(known, caller=caller or "-", wait_s=wait_s, max_pending=settings.pending_max,
                     new_per_s=new_per_caller(settings, caller))
    return outcome(known, unknown, got, drain_rate)


def split_known(kind: str, symbols: Sequence[str],
                is_known: SymbolMaster = all_known) -> tuple[list[str], list[str]]:
    """(known, unknown) codes of `symbols`, distinct and in order: only known ones may become pending."""
    wanted = list(dict.fromkeys(symbols))
    known = [s for s in wanted if is_known(kind, s)]
    taken = set(known)
    return known, [s for s in wanted if s not in taken]


def new_per_caller(settings: Settings, caller: str | None) -> int:
    """The cap on new pending symbols per second for this caller (0: none, for the operator's own callers)."""
    return settings.pending_new_per_caller_s if caller else 0


def admit_call(settings: Settings, pend: PendingSymbols, known: list[str], *, caller: str | None,
               wait_s: float, check_fresh: bool = False) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of `pending_admit.lua` for these known symbols (for a path that runs the script on a client of
    its own, e.g. redis.asyncio); read the reply with `pend.admit_result` and `outcome`. `check_fresh`: see
    `PendingSymbols.admit_call`."""
    return pend.admit_call(known, caller=caller or "-", wait_s=wait_s, max_pending=settings.pending_max,
                           new_per_s=new_per_caller(settings, caller), check_fresh=check_fresh)


def outcome(known: list[str], unknown: list[str], got: AdmitResult, drain_rate: float) -> Admission:
    """The Admission of a `pending_admit.lua` reply for `known` symbols."""
    over = [s for s in known if got.status[s] == OVER_RATE]
    full = [s for s in known if got.status[s] == FULL]
    accepted = [s for s in known if got.status[s] not in (OVER_RATE, FULL, FRESH)]
    retry = 0
    if full:
        retry = min(60, max(1, math.ceil(got.size / max(drain_rate, 0.1))))
    elif over:
        retry = 1
    return Admission(accepted, unknown, over, full, retry)


def waits_for_room(adm: Admission, results: Mapping[str, Any]) -> bool:
    """True when a request waits for room in its kind's pending set rather than being refused at once: some of
    its misses found the set full (the fleet's doing; not the caller's own rate of new symbols) and it has
    nothing to answer with, no symbol fresh or stale."""
    return bool(adm.full) and not adm.over_rate and not any(r.status in ("fresh", "stale") for r in results.values())


def after_wait(first: Admission, accepted: list[str], over: list[str], full: list[str],
               retry_after_s: int) -> Admission:
    """The admission of a request's misses after waiting for room: `accepted` in all, those refused at the last
    try (`over`: the caller's rate; `full`), and the unknown ones of the first try."""
    return Admission(accepted, first.unknown, over, full, retry_after_s if full or over else 0)


def refused_reason(adm: Admission, symbol: str) -> str:
    """The reason a refused symbol's answer carries."""
    if symbol in adm.full:
        return f"not queued: too much work pending for KIS; retry in {max(1, adm.retry_after_s)} s"
    return "not queued: too many new symbols from this caller"


def drain_rate(settings: Settings, call_class: str, batch: int) -> float:
    """Symbols per second a kind is fetched at, roughly: its class's queue rate times the batch size."""
    return budget.queue_rate(settings, call_class) * max(1, batch)
