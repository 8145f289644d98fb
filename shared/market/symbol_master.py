"""The symbol master in Redis: which codes are listed, their names, markets and flags; lookup and search.

Loaded by the scheduled preload (and at start by the local stack and test gateways) from KIS's daily
master files (`shared.kis.master`). Each load is written under a new version key and then made current in
one step, so readers see either the old master or the new one, never half of each; the previous version
is deleted. When a download fails the last master stays in use and `status()` says how old it is and
why the refresh failed. With no master ever loaded (a fresh Redis) every well-formed code is allowed,
as before, and `status()` says the check is off.

Readers keep the current master in process memory and look at its version key at most every
`recheck_s` seconds, so a check costs no Redis call on the hot path.

Keys (under the prefix): `symbols:meta` (hash: version, loaded_at, count, source, last_attempt_at,
last_error), `symbols:v:<version>` (hash: code -> JSON of the master row), `symbols:en` (hash: code ->
English name, learned from symbol-info answers; KIS's master files carry Korean names only).
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, cast

import orjson
import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.kis.master import MasterError, MasterSymbol
from shared.market import redis_keys

log = logging.getLogger(__name__)

SYMBOL_KINDS = frozenset({"quote", "daily", "info", "order"})  # keyed by stock code (index codes are not)
MARKET_ORDER = {"KOSPI": 0, "KOSDAQ": 1, "KONEX": 2}
MAX_SEARCH_LIMIT = 50
_CHUNK = 500


def _norm(text: str) -> str:
    """Case-, width- and space-insensitive form for matching (Ｓ/S, 삼성 전자/삼성전자)."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


class _Rows(Mapping[str, MasterSymbol]):
    """The master's rows by code, each decoded on first access. Membership needs no decoding, so a first answer
    naming a few codes decodes those few rather than the whole master (thousands of rows: tens of ms at a cold
    start); search decodes every row once. Concurrent first accesses may decode a row twice, harmlessly."""

    __slots__ = ("_raw", "_rows")

    def __init__(self, raw: dict[str, bytes]) -> None:
        self._raw = raw
        self._rows: dict[str, MasterSymbol] = {}

    def __getitem__(self, code: str) -> MasterSymbol:
        row = self._rows.get(code)
        if row is None:
            row = self._rows[code] = MasterSymbol.from_json(orjson.loads(self._raw[code]))
        return row

    def get(self, code: str, default: Any = None) -> Any:  # (Mapping's goes through __getitem__ and KeyError)
        row = self._rows.get(code)
        if row is not None:
            return row
        return self[code] if code in self._raw else default

    def __contains__(self, code: object) -> bool:
        return code in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


@dataclass(frozen=True)
class _Snapshot:
    version: str
    loaded_at: float
    symbols: _Rows
    english: dict[str, str]

    @cached_property
    def names(self) -> dict[str, str]:
        """code -> normalised Korean name (search only: built on the first search)."""
        return {c: _norm(s.name) for c, s in self.symbols.items()}

    @cached_property
    def english_norm(self) -> dict[str, str]:
        return {c: _norm(n) for c, n in self.english.items()}


