"""The KIS call budget: from KIS's published limits to the gateway's own budget, each call class's share and
reserve, the spacing between grants, and the Cloud Tasks queue rates.

One place for these numbers: the shared limiter (`shared.market.limiter`), the queue specs that the code, the
local Cloud Tasks stand-in and the Terraform variables generator all read (`shared.cloud.tasks.queue_specs`),
admission's drain-rate estimate and `/stats` compute them here, from the settings (`shared.config`).
"""

from __future__ import annotations

import math
from typing import Protocol

# KIS REST limits per app key (calls per second) by profile and environment.
LIMIT_PROFILES: dict[str, dict[str, int]] = {
    "kis-2026-04": {"real": 18, "paper": 1},
    "kis-legacy": {"real": 20, "paper": 2},
}
CALL_CLASSES = ("orders", "quotes", "reference")


class BudgetSettings(Protocol):
    """The settings the budget is computed from (`shared.config.Settings` has them all)."""

    @property
    def kis_limit_profile(self) -> str: ...
    @property
    def kis_env(self) -> str: ...
    @property
    def gateway_budget(self) -> int: ...
    @property
    def min_call_spacing_ms(self) -> int: ...
    @property
    def limiter_guard_ms(self) -> int: ...
    @property
    def kis_ledger_tps(self) -> int: ...
    @property
    def share_orders(self) -> float: ...
    @property
    def share_quotes(self) -> float: ...
    @property
    def share_reference(self) -> float: ...


def kis_limit(s: BudgetSettings) -> int:
    """KIS's calls per second for this app key (its limit profile and environment)."""
    return LIMIT_PROFILES[s.kis_limit_profile][s.kis_env]


def total(s: BudgetSettings) -> int:
    """Calls per second the gateway allows itself across every instance: GATEWAY_BUDGET, or KIS's limit - 1."""
    if s.gateway_budget:
        return s.gateway_budget
    return max(1, kis_limit(s) - 1)


def ledger(s: BudgetSettings) -> int:
    """Balance and order calls per second the gateway allows itself (0 = not paced apart)."""
    return max(1, s.kis_ledger_tps - 1) if s.kis_ledger_tps else 0


def call_spacing_ms(s: BudgetSettings) -> int:
    """Gap between grants. By default the limiter's window (1 s and its guard band) divided evenly among the N
    grants it may hold. Spread less evenly, grants bunch: N of them at a shorter gap leave a hole at the end of
    each window, which the next window repeats. An order arriving in that hole waited 120-150 ms for a slot
    (measured: one in 30 under quote overload), and a bunch could land in one KIS window with the previous
    window's tail once network delays vary (EGW00201). Even spacing costs no throughput: the window allows no
    more than N per its length anyway."""
    if s.min_call_spacing_ms >= 0:
        return s.min_call_spacing_ms
    return (1000 + s.limiter_guard_ms) // total(s)


def share(s: BudgetSettings, call_class: str) -> float:
    """The fraction of the budget a call class is given."""
    return {"orders": s.share_orders, "quotes": s.share_quotes, "reference": s.share_reference}[call_class]


def reserve(s: BudgetSettings, call_class: str) -> int:
    """Calls per second held back for a class; what others may not take from it."""
    return math.floor(total(s) * share(s, call_class))


def queue_rate(s: BudgetSettings, call_class: str) -> float:
    """Cloud Tasks dispatch rate for a class's queue: its share of the budget, at least 1/s."""
    return max(1.0, round(total(s) * share(s, call_class), 2))


def queue_concurrency(s: BudgetSettings, call_class: str) -> int:
    """Dispatches of a class's queue in flight at once: its rate, rounded up."""
    return max(1, math.ceil(queue_rate(s, call_class)))


def check(s: BudgetSettings) -> str | None:
    """What is wrong with the budget settings (None when they fit KIS's limit and add up to one)."""
    if total(s) > kis_limit(s):
        return (f"GATEWAY_BUDGET={total(s)} is above the KIS limit {kis_limit(s)}/s of profile "
                f"{s.kis_limit_profile} ({s.kis_env}); allowed 1..{kis_limit(s)}")
    shares = s.share_orders + s.share_quotes + s.share_reference
    if abs(shares - 1.0) > 1e-6:
        return f"GATEWAY_SHARE_ORDERS + GATEWAY_SHARE_QUOTES + GATEWAY_SHARE_REFERENCE = {shares:g}; must be 1"
    return None
