"""Stats and symbols: counts by TR and refusal code, per-app labels that hide the key, the universe."""

from __future__ import annotations

import json
import re

import requests

from tests.sim.conftest import MULTI, Kis


def test_stats_counts(sim, kis, clock):
    kis.price("005930")
    kis.get(MULTI, "FHKST11300006", {"FID_COND_MRKT_DIV_CODE_1": "J", "FID_INPUT_ISCD_1": "005930"})
    kis.issue()  # within 60 s: EGW00133
    Kis(sim, "other-key", "other-secret").login().price("000660", authorization="Bearer nope")
    stats = requests.get(sim.base_url + "/__admin/stats", timeout=5).json()
    assert stats["calls"] == {"FHKST01010100": 1, "FHKST11300006": 1}
    assert stats["refused"] == {"EGW00133": 1, "EGW00121": 1}
    assert stats["tokens_issued"] == 2 and stats["violations"] == 0
    assert stats["limit_per_s"] == 18 and stats["env"] == "real"
    by_app = stats["by_app"]
    assert len(by_app) == 2 and all(re.fullmatch(r"app-[0-9a-f]{8}", label) for label in by_app)
    assert sorted((v["calls"], v["refused"]) for v in by_app.values()) == [(0, 1), (2, 1)]
    assert stats["max_calls_in_any_1s_window"] == {label: 2 for label, v in by_app.items() if v["calls"]}
    assert stats == sim.stats()


def test_stats_never_show_secrets(sim, kis):
    kis.price("005930")
    text = json.dumps(sim.stats())
    assert kis.app_key not in text and kis.app_secret not in text and kis.token not in text


def test_reset_stats(sim, kis):
    kis.price("005930")
    sim.reset_stats()
    assert sim.stats()["calls"] == {}
    assert kis.price("005930").json()["rt_cd"] == "0"  # tokens survive a stats reset


def test_symbols_universe(sim):
    symbols = requests.get(sim.base_url + "/__admin/symbols", timeout=5).json()
    assert 2400 <= len(symbols) <= 2600
    assert all(set(s) == {"code", "name", "market"} for s in symbols)
    assert all(re.fullmatch(r"[0-9]{4}[0-9A-Z][0-9]", s["code"]) for s in symbols)
    assert any(not s["code"].isdigit() for s in symbols)
    assert {s["market"] for s in symbols} == {"KOSPI", "KOSDAQ"}
    names = {s["code"]: s["name"] for s in symbols}
    assert names["005930"] == "삼성전자" and names["000660"] == "SK하이닉스" and names["035420"] == "NAVER"
    assert names["035720"] == "카카오" and names["207940"] == "삼성바이오로직스"
    assert len(set(names)) == len(symbols)
