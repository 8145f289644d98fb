"""KIS OpenAPI client: HTTP, auth, one module per endpoint, domain models and errors.

`KISClient` is imported on first use (`shared.kis.KISClient` or `shared.kis.client`): a function that only needs
the domain models or errors (the breaker, the readers) does not load the HTTP stack at start-up.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from shared.kis.client import KISClient


def __getattr__(name: str) -> Any:
    if name == "KISClient":
        from shared.kis.client import KISClient

        return KISClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
