"""The parts of one gateway, as the HTTP layer receives them, and the process's installed gateway.

`shared/gateway.py` (the composition root) builds a `Gateway` from settings, once per process, and installs it;
handlers take it as their first argument. Nothing here builds anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parts' types only: importing this module builds nor loads any of them (cold start)
    import redis

    from shared.api.access import AccessControl
    from shared.config import Settings
    from shared.deployment import Function
    from shared.kis.client import KISClient
    from shared.market.breaker import SharedBreaker
    from shared.market.calendar import KRXCalendar
    from shared.market.drain import Drain
    from shared.market.gate import KISGate
    from shared.market.limiter import SlidingLimiter
    from shared.market.ports import DrainTrigger, TokenStore
    from shared.market.reader_sync import MarketReader
    from shared.market.symbol_master import SymbolMaster
    from shared.market.token import TokenManager
    from shared.observability.alerts import Alerter
    from shared.observability.metrics import Metrics
    from shared.orders.service import OrderDesk


@dataclass
class Gateway:
    settings: Settings
    redis: redis.Redis
    kis: KISClient
    limiter: SlidingLimiter
    breaker: SharedBreaker
    tokens: TokenManager
    token_store: TokenStore
    gate: KISGate  # the one path of every KIS call (market/gate.py)
    drain: Drain  # nothing accepted is lost (market/drain.py)
    reader: MarketReader  # the synchronous read path (market/reader_sync.py; the async one: market/reader.py)
    trigger: DrainTrigger
    metrics: Metrics
    alerts: Alerter
    calendar: KRXCalendar
    access: AccessControl  # who may call what (api/access.py)
    orders: OrderDesk  # orders and the balance, each sent once (orders/service.py)
    firestore: Any = None  # the client this function's identity may use (None: built on demand, all access)
    function: Function | None = None  # the deployed function this process is (None: every part)
    symbols: SymbolMaster | None = None  # the symbol master (listed codes, names, search)
    fleet_published_at: float = 0.0  # when this process last published its figures (api/fleet.py; monotonic)
    fleet_scheduled: bool = False  # a publication of them is scheduled for when it is due (api/fleet.py)
    # Set once what a miss will need is built (gateway._prepare, in the background after the first answer).
    prepared: threading.Event = field(default_factory=threading.Event)
    # Set by the serve paths once this process has answered a request: the background preparation starts then.
    answered: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        close = getattr(type(self.trigger), "close", None)  # the class's: a refused trigger has none
        if callable(close):
            close(self.trigger)


_lock = threading.Lock()
_installed: Gateway | None = None


def install(gw: Gateway | None) -> None:
    """Make `gw` this process's gateway (the composition root on first use; tests and the local stack)."""
    global _installed
    with _lock:
        _installed = gw


def current() -> Gateway | None:
    """This process's gateway, if one is installed."""
    return _installed


def installed() -> Gateway:
    """This process's gateway; the entry points pass the composition root's `get_gateway` instead, which builds
    it on first use."""
    gw = _installed
    if gw is None:
        raise RuntimeError("no gateway installed: entry points pass shared.gateway.get_gateway; "
                           "tests call shared.gateway.set_gateway")
    return gw
