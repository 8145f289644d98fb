"""Injected faults: 5xx, timeouts, latency, down, and the admin endpoint that sets them."""

from __future__ import annotations

import time

import pytest
import requests

from tests.sim.conftest import Kis


def test_error_rate_answers_500_blank_or_egw00001(make_sim, clock):
    sim = make_sim(clock=clock, error_rate=1.0)
    kis = Kis(sim).login()
    bodies = []
    for _ in range(12):
        resp = kis.price("005930")
        assert resp.status_code == 500
        bodies.append(resp.json())
    blank = {"rt_cd": "1", "msg_cd": "", "msg1": ""}
    egw = {"rt_cd": "1", "msg_cd": "EGW00001", "msg1": "일시적 오류가 발생했습니다."}
    assert all(b in (blank, egw) for b in bodies)
    assert blank in bodies and egw in bodies
    stats = sim.stats()
    assert stats["calls"]["FHKST01010100"] == 12  # they reached KIS: slots taken
    assert sum(stats["errors"].values()) == 12


def test_timeout_holds_then_drops_the_connection(sim, kis):
    sim.set_faults(timeout_rate=1.0, timeout_hold_s=0.2)
    with pytest.raises(requests.ConnectionError):
        kis.price("005930")
    sim.set_faults(timeout_hold_s=30)
    with pytest.raises(requests.ReadTimeout):
        kis.price("005930", timeout=0.3)
    assert sim.stats()["timeouts"] == 2
    # stop() must not wait the 30 s out: the fixture stops the server and the test ends promptly


def test_latency_delays_every_answer(sim, kis):
    sim.set_faults(latency_ms=300)
    started = time.monotonic()
    assert kis.price("005930").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_down_answers_500_or_closes(sim, kis):
    sim.set_faults(down=True)
    resp = kis.price("005930")
    assert resp.status_code == 500 and resp.json() == {"rt_cd": "1", "msg_cd": "", "msg1": ""}
    assert kis.issue().status_code == 500
    sim.set_faults(down_mode="close")
    with pytest.raises(requests.ConnectionError):
        kis.price("005930")
    sim.set_faults(down=False)
    assert kis.price("005930").json()["rt_cd"] == "0"


def test_admin_faults_endpoint(sim, kis):
    url = sim.base_url + "/__admin/faults"
    resp = requests.post(url, json={"error_rate": 1.0, "latency_ms": 0}, timeout=5)
    assert resp.status_code == 200 and resp.json()["error_rate"] == 1.0
    assert requests.get(url, timeout=5).json()["error_rate"] == 1.0
    assert kis.price("005930").status_code == 500
    assert requests.post(url, json={"error_rate": 2}, timeout=5).status_code == 400
    assert requests.post(url, json={"nonsense": 1}, timeout=5).status_code == 400
    requests.post(url, json={"error_rate": 0}, timeout=5)
    assert kis.price("005930").status_code == 200


def test_admin_expire_tokens_and_reset(sim, kis, clock):
    resp = requests.post(sim.base_url + "/__admin/expire-tokens", timeout=5)
    assert resp.json() == {"expired": 1}
    assert kis.price("005930").json()["msg_cd"] == "EGW00123"
    assert requests.post(sim.base_url + "/__admin/reset", timeout=5).status_code == 200
    assert sim.stats()["total_refused"] == 0
    assert kis.issue().status_code == 200  # the 60 s rule was reset with the tokens
