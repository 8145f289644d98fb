"""The HTTP API's request models (msgspec): one declaration per input, that both validates it and describes it
in /openapi.json (`shared.api.openapi` reads the same classes).

Body models declare each field's type, bounds and pattern, and msgspec checks them (strictly: a number is not a
string, true is not 1, an unknown field is refused). Where the gateway normalises input (codes are upper-cased,
a snapshot's code depends on is_index) the model's `__post_init__` does it with the parsers of
`shared.api.validation`, whose messages name the field. Query parameters are text: a query model takes them as
given and its `checked` parses them with those parsers (whose bounds are partly settings: symbols per request,
the largest deadline); each field's documented schema is beside it (`_doc`). `parse` turns msgspec's refusals
into the usual 400 naming the field.

Why msgspec and not pydantic: a read function loads these models on its first request, and pydantic with the
models took 65-85 ms of that request (msgspec about 3 ms). The answer models, which only /openapi.json and tests
load, stay pydantic models in `shared.api.answer_models` (their names are reachable here too).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct
from msgspec.structs import force_setattr

from shared.api.errors import ApiError, bad_request
from shared.api.validation import (
    DEFAULT_LIMIT,
    IDEMPOTENCY_KEY_PATTERN,  # noqa: F401 (named here too: the Order models' header pattern)
    INDEX_CODES,
    MAX_QUERY_CHARS,
    parse_bool,
    parse_deadline,
    parse_index_codes,
    parse_limit,
    parse_query_text,
    parse_symbol,
    parse_symbols,
)
from shared.budget import CALL_CLASSES
from shared.config import MAX_DEADLINE_MS, Settings
from shared.market.kinds import KINDS

SYMBOL = "^[0-9A-Z]{6}$"
SYMBOLS = "^[0-9A-Z]{6}(,[0-9A-Z]{6})*$"
_INDEX = "(" + "|".join(INDEX_CODES) + ")"
INDEX_LIST = f"^{_INDEX}(,{_INDEX})*$"
SNAPSHOT_CODE = f"^([0-9A-Z]{{6}}|{'|'.join(INDEX_CODES)})$"  # a symbol, or an index code with is_index
MAX_QUANTITY = 1_000_000
MAX_PRICE = 100_000_000  # KRW; far above any listed share, catches unit mistakes (e.g. cents)
MAX_SEARCH_LIMIT = 50
MAX_LEGACY_DAYS = 30

Kind = Literal["quote", "index", "daily", "info"]
CallClass = Literal["orders", "quotes", "reference"]
assert get_args(Kind) == KINDS and get_args(CallClass) == CALL_CLASSES

_DEFAULTS = Settings()


class Body(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A JSON request body: a closed object (an unknown field is a 400 naming it)."""


class Query(Struct, frozen=True, kw_only=True):
    """Query parameters, as text (other parameters are ignored, as browsers and proxies add their own)."""


M = TypeVar("M", bound=Struct)


def parse(model: type[M], data: Any) -> M:
    """`data` validated by `model`; a refusal is a 400 naming the first field at fault."""
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError as exc:
        raise _client_error(model, str(exc)) from None


_AT = re.compile(r"(?s)(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?")
_NAMES = {"int": "an integer", "str": "a string", "bool": "a boolean", "float": "a number", "array": "a list",
          "object": "an object", "null": "null", "int | null": "an integer or null", "str | null": "a string or null",
          "bool | null": "a boolean or null", "array | null": "a list or null"}


def _client_error(model: type[Struct], text: str) -> ApiError:
    found = _AT.fullmatch(text)
    msg, path = (found["msg"], found["path"] or "") if found else (text, "")
    names = re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path)
    parts = [n or i for n, i in names]
    if (unknown := re.fullmatch(r"Object contains unknown field `(.*)`", msg)) is not None:
        name = ".".join([*parts, unknown[1]])
        allowed = ", ".join(sorted(model.__struct_fields__)) or "none"
        return bad_request(f"unknown field {unknown[1]!r}; allowed: {allowed}", name)
    if (missing := re.fullmatch(r"Object missing required field `(.*)`", msg)) is not None:
        name = ".".join([*parts, missing[1]])
        hint = _hints(model).get(name)
        return bad_request(f"{name} is required" + (f": {hint}" if hint else ""), name)
    name = parts[0] if parts else ""
    friendly = re.sub(r"`([^`]+)`", lambda m: _NAMES.get(m[1], m[1]), msg)
    # The value msgspec quotes is the caller's: at most 20 characters of it come back (as the parsers do).
    friendly = re.sub(r"(?s)(Invalid enum value )'(.*)'", lambda m: m[1] + repr(m[2][:20]), friendly)
    hint = _hints(model).get(name)
    return bad_request(f"{'.'.join(parts) or 'body'}: {friendly[:1].lower()}{friendly[1:]}"
                       + (f" ({hint})" if hint else ""), name or None)


