"""Balance and order TRs are paced under KIS's account-ledger limit, which the simulator enforces by default."""

from __future__ import annotations

import threading

from shared import budget
from shared.config import KIS_LEDGER_TPS
from shared.kis.http import is_ledger_tr
from shared.sim import SimConfig


def burst_of_balances(gw, n: int) -> list[object]:
    out: list[object] = [None] * n

    def one(i: int) -> None:
        try:
            out[i] = gw.kis.get_balance()
        except Exception as exc:  # noqa: BLE001 - the test reports what each caller got
            out[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_ledger_trs():
    assert all(is_ledger_tr(t) for t in ("TTTC0012U", "VTTC0011U", "TTTC8434R", "VTTC8434R", "TTTC0802U"))
    assert not any(is_ledger_tr(t) for t in ("FHKST01010100", "FHKST11300006", "CTPF1002R", "VTTC8036R"))
    assert SimConfig().ledger_tps == KIS_LEDGER_TPS


def test_a_burst_of_balances_stays_under_the_ledger_limit(make_gateway, sim):
    gw = make_gateway()
    assert budget.ledger(gw.settings) == KIS_LEDGER_TPS - 1
    gw.tokens.get()  # the token first, so the burst is only balance pages
    sim.reset_stats()
    results = burst_of_balances(gw, 3)  # 65 holdings: two pages each, six ledger calls
    assert all(not isinstance(r, Exception) for r in results), results
    stats = sim.stats()
    assert stats["calls"]["TTTC8434R"] == 6 and stats["refused"].get("EGW00215", 0) == 0


def test_without_pacing_the_same_burst_is_refused(make_gateway, sim, sim_clock, monkeypatch):
    gw = make_gateway(KIS_LEDGER_TPS="0")
    gw.tokens.get()
    sim.reset_stats()
    frozen = sim_clock.monotonic()
    monkeypatch.setattr(sim_clock, "monotonic", lambda: frozen)  # the whole burst lands in one KIS second
    burst_of_balances(gw, 3)
    assert sim.stats()["refused"].get("EGW00215", 0) >= 1
