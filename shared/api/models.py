"""The HTTP API's request and answer models (pydantic): one declaration per input, that both validates it and
describes it in /openapi.json (`shared.api.openapi` reads the same classes).

Query and body models declare each field's type, bounds and pattern; where the gateway normalises input (codes
are upper-cased, lists split and de-duplicated) or its bounds are settings (symbols per request, the largest
deadline), the field's validator is the parser of `shared.api.validation`, whose messages name the field. `parse`
turns any other refusal into the usual 400 naming the field. Answer models describe what the handlers return
(tests validate real answers against them); answers are not re-validated per request. The answer models live
in `shared.api.answer_models` (only /openapi.json and tests load them; their names are reachable here too), so a
function validating a query builds only the input models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

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


def _settings(info: ValidationInfo) -> Settings:
    ctx = info.context
    return ctx["settings"] if isinstance(ctx, dict) and "settings" in ctx else _DEFAULTS


class Body(BaseModel):
    """A JSON request body: a closed object (an unknown field is a 400 naming it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Query(BaseModel):
    """Query parameters (other parameters are ignored, as browsers and proxies add their own)."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, settings: Settings | None = None) -> M:
    """`data` validated by `model`; a refusal is a 400 naming the first field at fault."""
    try:
        return model.model_validate(data, context={"settings": settings} if settings is not None else None)
    except ValidationError as exc:
        raise _client_error(model, exc) from None


def _client_error(model: type[BaseModel], exc: ValidationError) -> ApiError:
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    name = loc[0] if loc else ""
    where = ".".join(loc) or "body"
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields)) or "none"
        return bad_request(f"unknown field {name!r}; allowed: {allowed}", name)
    info = model.model_fields.get(name)
    if err["type"] == "missing":
        hint = f": {info.description}" if info is not None and info.description else ""
        return bad_request(f"{name} is required{hint}", name)
    return bad_request(f"{where}: {err['msg']}", name or None)


# ---- field types: the schema each shows and the parser that checks it -----------------------------

def _symbol(raw: Any, info: ValidationInfo) -> str:
    return parse_symbol(raw, info.field_name or "symbol")


def _symbols(raw: Any, info: ValidationInfo) -> list[str]:
    return parse_symbols(raw if isinstance(raw, str) else None, _settings(info).max_symbols_per_request)


def _codes(raw: Any) -> list[str]:
    return parse_index_codes(raw)


def _flag(raw: Any, info: ValidationInfo) -> bool:
    return raw if isinstance(raw, bool) else parse_bool(raw, info.field_name or "")


def _deadline(raw: Any, info: ValidationInfo) -> float:
    s = _settings(info)
    return parse_deadline(raw, s.request_deadline_s, max_s=s.max_deadline_ms / 1000)


Symbol = Annotated[str, Field(pattern=SYMBOL), BeforeValidator(_symbol)]
SymbolList = Annotated[list[str], BeforeValidator(_symbols), WithJsonSchema({"type": "string", "pattern": SYMBOLS})]
IndexList = Annotated[list[str], BeforeValidator(_codes), WithJsonSchema({"type": "string", "pattern": INDEX_LIST})]
Flag = Annotated[bool, BeforeValidator(_flag), WithJsonSchema({"type": "boolean"})]
Deadline = Annotated[float, BeforeValidator(_deadline),
                     WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_DEADLINE_MS})]
StrictBool = Annotated[bool, Field(strict=True)]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
Price = Annotated[int | None, Field(strict=True, ge=0, le=MAX_PRICE,
                                    description="whole won; required for limit, absent/0 for market")]


# ---- queries ----------------------------------------------------------------------------------------

class Read(Query):
    refresh: Flag = Field(False, description="skip the cache (the answer waits for KIS)")
    deadline_ms: Deadline = Field(None, validate_default=True,
                                  description="longest wait (capped by GATEWAY_MAX_DEADLINE_MS)")


class SymbolsRead(Read):
    """?symbols=005930,000660 (quotes, daily prices, symbol info)."""

    symbols: SymbolList = Field(description="a comma-separated list of codes, e.g. 005930,000660")


class IndexRead(Read):
    """?codes=0001,1001 (index quotes; every index when absent)."""

    codes: IndexList = Field(None, validate_default=True,
                             description=f"index codes ({', '.join(INDEX_CODES)}); all when absent")


def _query_text(raw: Any) -> str:
    return parse_query_text(raw if isinstance(raw, str) else None)


def _limit(raw: Any) -> int:
    return parse_limit(raw if isinstance(raw, str) else None, MAX_SEARCH_LIMIT)


class Search(Query):
    """?q=삼성&limit=20 (symbol master search)."""

    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS), BeforeValidator(_query_text)] = Field(
        description="a code prefix or part of a name, e.g. q=삼성 or q=0059")
    limit: Annotated[int, Field(ge=1, le=MAX_SEARCH_LIMIT), BeforeValidator(_limit)] = DEFAULT_LIMIT


# ---- bodies -----------------------------------------------------------------------------------------

class Drain(Body):
    """A drain task (Cloud Tasks)."""

    kind: Kind = Field(description=f"one of {', '.join(KINDS)}")
    call_class: CallClass | None = None
    slot: Annotated[int, Field(strict=True)] | None = None


class Preload(Body):
    """The preload job (Cloud Scheduler); symbols are added to PRELOAD_SYMBOLS."""

    symbols: list[Symbol] = []
    force: StrictBool = False


class Snapshot(Body):
    """The older gateway's snapshot route: one quote, or one index with is_index."""

    stock_code: Annotated[str, Field(pattern=SNAPSHOT_CODE)] = Field(description="a symbol or an index code")
    is_index: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stock_code"), str):
            code = data["stock_code"].strip()
            if data.get("is_index") is True:
                code = parse_index_codes(code, "stock_code")[0]
            elif data.get("is_index") in (None, False):
                code = parse_symbol(code, "stock_code")
            data = {**data, "stock_code": code}
        return data


class LegacyDaily(Body):
    """The older gateway's daily-prices route."""

    stock_code: Symbol = Field(description="a symbol code")
    days: Annotated[int, Field(strict=True, ge=1, le=MAX_LEGACY_DAYS)] = MAX_LEGACY_DAYS


def _check_price(price: int | None, order_type: str) -> int | None:
    if order_type == "market":
        if price not in (None, 0):
            raise bad_request("price must be absent or 0 for a market order", "price")
        return None
    if not price:
        raise bad_request("price is required for a limit order: a positive whole number of won", "price")
    return price


class Order(Body):
    """POST /v1/orders."""

    side: Literal["buy", "sell"]
    symbol: Symbol
    quantity: Quantity
    order_type: Literal["limit", "market"]
    price: Price = None

    @model_validator(mode="after")
    def _price_fits_type(self) -> Order:
        object.__setattr__(self, "price", _check_price(self.price, self.order_type))
        return self


LEGACY_ORDER_TYPES = {"limit": "limit", "market": "market", "00": "limit", "01": "market"}


class LegacyOrder(Body):
    """The older gateway's /api/trading/buy and /sell; order_type 00/01 as KIS names them."""

    stock_code: Symbol
    quantity: Quantity
    price: Price = None
    order_type: Literal["limit", "market", "00", "01"] | None = None

    @property
    def kind(self) -> str:
        """limit or market (without order_type: market unless a price is given)."""
        if self.order_type is None:
            return "market" if self.price in (None, 0) else "limit"
        return LEGACY_ORDER_TYPES[self.order_type]

    @model_validator(mode="after")
    def _price_fits_type(self) -> LegacyOrder:
        object.__setattr__(self, "price", _check_price(self.price, self.kind))
        return self


class Empty(Body):
    """No fields (an empty JSON object, or no body)."""


_ANSWER_MODELS = frozenset({"Answer", "ErrorDetail", "Error", "SymbolResult", "read_answer", "QuotesAnswer",
                            "DailyAnswer", "SymbolsAnswer", "IndicesAnswer", "MasterSymbol", "SearchAnswer",
                            "OrderAnswer", "Balance", "LegacyResult", "LegacyBalance", "Health"})


def __getattr__(name: str) -> Any:
    if name in _ANSWER_MODELS:  # the answer models, imported when first named
        from shared.api import answer_models

        return getattr(answer_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