@cache
def _hints(model: type[Struct]) -> dict[str, str]:
    """What each field wants, for messages: its description (its `Meta`), or the values a choice allows."""
    out: dict[str, str] = {}
    for f in msgspec.inspect.type_info(model).fields:  # type: ignore[attr-defined]
        for t in (f.type, *getattr(f.type, "types", ())):
            text = (getattr(t, "extra_json_schema", None) or {}).get("description")
            choices = getattr(getattr(t, "type", t), "values", None)
            if text:
                out[f.name] = text
            elif isinstance(choices, tuple) and f.name not in out:
                out[f.name] = "one of " + ", ".join(map(str, choices))
    return out


def _doc(description: str, schema: dict[str, Any]) -> Meta:
    """A query parameter's description and documented schema (the value itself is text, checked by `checked`)."""
    return Meta(description=description, extra={"schema": schema})


# ---- queries ----------------------------------------------------------------------------------------

class ReadArgs(NamedTuple):
    codes: list[str]
    refresh: bool
    deadline_s: float


class Read(Query, frozen=True, kw_only=True):
    refresh: Annotated[str, _doc("skip the cache (the answer waits for KIS)",
                                 {"type": "boolean", "default": False})] | None = None
    deadline_ms: Annotated[str, _doc("longest wait (capped by GATEWAY_MAX_DEADLINE_MS)",
                                     {"type": "integer", "minimum": 0, "maximum": MAX_DEADLINE_MS})] | None = None

    def wanted(self, settings: Settings) -> list[str]:
        """The codes asked for, parsed."""
        raise NotImplementedError

    def checked(self, settings: Settings = _DEFAULTS) -> ReadArgs:
        """The parsed query: the codes, whether to skip the cache, the longest wait in seconds."""
        return ReadArgs(self.wanted(settings), parse_bool(self.refresh, "refresh"),
                        parse_deadline(self.deadline_ms, settings.request_deadline_s,
                                       max_s=settings.max_deadline_ms / 1000))


class SymbolsRead(Read, frozen=True, kw_only=True):
    """?symbols=005930,000660 (quotes, daily prices, symbol info)."""

    symbols: Annotated[str, _doc("a comma-separated list of codes, e.g. 005930,000660",
                                 {"type": "string", "pattern": SYMBOLS})]

    def wanted(self, settings: Settings) -> list[str]:
        return parse_symbols(self.symbols, settings.max_symbols_per_request)


class IndexRead(Read, frozen=True, kw_only=True):
    """?codes=0001,1001 (index quotes; every index when absent)."""

    codes: Annotated[str, _doc(f"index codes ({', '.join(INDEX_CODES)}); all when absent",
                               {"type": "string", "pattern": INDEX_LIST})] | None = None

    def wanted(self, settings: Settings) -> list[str]:
        return parse_index_codes(self.codes)


class SearchArgs(NamedTuple):
    text: str
    limit: int


class Search(Query, frozen=True, kw_only=True):
    """?q=삼성&limit=20 (symbol master search)."""

    q: Annotated[str, _doc("a code prefix or part of a name, e.g. q=삼성 or q=0059",
                           {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS})]
    limit: Annotated[str, _doc("how many results", {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT,
                                                   "default": DEFAULT_LIMIT})] | None = None

    def checked(self) -> SearchArgs:
        return SearchArgs(parse_query_text(self.q), parse_limit(self.limit, MAX_SEARCH_LIMIT))


# ---- bodies -----------------------------------------------------------------------------------------

