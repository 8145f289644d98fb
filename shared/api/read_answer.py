"""The body of a read route's answer, encoded as JSON once per copy rather than once per request.

A read answers `{"<kind's key>": {code: {"status": ..., <the copy's fields>, "name", "market", "reason",
"age_s"}}, "served_at": ...}` (`SymbolResult.to_json`, with the symbol master's name and market where the copy
has none). Every request for a hot symbol carries the same copy (the same value, held by the near cache) and
the same master row; only its age and the time served change. So each symbol's part up to its age is encoded
once per (copy, status, reason, master row) and kept, and a request joins the parts, the ages and the time.

Measured on a one-symbol cache hit over HTTP: shaping the answer per request (a dict per symbol copied from the
copy's fields, the master's name and market looked up, the whole encoded) cost about as much as the framework's
own work for a request, though a fifth of that when timed alone: between two requests the server's other work
pushes the copy's many small objects out of the processor's caches, and one kept part is one object.

No library encodes JSON from pre-encoded parts, hence the joining here; every part itself is encoded by the
serve paths' encoder (`encode`: orjson, the standard library for what orjson refuses).

A cache hit's answer is also kept for its query (`Kept`, `kept`, `keep`) while the near cache it was made from
has not changed and the reader says the same read would give the same copies: a request then takes the kept
body when in the same millisecond (ages and the time served are given to the millisecond), and otherwise joins
the kept parts with its own ages and time. Measured with 32 clients polling one hot symbol: about eight
requests share each millisecond, and reading the near cache and making the answer anew cost a cache hit as much
as the framework's own work for a request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.market.answers import SymbolResult
from shared.market.symbol_master import add_master_names

# Parts kept at most (one per symbol copy answered; a copy is replaced every freshness window, so the parts are
# started afresh when full): a quote's part is about 400 bytes and holds its copy (about 3 KB): about 14 MB.
PARTS_MAX = 4_096


class RawJson(bytes):
    """An answer body already encoded as JSON: both serve paths send it as it is."""


def encode(body: Any) -> bytes:
    """Compact UTF-8 JSON (orjson; the standard library for what orjson refuses, e.g. non-string keys)."""
    if isinstance(body, RawJson):
        return body
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# (code, status, reason, id(value), id(master rows)) -> (the part, the value, the rows); the value and rows are
# held so that their ids stay theirs while the part is kept.
_parts: dict[tuple[str, str, str | None, int, int], tuple[bytes, Any, Any]] = {}


def _part(code: str, r: SymbolResult, rows: Mapping[str, Any] | None) -> bytes:
    """`"code":{...` up to (not including) the age and the closing brace."""
    key = (code, r.status, r.reason, id(r.value), id(rows))
    hit = _parts.get(key)
    if hit is not None and hit[1] is r.value and hit[2] is rows:
        return hit[0]
    shown = r._replace(age_s=None).to_json()
    shown.pop("age_s", None)  # (a copy's own field of that name would be answered twice)
    row = rows.get(code) if rows is not None else None
    if row is not None:
        add_master_names(shown, row)
    part = encode(code) + b":" + encode(shown)[:-1]
    if len(_parts) >= PARTS_MAX:
        _parts.clear()
    _parts[key] = (part, r.value, rows)
    return part


_second: tuple[int, str] = (-1, "")  # (the last whole second formatted, its text up to the seconds)


def now_iso(now: float | None = None) -> str:
    """Now (or `now`, a time.time()) in UTC, ISO 8601 to the millisecond (as datetime's isoformat gives), the
    seconds part formatted once per second (every answer carries it)."""
    global _second
    if now is None:
        now = time.time()
    sec = int(now)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{int((now - sec) * 1000):03d}+00:00"


def _joined(head: bytes, parts: list[bytes], ages: Iterable[float | None], served_at: str) -> RawJson:
    out = []
    for part, age in zip(parts, ages, strict=True):
        out.append(part + b"}" if age is None else part + b',"age_s":' + repr(round(age, 3)).encode() + b"}")
    return RawJson(head + b",".join(out) + b'},"served_at":"' + served_at.encode() + b'"}')


def answer(key: str, results: Mapping[str, SymbolResult], rows: Mapping[str, Any] | None,
           served_at: str) -> RawJson:
    """`{key: {code: result...}, "served_at": served_at}`; `rows`: the symbol master's rows by code (name and
    market), for a kind keyed by stock codes."""
    return _joined(b'{"' + key.encode() + b'":{', [_part(code, r, rows) for code, r in results.items()],
                   (r.age_s for r in results.values()), served_at)


class Kept:
    """A cache hit's answer kept for its query: its parts, when each copy was stored (its age at any moment
    after), the last body joined (for its millisecond), and what it was made from (`kept` checks it still
    holds)."""

    __slots__ = ("_head", "_parts", "_born", "_at", "_body", "outcomes", "near", "version", "valid_until", "rows")

    def __init__(self, key: str, results: Mapping[str, SymbolResult], rows: Mapping[str, Any] | None,
                 now: float, wall: float, outcomes: Any, near: Any, valid_until: float) -> None:
        self._head = b'{"' + key.encode() + b'":{'
        self._parts = [_part(code, r, rows) for code, r in results.items()]
        ages = [r.age_s for r in results.values()]
        # A copy's age was held at 0 when it was stored after `now` (another instance's clock ahead): when it was
        # stored is not known then, and the parts answer only this millisecond.
        self._born: list[float | None] | None = (
            None if 0.0 in ages else [None if a is None else now - a for a in ages])
        self._at = (int(now * 1000), int(wall * 1000))
        self._body = _joined(self._head, self._parts, ages, now_iso(wall))
        self.outcomes = outcomes  # its symbols by status (handlers.read_outcomes)
        self.near = near  # the near cache its copies came from
        self.version = near.version  # that cache's version then
        self.valid_until = valid_until  # the reader's word: the same read gives the same copies until then
        self.rows = rows  # the symbol master's rows it took names from

    @property
    def size(self) -> int:
        """How many symbol parts it holds (what `keep` bounds)."""
        return len(self._parts)

    def body(self, now: float, wall: float) -> RawJson | None:
        """The answer at `now` (the clock: the ages) and `wall` (the time served), to the millisecond; None when
        the ages cannot be told (see `_born`)."""
        at = (int(now * 1000), int(wall * 1000))
        if at == self._at:
            return self._body
        born = self._born
        if born is None:
            return None
        self._at = at
        self._body = _joined(self._head, self._parts, (None if b is None else max(0.0, now - b) for b in born),
                             now_iso(wall))
        return self._body


# A read query's key (the serve path's validated-query memo key) -> its cache hit's answer kept. Bounded by
# queries and by their symbol parts together (a 100-symbol answer is about 40 KB): at either bound it starts over.
_kept: dict[Any, Kept] = {}
KEPT_MAX = 4_096
KEPT_MAX_PARTS = 20_000
_kept_parts = 0


def kept(key: Any, near: Any, now: float, rows: Any) -> Kept | None:
    """The answer kept for this query while it still holds: the same near cache, unchanged since, before the
    moment the reader gave (a copy running out or its refresh ahead due), the same master rows."""
    k = _kept.get(key)
    if k is not None and k.near is near and k.version == near.version and now < k.valid_until and k.rows is rows:
        return k
    return None


def keep(key: Any, k: Kept) -> None:
    global _kept_parts
    before = _kept.pop(key, None)
    if before is not None:
        _kept_parts -= before.size
    if len(_kept) >= KEPT_MAX or _kept_parts + k.size > KEPT_MAX_PARTS:
        _kept.clear()
        _kept_parts = 0
    _kept[key] = k
    _kept_parts += k.size
