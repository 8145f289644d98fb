"""Parsing and validation of request input; errors name the field and the problem."""

from __future__ import annotations

import json
from typing import Any

from shared.api.errors import ApiError, bad_request
from shared.config import SYMBOL_CHARS

MAX_BODY_BYTES = 16 * 1024
INDEX_CODES = ("0001", "1001", "2001")


def parse_symbol(raw: Any, field: str = "symbol") -> str:
    if not isinstance(raw, str):
        raise bad_request(f"{field} must be a string of 6 characters 0-9/A-Z", field)
    code = raw.strip().upper()
    if len(code) != 6 or any(c not in SYMBOL_CHARS for c in code):
        raise bad_request(f"{field} {raw[:20]!r} is not a symbol code (6 characters 0-9/A-Z)", field)
    return code


def parse_symbols(raw: str | None, max_n: int, field: str = "symbols") -> list[str]:
    if raw is None or not raw.strip():
        raise bad_request(f"{field} is required: a comma-separated list of codes, e.g. 005930,000660", field)
    parts = [p for p in (x.strip() for x in raw.split(",")) if p]
    if len(parts) > max_n:
        raise bad_request(f"{field} has {len(parts)} codes; at most {max_n} per request", field)
    return list(dict.fromkeys(parse_symbol(p, field) for p in parts))


def parse_index_codes(raw: str | None, field: str = "codes") -> list[str]:
    if raw is None:
        return list(INDEX_CODES)
    if not raw.strip():
        raise bad_request(f"{field} is empty; leave it out for all indices or name some of {', '.join(INDEX_CODES)}",
                          field)
    codes = [p.strip() for p in raw.split(",") if p.strip()]
    for c in codes:
        if c not in INDEX_CODES:
            raise bad_request(f"{field} has {c[:10]!r}; index codes are {', '.join(INDEX_CODES)}", field)
    return list(dict.fromkeys(codes))


def parse_bool(raw: str | None, field: str, default: bool = False) -> bool:
    if raw is None:
        return default
    low = raw.lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise bad_request(f"{field} must be true or false", field)


def parse_deadline(raw: str | None, default: float, field: str = "deadline_ms") -> float:
    if raw is None or raw == "":
        return default
    try:
        ms = int(raw)
    except ValueError:
        raise bad_request(f"{field} must be an integer number of milliseconds", field) from None
    if not 0 <= ms <= 30_000:
        raise bad_request(f"{field} must be between 0 and 30000", field)
    return ms / 1000.0


def json_body(data: bytes, *, allowed: set[str] | None = None, required: tuple[str, ...] = ()) -> dict[str, Any]:
    if len(data) > MAX_BODY_BYTES:
        raise ApiError(413, f"body is {len(data)} bytes; at most {MAX_BODY_BYTES}", code="too_large")
    if not data.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    if allowed is not None:
        extra = sorted(set(body) - allowed)
        if extra:
            raise bad_request(f"unknown field {extra[0]!r}; allowed: {', '.join(sorted(allowed))}", extra[0])
    for name in required:
        if body.get(name) in (None, ""):
            raise bad_request(f"{name} is required", name)
    return body


def parse_search(raw_q: str | None, raw_limit: str | None, max_limit: int = 50) -> tuple[str, int]:
    """q: 1..40 characters (a code prefix, or part of a Korean or English name); limit: 1..max_limit."""
    q = (raw_q or "").strip()
    if not q:
        raise bad_request("q is required: a code prefix or part of a name, e.g. q=삼성 or q=0059", "q")
    if len(q) > 40 or any(not c.isprintable() for c in q):
        raise bad_request("q must be at most 40 printable characters", "q")
    if raw_limit is None or raw_limit == "":
        return q, 20
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= max_limit:
        raise bad_request(f"limit must be an integer 1..{max_limit}", "limit")
    return q, int(raw_limit)
