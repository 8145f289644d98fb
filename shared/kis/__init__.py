"""KIS OpenAPI client: HTTP, auth, one module per endpoint, domain models and errors."""

from shared.kis.client import KISClient
from shared.kis.models import (
    AccessToken,
    AccountSummary,
    Balance,
    CallRecord,
    DailyBar,
    IndexQuote,
    OrderResult,
    Position,
    Quote,
    StockInfo,
)

__all__ = [
    "AccessToken",
    "AccountSummary",
    "Balance",
    "CallRecord",
    "DailyBar",
    "IndexQuote",
    "KISClient",
    "OrderResult",
    "Position",
    "Quote",
    "StockInfo",
]