class SymbolMaster:
    def __init__(self, client: redis.Redis, *, prefix: str, clock: Clock = SYSTEM_CLOCK,
                 recheck_s: float = 5.0) -> None:
        self.redis = client
        self.clock = clock
        self.recheck_s = recheck_s
        self._prefix = prefix
        self._meta = redis_keys.symbol_master_meta(prefix)
        self._english = redis_keys.symbol_master_english(prefix)
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._english_seen = -1
        self._checked_at = float("-inf")

    # ---- loading --------------------------------------------------------------------------------
    def store(self, symbols: Iterable[MasterSymbol], source: str) -> int:
        """Replace the master with `symbols` (all or nothing); returns how many were stored."""
        rows = {s.code: json.dumps(s.to_json(), ensure_ascii=False, separators=(",", ":")) for s in symbols}
        if not rows:
            raise MasterError("an empty master is never stored")
        version = uuid.uuid4().hex[:12]
        key = redis_keys.symbol_master_version(self._prefix, version)
        items = list(rows.items())
        pipe = self.redis.pipeline(transaction=False)
        for i in range(0, len(items), _CHUNK):
            pipe.hset(key, mapping=dict(items[i:i + _CHUNK]))
        pipe.execute()
        previous = cast(bytes | None, self.redis.hget(self._meta, "version"))
        now = self.clock.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._meta, mapping={"version": version, "loaded_at": repr(now), "count": len(rows),
                                       "source": source, "last_attempt_at": repr(now), "last_error": ""})
        if previous:
            pipe.delete(redis_keys.symbol_master_version(self._prefix, previous.decode()))
        pipe.execute()
        self._checked_at = float("-inf")
        return len(rows)

    def refresh(self, download: Callable[[], list[MasterSymbol]], source: str) -> dict[str, Any]:
        """Download and store; on failure keep the last master and record why. Returns status()."""
        try:
            symbols = download()
            count = self.store(symbols, source)
            log.info("symbol master loaded: %d symbols from %s", count, source)
        except MasterError as exc:
            log.error("symbol master refresh failed (%s); the last master stays in use", exc)
            self.redis.hset(self._meta, mapping={"last_attempt_at": repr(self.clock.time()),
                                                 "last_error": str(exc)[:300]})
        return self.status()

    def note_english(self, code: str, name: str) -> None:
        """An English name learned from a symbol-info answer (searchable from then on)."""
        name = name.strip()
        if name and cast(bytes | None, self.redis.hget(self._english, code)) != name.encode():
            self.redis.hset(self._english, code, name)

    # ---- reading --------------------------------------------------------------------------------
    def _current(self) -> _Snapshot | None:
        now = self.clock.monotonic()
        if now - self._checked_at < self.recheck_s:
            return self._snapshot
        with self._lock:
            if now - self._checked_at < self.recheck_s:
                return self._snapshot
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(self._meta, ["version", "loaded_at"])
            pipe.hlen(self._english)
            (version, loaded_at), english_count = pipe.execute()
            snap = self._snapshot
            if version is None:
                snap = None
            elif snap is None or snap.version != version.decode() or english_count != self._english_seen:
                snap = self._load(version.decode(), float(loaded_at or 0)) or snap
                self._english_seen = english_count
            self._snapshot = snap
            self._checked_at = now
            return snap

    def _load(self, version: str, loaded_at: float) -> _Snapshot | None:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(redis_keys.symbol_master_version(self._prefix, version)))
        if not raw:  # replaced between the two reads: the next check picks the newer one up
            return None
        symbols = _Rows({k.decode(): v for k, v in raw.items()})
        english = {k.decode(): v.decode()
                   for k, v in cast(dict[bytes, bytes], self.redis.hgetall(self._english)).items()}
        return _Snapshot(version, loaded_at, symbols, english)

    def loaded(self) -> bool:
        return self._current() is not None

    def due(self) -> bool:
        """True when the next lookup would check Redis for a new version (the async path runs that check in a
        worker thread first, so a lookup on its event loop never blocks on Redis)."""
        return self.clock.monotonic() - self._checked_at >= self.recheck_s

    def is_known(self, kind: str, code: str) -> bool:
        """False only when a master is loaded and `code` (a stock-keyed kind) is not in it."""
        if kind not in SYMBOL_KINDS:
            return True
        snap = self._current()
        return snap is None or code in snap.symbols

    def unknown(self, kind: str, codes: Iterable[str]) -> list[str]:
        if kind not in SYMBOL_KINDS:
            return []
        snap = self._current()
        if snap is None:
            return []
        return [c for c in codes if c not in snap.symbols]

    def rows(self) -> Mapping[str, MasterSymbol] | None:
        """The current master's rows by code (the same object until a new version is loaded), or None."""
        snap = self._current()
        return snap.symbols if snap else None

    def lookup(self, code: str) -> MasterSymbol | None:
        snap = self._current()
        return snap.symbols.get(code) if snap else None

    def describe(self, code: str) -> dict[str, Any] | None:
        """What callers see of one symbol: code, names, market, flags."""
        snap = self._current()
        if snap is None or code not in snap.symbols:
            return None
        return _public(snap.symbols[code], snap.english.get(code, ""))

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Codes (prefix, or the standard code), Korean and English names (exact, prefix, contained),
        best first: exact before prefix before contained; shares before ETFs/ETNs; trading before halted;
        shorter names first; KOSPI, KOSDAQ, KONEX; then code."""
        snap = self._current()
        q = _norm(query)
        if snap is None or not q:
            return []
        code_q = q.upper()
        scored: list[tuple[tuple[Any, ...], str]] = []
        for code, sym in snap.symbols.items():
            rank = None
            if code == code_q or sym.std_code == code_q:
                rank = 0
            elif code.startswith(code_q):
                rank = 2
            for name in (snap.names[code], snap.english_norm.get(code, "")):
                if not name:
                    continue
                if name == q:
                    r = 1
                elif name.startswith(q):
                    r = 3
                elif q in name:
                    r = 4
                else:
                    continue
                rank = r if rank is None else min(rank, r)
            if rank is None:
                continue
            scored.append(((rank, sym.group != "ST", sym.halted, len(sym.name), MARKET_ORDER.get(sym.market, 9),
                            code), code))
        scored.sort()
        return [_public(snap.symbols[c], snap.english.get(c, "")) for _, c in scored[:max(1, limit)]]

    def status(self) -> dict[str, Any]:
        """For /health: loaded or not, how many, when, from where, how old, the last refresh error."""
        raw = {k.decode(): v.decode() for k, v in cast(dict[bytes, bytes], self.redis.hgetall(self._meta)).items()}
        if not raw.get("version"):
            out: dict[str, Any] = {"loaded": False, "check": "off: no master loaded yet, every well-formed code "
                                                              "is allowed"}
        else:
            loaded_at = float(raw.get("loaded_at") or 0)
            out = {"loaded": True, "check": "on", "symbols": int(raw.get("count") or 0),
                   "loaded_at": _iso(loaded_at), "age_s": round(max(0.0, self.clock.time() - loaded_at), 1),
                   "source": raw.get("source", "")}
        if raw.get("last_error"):
            out["last_refresh_error"] = raw["last_error"]
            out["last_attempt_at"] = _iso(float(raw.get("last_attempt_at") or 0))
        return out


def _public(sym: MasterSymbol, english: str) -> dict[str, Any]:
    out = {"code": sym.code, "name": sym.name, "market": sym.market, "std_code": sym.std_code,
           "etf": sym.etf, "etn": sym.etn, "halted": sym.halted, "administrative": sym.managed}
    if english:
        out["name_en"] = english
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def refresh_from_settings(master: SymbolMaster, settings: Any, *, timeout_s: float = 30.0) -> dict[str, Any]:
    """Download KIS's master files from settings.kis_master_url and store them (the last master stays
    when that fails). Returns status()."""
    from shared.kis.master import download_masters

    url = settings.kis_master_url
    return master.refresh(lambda: download_masters(url, timeout_s=timeout_s), source=url)


def master_rows(master: SymbolMaster | None, kind: str) -> Mapping[str, MasterSymbol] | None:
    """The rows answers of a kind take their names and markets from (no KIS call): the master's, for a kind keyed
    by stock codes; None otherwise."""
    return master.rows() if master is not None and kind in SYMBOL_KINDS else None


def add_master_names(entry: dict[str, Any], row: MasterSymbol) -> None:
    """Name and market of a result from its master row, where the answer has none."""
    if not entry.get("name"):
        entry["name"] = row.name
    entry.setdefault("market", row.market)
