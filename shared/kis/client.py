"""`KISClient`: the facade the service layer codes against. No retries, no caching beyond the token."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from shared.config import KIS_MULTI_QUOTE_MAX, Settings
from shared.kis import auth, balance, daily, index, info, orders, quotes
from shared.kis.errors import KISUnknownSymbolError
from shared.kis.fields import KST, check_symbol
from shared.kis.http import Gate, KISHttp, Observer
from shared.kis.models import (
    AccessToken,
    Balance,
    DailyBar,
    IndexQuote,
    OrderResult,
    OrderType,
    Quote,
    Side,
    StockInfo,
)

if TYPE_CHECKING:
    import requests

STANDALONE_REFRESH_MARGIN_S = 60.0  # a token this close to expiry is not worth sending


class KISClient:
    """One app key's view of KIS.

    gate(call_class, tr_id) runs before every REST call (the limiter/breaker hook); call_class is "orders"
    (orders, balance, hashkey), "quotes" (current, multi, index) or "reference" (daily, period, info). The
    OAuth token endpoints skip the gate: they have their own 1-per-minute guard.
    Without a token_provider the client issues a token on first need and keeps it in memory; with one,
    it asks the provider before each request (the service layer's shared token store).
    """

    def __init__(self, settings: Settings, *, token_provider: Callable[[], str] | None = None,
                 gate: Gate | None = None, session: requests.Session | None = None,
                 observer: Observer | None = None, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self._now = now or (lambda: datetime.now(KST))
        self._http = KISHttp(settings, session=session, gate=gate, observer=observer, now=self._now)
        self._token: AccessToken | None = None
        self._token_lock = threading.RLock()  # the standalone refresh issues while holding it
        self._standalone = token_provider is None
        if token_provider is not None:
            self._http.token = token_provider
        else:
            self._http.token = self._standalone_token
            self._http.on_token_rejected = self._forget_token

    def __repr__(self) -> str:
        return f"KISClient(env={self.settings.kis_env!r}, base_url={self.settings.kis_base_url!r})"

    def prepare(self) -> None:
        """Make the HTTP session now (imports requests), not on the first call."""
        self._http.prepare()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KISClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def market(self) -> str:
        return self.settings.kis_market_code

    # ---- auth ----------------------------------------------------------------------------
    def issue_token(self) -> AccessToken:
        """One tokenP call. Standalone clients also keep the answer (a second issue within a minute
        would be refused anyway); with a token_provider the caller decides where it goes."""
        token = auth.issue_token(self._http, self.settings.kis_app_key, self.settings.kis_app_secret)
        if self._standalone:
            with self._token_lock:
                self._token = token
        return token

    def revoke_token(self, token: str) -> None:
        auth.revoke_token(self._http, self.settings.kis_app_key, self.settings.kis_app_secret, token)
        with self._token_lock:
            if self._token is not None and self._token.value == token:
                self._token = None

    def hashkey(self, body: dict[str, Any]) -> str:
        return auth.hashkey(self._http, body)

    # ---- quotes ----------------------------------------------------------------------------
    def get_current_price(self, symbol: str) -> Quote:
        return quotes.get_current_price(self._http, self.market, symbol)

    def get_multi_quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """ONE FHKST11300006 call (real keys only), at most 30 symbols; unknown symbols are absent."""
        return quotes.get_multi_quotes(self._http, self.market, symbols)

    def get_current_prices(self, symbols: Sequence[str]) -> dict[str, Quote]:
        """Multi-quote batches of batch_size on real keys; one FHKST01010100 per symbol on paper keys
        (paper has no multi-quote). Unknown symbols are absent either way; other errors propagate."""
        wanted = list(dict.fromkeys(check_symbol(s) for s in symbols))  # all checked before any call
        out: dict[str, Quote] = {}
        if self.settings.paper:
            for symbol in wanted:
                try:
                    out[symbol] = self.get_current_price(symbol)
                except KISUnknownSymbolError:
                    continue
            return out
        size = max(1, min(self.settings.batch_size, KIS_MULTI_QUOTE_MAX))
        for i in range(0, len(wanted), size):
            out.update(self.get_multi_quotes(wanted[i:i + size]))
        return out

    def get_index_price(self, code: str) -> IndexQuote:
        return index.get_index_price(self._http, code)

    def get_index_prices(self, codes: Sequence[str]) -> dict[str, IndexQuote]:
        """One call per index (KIS has no multi-index TR); unknown codes are absent."""
        out: dict[str, IndexQuote] = {}
        for code in dict.fromkeys(codes):
            try:
                out[code] = self.get_index_price(code)
            except KISUnknownSymbolError:
                continue
        return out

    # ---- reference data ----------------------------------------------------------------------
    def get_daily_prices(self, symbol: str, period: str = "D", adjusted: bool = True) -> list[DailyBar]:
        return daily.get_daily_prices(self._http, self.market, symbol, period, adjusted)

    def get_period_ohlcv(self, symbol: str, start: date, end: date, period: str = "D",
                         adjusted: bool = True) -> list[DailyBar]:
        return daily.get_period_ohlcv(self._http, self.market, symbol, start, end, period, adjusted)

    def get_stock_info(self, symbol: str) -> StockInfo:
        return info.get_stock_info(self._http, symbol)

    # ---- account -----------------------------------------------------------------------------
    def place_cash_order(self, side: Side, symbol: str, quantity: int, order_type: OrderType,
                         price: Decimal | int | None) -> OrderResult:
        """Sent exactly once. A timeout raises KISTimeoutError(sent=True): the outcome is unknown."""
        return orders.place_cash_order(self._http, self.settings.kis_account_no, side, symbol, quantity,
                                       order_type, price)

    def get_balance(self) -> Balance:
        return balance.get_balance(self._http, self.settings.kis_account_no)

    # ---- standalone token ----------------------------------------------------------------------
    def _standalone_token(self) -> str:
        with self._token_lock:  # one issue at a time: KIS allows one per minute
            if self._token is None or self._token.expired(self._now(), STANDALONE_REFRESH_MARGIN_S):
                self._token = self.issue_token()
            return self._token.value

    def _forget_token(self) -> None:
        with self._token_lock:
            self._token = None
