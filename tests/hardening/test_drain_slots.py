"""A miss that arrives after its time slot's drain has run is not left waiting for a whole second: drain requests
are deduplicated per quarter-second slot, and a waiting reader asks for each new slot's drain as it begins.

(Before: one slot per second, noticed up to a wait slice late, so such a miss waited up to 1.5 s; under a flood of
other work, steady readers fell out of the refresh-ahead cycle and every answer waited that long.)"""

from __future__ import annotations

import asyncio

from shared.market import drain as drain_mod
from shared.market.reader import reader_for


class RecordingTrigger:
    """Records drain requests and runs no drain (the symbols stay pending)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []

    def request_drain(self, kind: str, call_class: str, slot: int) -> bool:
        self.requests.append((kind, call_class, slot))
        return True


def test_slots_are_a_quarter_second(make_gateway):
    gw = make_gateway(load_symbol_master=False)
    drain = gw.drain
    assert drain_mod.DRAIN_SLOTS_PER_S == 4
    now = drain.clock.time()
    assert drain.slot() in (int(now * 4), int(now * 4) + 1)
    assert 0.0 <= drain.until_next_slot() <= 0.25


def test_a_waiting_reader_asks_for_each_new_slots_drain(make_gateway):
    gw = make_gateway(load_symbol_master=False)
    trigger = RecordingTrigger()
    gw.drain.trigger = trigger

    async def go():
        reader = await reader_for(gw).start()
        return await reader.get("quote", ["005930"], 1.6)

    got = asyncio.run(go())
    assert got["005930"].status == "pending"  # no drain ran: nothing was fetched
    slots = sorted({slot for kind, _, slot in trigger.requests if kind == "quote"})
    # 1.6 s of waiting spans 6-7 quarter-second slots; one-second slots would give at most 3.
    assert len(slots) >= 4, trigger.requests
