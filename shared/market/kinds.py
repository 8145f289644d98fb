"""The kinds of market data the gateway serves, and how each is fetched and kept (one table for the readers,
the drain and the status readouts)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Settings

KINDS = ("quote", "index", "daily", "info")


@dataclass(frozen=True)
class KindSpec:
    """How one kind of data is fetched and kept."""

    kind: str
    call_class: str
    batch: int
    ttl_s: float
    one_call: bool = False  # the whole batch goes to KIS in one call (a multi-quote), not one call per symbol


def kind_specs(settings: Settings) -> dict[str, KindSpec]:
    return {
        "quote": KindSpec("quote", "quotes", settings.effective_batch_size, settings.quote_ttl_s,
                          one_call=settings.effective_batch_size > 1),
        "index": KindSpec("index", "quotes", 3, settings.index_ttl_s),
        "daily": KindSpec("daily", "reference", 5, settings.daily_ttl_s),
        "info": KindSpec("info", "reference", 5, settings.info_ttl_s),
    }
