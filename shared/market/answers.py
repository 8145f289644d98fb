"""What a reader answers for each requested symbol, and the home of "stale answers under outage".

The promise it keeps: every requested code gets one of four answers, never silence:
- `fresh`: a copy within its freshness window (or a short-lived negative answer: `error`, e.g. unknown symbol);
- `stale`: KIS cannot be asked now (circuit open, no token, a failed fetch, work refused by admission) or the
  fetch is still under way at the deadline, and a last-known copy exists: that copy, with its age and why;
- `pending`: still being fetched at the deadline and no copy was ever kept;
- `error`: KIS cannot be asked and no copy exists, with the reason.
Both readers (`reader_sync.py`, `reader.py`) choose their answers here; the last-known copies they fall back
on are kept by `cache.py` (LAST_KNOWN_TTL_S) and the failure reasons by `pending.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from shared.kis.errors import KISError
from shared.market import admission
from shared.market.breaker import BreakerOpenError
from shared.market.cache import CacheEntry
from shared.market.token import TokenUnavailableError

UNKNOWN = "unknown symbol"
CIRCUIT_OPEN = "KIS unavailable (circuit open)"
TOKEN_REASON = "no KIS token"
REFRESH_PENDING = "refresh pending"
BEING_FETCHED = "being fetched from KIS"
PAPER_NO_INFO = "symbol info is not offered to paper-trading keys (KIS serves CTPF1002R on real keys only)"
PAPER_NO_INDEX = "index quotes are not offered to paper-trading keys (KIS serves FHPUP02100000 on real keys only)"
PAPER_REFUSED = {"info": PAPER_NO_INFO, "index": PAPER_NO_INDEX}


class SymbolResult(NamedTuple):
    """One symbol's answer (a named tuple: one is made per symbol of every read, and a frozen dataclass costs
    about three times as much to make)."""

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


def from_entry(e: CacheEntry) -> SymbolResult:
    """A fresh copy (or a kept negative answer) as it is."""
    if "error" in e.value:
        return SymbolResult("error", reason=str(e.value["error"]))
    return SymbolResult("fresh", e.value, e.age_s)


def unavailable(e: CacheEntry | None, reason: str) -> SymbolResult:
    """KIS cannot be asked (or the fetch failed): the last-known copy with its age, else the reason."""
    if e is not None and "error" not in e.value:
        return SymbolResult("stale", e.value, e.age_s, reason)
    return SymbolResult("error", reason=reason)


def not_admitted(results: dict[str, SymbolResult], entries: Mapping[str, CacheEntry | None],
                 adm: admission.Admission) -> None:
    """Answer the misses admission did not take: unknown codes at once, refused ones from their last copy."""
    for s in adm.unknown:
        results[s] = SymbolResult("error", reason=UNKNOWN)
    for s in adm.refused:
        results[s] = unavailable(entries.get(s), admission.refused_reason(adm, s))


def still_waiting(e: CacheEntry | None) -> SymbolResult:
    """The deadline came while the symbol is still being fetched: the last-known copy, else `pending`."""
    if e is not None and "error" not in e.value:
        return SymbolResult("stale", e.value, e.age_s, REFRESH_PENDING)
    return SymbolResult("pending", reason=BEING_FETCHED)


def failure_reason(exc: BaseException) -> str:
    """What a waiting caller is told when its symbol could not be fetched."""
    if isinstance(exc, BreakerOpenError):
        return CIRCUIT_OPEN
    if isinstance(exc, TokenUnavailableError):
        return f"{TOKEN_REASON}: {exc}"
    if isinstance(exc, KISError):
        return f"KIS error {exc.msg_cd or type(exc).__name__}"
    return type(exc).__name__
