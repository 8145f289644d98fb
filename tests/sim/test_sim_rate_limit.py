"""Sliding 1-second window per app key, ledger TPS, and what does and does not take a slot."""

from __future__ import annotations

import threading
import time

from tests.sim.conftest import BALANCE, Kis

BALANCE_PARAMS = {"CANO": "12345678", "ACNT_PRDT_CD": "01", "AFHR_FLPR_YN": "N", "OFL_YN": "", "INQR_DVSN": "02",
                  "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N", "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00",
                  "CTX_AREA_FK100": "", "CTX_AREA_NK100": ""}


def test_40_concurrent_calls_grant_at_most_18_in_any_second(make_sim):
    sim = make_sim()  # real clock: this is the over-the-wire burst
    client = Kis(sim).login()
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def call() -> None:
        own = Kis(sim)
        own.token = client.token
        barrier.wait()
        resp = own.price("005930")
        with lock:
            results.append((resp.status_code, resp.json()))

    threads = [threading.Thread(target=call) for _ in range(40)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - started
    granted = [b for s, b in results if s == 200 and b["rt_cd"] == "0"]
    refused = [b for s, b in results if s == 500]
    assert len(results) == 40
    assert len(granted) + len(refused) == 40
    assert all(b == {"rt_cd": "1", "msg_cd": "EGW00201", "msg1": "초당 거래건수를 초과하였습니다."} for b in refused)
    stats = sim.stats()
    assert stats["violations"] == 0
    assert max(stats["max_calls_in_any_1s_window"].values()) <= 18
    assert stats["calls"]["FHKST01010100"] == len(granted)
    if elapsed < 0.9:  # the whole burst fell inside one second: exactly the limit was granted
        assert len(granted) == 18


def test_window_is_sliding_not_fixed(sim, kis, clock):
    clock.advance(0.9)
    assert all(kis.price("005930").status_code == 200 for _ in range(18))
    clock.advance(0.2)  # a fixed window would have reset at the second boundary
    assert kis.price("005930").json()["msg_cd"] == "EGW00201"
    clock.advance(0.8)  # exactly 1.0 s later: the closed window still holds the 18
    assert kis.price("005930").json()["msg_cd"] == "EGW00201"
    clock.advance(0.001)
    assert kis.price("005930").json()["rt_cd"] == "0"


def test_refused_calls_take_no_slot(sim, kis, clock):
    for _ in range(18):
        assert kis.price("005930").status_code == 200
    clock.advance(0.5)
    for _ in range(30):
        assert kis.price("005930").json()["msg_cd"] == "EGW00201"
    clock.advance(0.6)  # the 18 left the window; the 30 refusals never entered it
    assert all(kis.price("005930").status_code == 200 for _ in range(18))
    stats = sim.stats()
    assert stats["refused"]["EGW00201"] == 30
    assert stats["calls"]["FHKST01010100"] == 36
    assert stats["violations"] == 0


def test_windows_are_per_app_key(sim):
    a, b = Kis(sim, "key-a", "s").login(), Kis(sim, "key-b", "s").login()
    assert all(a.price("005930").status_code == 200 for _ in range(18))
    assert a.price("005930").status_code == 500
    assert b.price("005930").status_code == 200


def test_limits_come_from_the_profile(make_sim, clock):
    for profile, env, limit in (("kis-legacy", "real", 20), ("kis-2026-04", "paper", 1), ("kis-legacy", "paper", 2)):
        sim = make_sim(clock=clock, profile=profile, env=env)
        client = Kis(sim).login()
        codes = [client.price("005930").status_code for _ in range(limit + 1)]
        assert codes == [200] * limit + [500]
        clock.advance(2)


def test_hashkey_counts_and_token_calls_do_not(sim, kis, clock):
    clock.advance(61)
    assert kis.issue().status_code == 200  # oauth: outside the window
    for _ in range(17):
        assert kis.price("005930").status_code == 200
    resp = kis.http.post(sim.base_url + "/uapi/hashkey", json={"CANO": "12345678"},
                         headers={"appkey": kis.app_key, "appsecret": kis.app_secret})
    assert resp.status_code == 200 and resp.json()["HASH"]
    assert kis.price("005930").json()["msg_cd"] == "EGW00201"
    assert sim.stats()["calls"] == {"FHKST01010100": 17, "hashkey": 1}


def test_ledger_tps_refuses_account_calls_without_taking_an_app_slot(make_sim, clock):
    sim = make_sim(clock=clock, ledger_tps=1)
    kis = Kis(sim).login()
    assert kis.get(BALANCE, "TTTC8434R", BALANCE_PARAMS).status_code == 200
    resp = kis.get(BALANCE, "TTTC8434R", BALANCE_PARAMS)
    assert resp.status_code == 500
    assert resp.json()["msg_cd"] == "EGW00215"
    for _ in range(17):  # the refused ledger call left the 17 other slots free
        assert kis.price("005930").status_code == 200
    assert kis.price("005930").json()["msg_cd"] == "EGW00201"
    clock.advance(1.01)
    assert kis.get(BALANCE, "TTTC8434R", BALANCE_PARAMS).status_code == 200


def test_reject_rate_refuses_below_the_limit(make_sim, clock):
    sim = make_sim(clock=clock, reject_rate=1.0)
    resp = Kis(sim).login().price("005930")
    assert resp.status_code == 500 and resp.json()["msg_cd"] == "EGW00201"
    assert sim.stats()["total_calls"] == 0
