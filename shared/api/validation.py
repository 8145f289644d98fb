"""Parsing and validation of request input; errors name the field and the problem."""

from __future__ import annotations

import json
import re
from typing import Any

from shared.api.errors import ApiError, bad_request
from shared.config import MAX_DEADLINE_MS, SYMBOL_CHARS

MAX_BODY_BYTES = 16 * 1024
MAX_JSON_DEPTH = 32
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,127}")
INDEX_CODES = ("0001", "1001", "2001")
MAX_QUERY_CHARS = 40  # a symbol search text
DEFAULT_LIMIT = 20  # search results unless the caller asks for more
IDEMPOTENCY_KEY_PATTERN = "^[A-Za-z0-9._:-]{8,100}$"


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


def parse_deadline(raw: str | None, default: float, field: str = "deadline_ms",
                   max_s: float = MAX_DEADLINE_MS / 1000) -> float:
    """Milliseconds to wait, 0..max_s*1000 (a waiting request holds a slot: the cap is a setting)."""
    if raw is None or raw == "":
        return min(default, max_s)
    try:
        ms = int(raw)
    except ValueError:
        raise bad_request(f"{field} must be an integer number of milliseconds", field) from None
    max_ms = int(max_s * 1000)
    if not 0 <= ms <= max_ms:
        raise bad_request(f"{field} must be between 0 and {max_ms}", field)
    return ms / 1000.0


def limit_body(request: Any) -> None:
    """Refuse a body over MAX_BODY_BYTES before reading it: by its Content-Length, and (chunked or lying
    senders) by a stream that stops reading at the limit."""
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ApiError(413, f"body is {length} bytes; at most {MAX_BODY_BYTES}", code="too_large")
    # Without a length the stream stops after one byte too many, which json_body then refuses as too large.
    request.max_content_length = MAX_BODY_BYTES + 1


def request_id(raw: str | None) -> str | None:
    """A caller's X-Request-Id if it is safe to echo, log and forward (1..128 of A-Z a-z 0-9 . _ : / -)."""
    if raw and REQUEST_ID.fullmatch(raw):
        return raw
    return None


def _depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return True


def json_body(data: bytes) -> dict[str, Any]:
    """The request body as a JSON object (empty body = {}); its fields are checked by a model of
    `shared.api.models`. Refuses bodies over MAX_BODY_BYTES, invalid JSON, deep nesting and non-objects."""
    if len(data) > MAX_BODY_BYTES:
        raise ApiError(413, f"body is more than {MAX_BODY_BYTES} bytes", code="too_large")
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request(f"body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    if not _depth_ok(body, MAX_JSON_DEPTH):
        raise bad_request(f"body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body


def parse_query_text(raw: str | None, field: str = "q") -> str:
    """A search text: 1..MAX_QUERY_CHARS printable characters (a code prefix, or part of a Korean or English
    name)."""
    q = (raw or "").strip()
    if not q:
        raise bad_request(f"{field} is required: a code prefix or part of a name, e.g. q=삼성 or q=0059", field)
    if len(q) > MAX_QUERY_CHARS or any(not c.isprintable() for c in q):
        raise bad_request(f"{field} must be at most {MAX_QUERY_CHARS} printable characters", field)
    return q


def parse_limit(raw: str | None, max_limit: int, default: int = DEFAULT_LIMIT, field: str = "limit") -> int:
    """How many results: an integer 1..max_limit (default when absent)."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= max_limit:
        raise bad_request(f"{field} must be an integer 1..{max_limit}", field)
    return int(raw)
