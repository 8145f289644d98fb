"""The short fault matrix: faults injected into the running local stack while clients keep asking.

`kisgw bench --faults` runs every row with longer phases and prints the table; here a few rows check the bar:
0 limit violations, 0 symbols lost, 0 orders sent twice, recovery without a restart."""

from __future__ import annotations

import shutil

import pytest

from shared.bench.faults import FaultMatrix, table

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs a redis-server binary")


def test_short_fault_matrix():
    rows = FaultMatrix(quick=True).run(["kis_5xx_burst", "cloud_tasks_down", "pending_flood", "firestore_down"])
    print("\n" + table(rows))
    by = {r.fault: r for r in rows}
    for name in ("kis_5xx_burst", "cloud_tasks_down", "pending_flood"):
        r = by[name]
        assert r.ran, r.note
        assert r.requests > 10, r
        assert r.violations == 0, r
        assert r.symbols_lost == 0, r
        assert r.orders_sent_twice == 0, r
        assert r.recovery_s is not None, r
    # Last-known copies keep answering while KIS fails.
    assert by["kis_5xx_burst"].answered_with_data_pct > 50, by["kis_5xx_burst"]
    flood = by["pending_flood"]
    # The ASGI read functions admit pending work: the flooding key is told 429 (too many new symbols).
    assert flood.extra["flood_http_statuses"].get(429, 0) > 0, flood
    assert flood.answered_with_data_pct > 90, flood
    fs = by["firestore_down"]
    if fs.ran:  # the Firestore emulator is installed: the same bar as the other rows
        assert fs.requests > 10 and fs.violations == 0 and fs.symbols_lost == 0, fs
        assert fs.orders_sent_twice == 0 and fs.recovery_s is not None, fs
    else:
        assert "not run" in fs.note, fs  # reported, not hidden
