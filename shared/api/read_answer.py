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

A cache hit's whole answer is also kept for the rest of its millisecond (`made`, `keep`): ages and the time
served are given to the millisecond, so every request of the same query in that millisecond gets the same body
while the near cache it was made from has not changed. Measured with 32 clients polling one hot symbol, about
eight requests shared each millisecond.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

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


def answer(key: str, results: Mapping[str, SymbolResult], rows: Mapping[str, Any] | None,
           served_at: str) -> RawJson:
    """`{key: {code: result...}, "served_at": served_at}`; `rows`: the symbol master's rows by code (name and
    market), for a kind keyed by stock codes."""
    parts = []
    for code, r in results.items():
        part = _part(code, r, rows)
        if r.age_s is not None:
            part += b',"age_s":' + repr(round(r.age_s, 3)).encode()
        parts.append(part + b"}")
    return RawJson(b'{"' + key.encode() + b'":{' + b",".join(parts) + b'},"served_at":"' + served_at.encode()
                   + b'"}')


class Made(NamedTuple):
    """A cache hit's answer and what it was made from."""

    body: RawJson
    outcomes: tuple[tuple[Any, int], ...]  # its symbols by status (handlers.read_outcomes)
    near: Any  # the near cache its copies came from
    version: int  # that cache's version then
    ms: int  # the clock's millisecond then (the ages)
    wall_ms: int  # time.time()'s millisecond then (the time served)
    until: float  # when the first of its copies stops being fresh (the clock's time)
    rows: Any  # the symbol master's rows it took names from


# A read query's key (the serve path's validated-query memo key) -> the last cache hit's answer made for it.
_made: dict[Any, Made] = {}
MADE_MAX = 4_096


def made(key: Any, near: Any, now: float, wall: float, rows: Any) -> Made | None:
    """The answer kept for this query when it is still this one's to the millisecond: the same near cache,
    unchanged, the same millisecond of the clock (`now`) and of the wall (`wall`), every copy still fresh and
    the same master rows."""
    m = _made.get(key)
    if (m is not None and m.near is near and m.version == near.version and m.ms == int(now * 1000)
            and m.wall_ms == int(wall * 1000) and now < m.until and m.rows is rows):
        return m
    return None


def keep(key: Any, m: Made) -> None:
    if len(_made) >= MADE_MAX:
        _made.clear()
    _made[key] = m
