"""Domain values returned by the KIS client. KIS field names stop at the endpoint modules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market"]


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)  # a bearer credential: never shown
    expires_at: datetime  # aware, Asia/Seoul, from access_token_token_expired
    issued_at: datetime
    token_type: str = "Bearer"

    def expired(self, at: datetime, margin_s: float = 0.0) -> bool:
        return (self.expires_at - at).total_seconds() <= margin_s


@dataclass(frozen=True)
class Quote:
    symbol: str
    name: str
    price: int
    change: int  # versus the previous close, negative when down
    change_rate: Decimal  # percent
    sign: str  # KIS prdy_vrss_sign: 1 upper limit, 2 up, 3 flat, 4 lower limit, 5 down
    open: int
    high: int
    low: int
    volume: int
    prev_close: int
    upper_limit: int
    lower_limit: int
    trade_value: int = 0  # accumulated traded amount, KRW
    as_of: datetime | None = None  # when the answer was received (KIS gives no quote time)


@dataclass(frozen=True)
class IndexQuote:
    code: str  # 0001 KOSPI, 1001 KOSDAQ, 2001 KOSPI200
    value: Decimal
    change: Decimal
    change_rate: Decimal
    sign: str
    open: Decimal
    high: Decimal
    low: Decimal
    volume: int
    trade_value: int
    as_of: datetime | None = None


@dataclass(frozen=True)
class DailyBar:
    date: date
    open: int
    high: int
    low: int
    close: int
    volume: int
    trade_value: int = 0
    change: int = 0
    sign: str = ""


@dataclass(frozen=True)
class StockInfo:
    symbol: str
    name: str
    market: str  # KIS market id (STK KOSPI, KSQ KOSDAQ, ...)
    listed_shares: int
    short_name: str = ""
    english_name: str = ""
    isin: str = ""
    par_value: int = 0
    sector: str = ""
    kospi200: bool = False
    trading_halted: bool = False
    administrative: bool = False
    listed_on: date | None = None
    prev_close: int = 0


@dataclass(frozen=True)
class OrderResult:
    order_no: str
    org_no: str
    time: time | None  # KIS order time (HHMMSS, Korea time)
    side: Side
    symbol: str
    quantity: int
    price: int | None  # None for a market order


@dataclass(frozen=True)
class Position:
    symbol: str
    name: str
    quantity: int
    orderable_quantity: int
    avg_price: Decimal
    purchase_amount: int
    current_price: int
    eval_amount: int
    profit_loss: int
    profit_loss_rate: Decimal


@dataclass(frozen=True)
class AccountSummary:
    cash: int  # deposit (dnca_tot_amt)
    cash_d2: int  # settlement cash in two days
    purchase_total: int
    eval_total: int  # holdings at current prices
    profit_loss_total: int
    total_eval: int  # holdings + cash
    net_assets: int


@dataclass(frozen=True)
class Balance:
    positions: list[Position]
    totals: AccountSummary


@dataclass(frozen=True)
class CallRecord:
    """One HTTP exchange with KIS, for metrics. `status` is None when no HTTP answer came back."""

    tr_id: str
    call_class: str
    status: int | None
    msg_cd: str
    duration_s: float
    ok: bool


def plain(value: Any) -> Any:
    """A domain value as JSON-able data: dataclasses as dicts, Decimal as a string (exact figures), dates and
    times in ISO 8601, lists, tuples and dicts item by item; anything else as it is."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain(x) for x in value]
    if isinstance(value, dict):
        return {k: plain(x) for k, x in value.items()}
    return value