SymbolCode = Annotated[str, Meta(extra_json_schema={"pattern": SYMBOL})]  # upper-cased by the model
Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]
Price = Annotated[int, Meta(ge=0, le=MAX_PRICE, description="whole won; required for limit, absent/0 for market")]


class Drain(Body, frozen=True, kw_only=True):
    """A drain task (Cloud Tasks)."""

    kind: Annotated[Kind, Meta(description=f"one of {', '.join(KINDS)}")]
    call_class: CallClass | None = None
    slot: int | None = None


class Preload(Body, frozen=True, kw_only=True):
    """The preload job (Cloud Scheduler); symbols are added to PRELOAD_SYMBOLS."""

    symbols: list[SymbolCode] = msgspec.field(default_factory=list)
    force: bool = False

    def __post_init__(self) -> None:
        force_setattr(self, "symbols", [parse_symbol(s, "symbols") for s in self.symbols])


class Snapshot(Body, frozen=True, kw_only=True):
    """The older gateway's snapshot route: one quote, or one index with is_index."""

    stock_code: Annotated[str, Meta(description="a symbol or an index code",
                                    extra_json_schema={"pattern": SNAPSHOT_CODE})]
    is_index: bool = False

    def __post_init__(self) -> None:
        code = self.stock_code.strip()
        code = parse_index_codes(code, "stock_code")[0] if self.is_index else parse_symbol(code, "stock_code")
        force_setattr(self, "stock_code", code)


class LegacyDaily(Body, frozen=True, kw_only=True):
    """The older gateway's daily-prices route."""

    stock_code: Annotated[str, Meta(description="a symbol code", extra_json_schema={"pattern": SYMBOL})]
    days: Annotated[int, Meta(ge=1, le=MAX_LEGACY_DAYS)] = MAX_LEGACY_DAYS

    def __post_init__(self) -> None:
        force_setattr(self, "stock_code", parse_symbol(self.stock_code, "stock_code"))


def _check_price(price: int | None, order_type: str) -> int | None:
    if order_type == "market":
        if price not in (None, 0):
            raise bad_request("price must be absent or 0 for a market order", "price")
        return None
    if not price:
        raise bad_request("price is required for a limit order: a positive whole number of won", "price")
    return price


class Order(Body, frozen=True, kw_only=True):
    """POST /v1/orders."""

    side: Literal["buy", "sell"]
    symbol: SymbolCode
    quantity: Quantity
    order_type: Literal["limit", "market"]
    price: Price | None = None

    def __post_init__(self) -> None:
        force_setattr(self, "symbol", parse_symbol(self.symbol, "symbol"))
        force_setattr(self, "price", _check_price(self.price, self.order_type))


LEGACY_ORDER_TYPES = {"limit": "limit", "market": "market", "00": "limit", "01": "market"}


class LegacyOrder(Body, frozen=True, kw_only=True):
    """The older gateway's /api/trading/buy and /sell; order_type 00/01 as KIS names them."""

    stock_code: SymbolCode
    quantity: Quantity
    price: Price | None = None
    order_type: Literal["limit", "market", "00", "01"] | None = None

    @property
    def kind(self) -> str:
        """limit or market (without order_type: market unless a price is given)."""
        if self.order_type is None:
            return "market" if self.price in (None, 0) else "limit"
        return LEGACY_ORDER_TYPES[self.order_type]

    def __post_init__(self) -> None:
        force_setattr(self, "stock_code", parse_symbol(self.stock_code, "stock_code"))
        force_setattr(self, "price", _check_price(self.price, self.kind))


class Empty(Body, frozen=True, kw_only=True):
    """No fields (an empty JSON object, or no body)."""


_ANSWER_MODELS = frozenset({"Answer", "ErrorDetail", "Error", "SymbolResult", "read_answer", "QuotesAnswer",
                            "DailyAnswer", "SymbolsAnswer", "IndicesAnswer", "MasterSymbol", "SearchAnswer",
                            "OrderAnswer", "Balance", "LegacyResult", "LegacyBalance", "Health"})


def __getattr__(name: str) -> Any:
    if name in _ANSWER_MODELS:  # the answer models, imported when first named
        from shared.api import answer_models

        return getattr(answer_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
