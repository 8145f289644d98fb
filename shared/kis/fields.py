"""Parsing of KIS field values: every number arrives as a string, sometimes blank or signed."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")
SYMBOL_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def to_decimal(raw: Any) -> Decimal:
    """KIS sends "" or missing for "no value"; those read as zero rather than failing a whole quote."""
    if raw is None:
        return Decimal(0)
    text = str(raw).strip().replace(",", "")
    if not text or text == "-":
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        return Decimal(0)
    return value if value.is_finite() else Decimal(0)


def to_int(raw: Any) -> int:
    # Prices and volumes are whole numbers, but some TRs pad them as "71000.00".
    return int(to_decimal(raw))


def to_date(raw: Any) -> date | None:
    text = str(raw or "").strip()
    if len(text) != 8 or not text.isdigit() or text == "00000000":
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def to_time(raw: Any) -> time | None:
    text = str(raw or "").strip()
    if len(text) != 6 or not text.isdigit():
        return None
    try:
        return time(int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        return None


def to_kst_datetime(raw: Any) -> datetime | None:
    """"YYYY-MM-DD HH:MM:SS" in Korea time (the token expiry format)."""
    text = str(raw or "").strip()
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=KST)
    except ValueError:
        return None


def text(raw: Any) -> str:
    return str(raw).strip() if raw is not None else ""


def signed(value: int | Decimal, sign: str) -> Any:
    """KIS usually signs changes itself; when it does not, the sign code (4 lower limit, 5 fall) does."""
    if sign in ("4", "5") and value > 0:
        return -value
    return value


def check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or len(symbol) != 6 or any(c not in SYMBOL_CHARS for c in symbol):
        raise ValueError(f"symbol {symbol!r} is not 6 characters of 0-9 and A-Z")
    return symbol


def first_row(payload: Any) -> dict[str, Any]:
    """Some TRs document `output` as an object but answer with a one-row list, and vice versa."""
    if isinstance(payload, dict):
        return payload
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        return payload[0]
    return {}


def rows(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, list):
        return [r for r in payload if isinstance(r, dict)]
    if isinstance(payload, dict) and payload:
        return [payload]
    return []
