"""How a function process uses Python's garbage collector.

A function process builds what it lives on at start-up (modules, client libraries, the gateway) and keeps it until
it ends, and a full collection walks all of it each time. Measured: with the interpreter's defaults, a cold
start's first request (which imports the input models) spent 30-40 ms in full collections, and a thousand
requests arriving to wait, each 25 % growth of them, set off 40-95 ms collections with the event loop stopped.
So an entry point makes full collections rare from the start (`collect_rarely`: after FULL_AFTER generation-1
collections rather than 10), and once the gateway is prepared what was built is frozen out of the collector's
generations (`settle`, from `shared.gateway`). Young garbage is collected as often as before, and reference
counting frees whatever has no cycle.
"""

from __future__ import annotations

import gc

FULL_AFTER = 100  # generation-1 collections between two full ones (the interpreter's default: 10)


def collect_rarely() -> None:
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_AFTER)


def settle() -> None:
    """What exists now lives as long as the process: moved out of the collector's generations."""
    gc.freeze()
    collect_rarely()
