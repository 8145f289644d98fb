"""The symbol master: KIS's master files parsed, kept in Redis, checked on every request, searched."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from shared.clock import FakeClock
from shared.gateway import set_gateway
from shared.kis.master import MasterError, download_masters, parse_master, parse_zip
from shared.market.symbol_master import SymbolMaster, refresh_from_settings
from shared.sim.universe import Universe
from tests.entry_points import entry_client

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")
DEV = {"X-API-Key": "test-dev-key"}


def unlisted(sim) -> str:
    listed = {s["code"] for s in sim.symbols()}
    return next(c for c in (f"{n:05d}0" for n in range(99_990, 0, -7)) if c not in listed)


# ---- parsing ------------------------------------------------------------------------------------

def test_parses_the_three_files_as_kis_publishes_them():
    universe = Universe(1)
    rows = {m: parse_zip(m, universe.master_zip(f"{m.lower()}_code.mst.zip")) for m in ("KOSPI", "KOSDAQ", "KONEX")}
    listed = {i.code: i for i in universe.listed()}
    assert sum(len(r) for r in rows.values()) == len(listed)
    by_code = {s.code: s for r in rows.values() for s in r}
    samsung = by_code["005930"]
    assert (samsung.name, samsung.market, samsung.std_code, samsung.group) == ("삼성전자", "KOSPI", "KR7005930003",
                                                                               "ST")
    assert (samsung.base_price, samsung.listed, samsung.shares) == (72_000, "19750611", 5_969_782_550)
    assert by_code["069500"].etf and not by_code["069500"].etn and by_code["069500"].name == "KODEX 200"
    assert by_code["580011"].etn and by_code["580011"].name == "삼성 레버리지 WTI원유 선물 ETN"
    assert {s.code for s in rows["KONEX"]} == {"217910", "092590"}
    for code, inst in listed.items():  # every flag as the universe has it
        assert (by_code[code].halted, by_code[code].managed, by_code[code].market) == (inst.halted, inst.managed,
                                                                                       inst.market)
    assert any(s.halted for s in by_code.values()) and any(s.managed for s in by_code.values())


def test_tail_is_cut_from_the_end_whatever_the_name_length():
    universe = Universe(1)
    text = universe.master_zip("kospi_code.mst.zip")
    line = zipfile.ZipFile(io.BytesIO(text)).read("kospi_code.mst").decode("cp949").splitlines()[0]
    assert len(line) - len("005930   KR7005930003삼성전자") == 227
    longer = line.replace("삼성전자", "삼성전자 우선주 테스트", 1)
    assert parse_master("KOSPI", longer)[0].name == "삼성전자 우선주 테스트"
    assert parse_master("KOSPI", line[:100]) == []  # too short for the layout: skipped


def test_bad_files_raise_master_error():
    with pytest.raises(MasterError, match="not a zip"):
        parse_zip("KOSPI", b"<html>maintenance</html>")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("kospi_code.mst", b"\xff\xfe\xff" * 100)
    with pytest.raises(MasterError, match="cp949"):
        parse_zip("KOSPI", buf.getvalue())


def test_download_from_the_simulator_and_a_failing_location(sim):
    symbols = download_masters(sim.base_url + "/common/master")
    assert len(symbols) == len(sim.simulator.universe.listed())
    with pytest.raises(MasterError, match="HTTP 404"):
        download_masters(sim.base_url + "/nowhere")


# ---- store, check, search ---------------------------------------------------------------------------

@pytest.fixture
def master(redis_client, redis_prefix):
    return SymbolMaster(redis_client, prefix=redis_prefix, clock=FakeClock(1_800_000_000.0), recheck_s=0)


def test_no_master_allows_every_code_and_says_so(master):
    assert not master.loaded()
    assert master.is_known("quote", "999990") and master.unknown("quote", ["999990"]) == []
    status = master.status()
    assert status["loaded"] is False and status["check"].startswith("off")


def test_search_ranks_exact_then_prefix_then_contained(master):
    master.store(parse_zip("KOSPI", Universe(1).master_zip("kospi_code.mst.zip")), "test")
    assert master.search("삼성전자")[0]["code"] == "005930"
    first = master.search("삼성", limit=5)
    assert first[0]["code"] == "005930" and len(first) == 5
    assert all("삼성" in r["name"] for r in first)
    assert master.search("0059")[0]["code"] == "005930"
    assert master.search("KR7005930003")[0]["code"] == "005930"
    assert master.search("kodex")[0]["code"] == "069500" and master.search("kodex")[0]["etf"] is True
    assert master.search("삼성 전자")[0]["code"] == "005930"  # spaces and case do not matter
    assert master.search("Samsung Electronics") == []  # the master files carry Korean names only...
    master.note_english("005930", "Samsung Electronics")
    hit = master.search("samsung elec")[0]  # ...until a symbol-info answer told us the English one
    assert hit["code"] == "005930" and hit["name_en"] == "Samsung Electronics"
    assert master.search("없는회사이름") == []


def test_failed_refresh_keeps_the_last_master_and_reports_its_age(master):
    master.store(parse_zip("KOSDAQ", Universe(1).master_zip("kosdaq_code.mst.zip")), "first")
    master.clock.advance(3600)

    def broken():
        raise MasterError("kospi_code.mst.zip: HTTP 503")

    status = master.refresh(broken, "kis")
    assert status["loaded"] and status["source"] == "first" and status["age_s"] == 3600
    assert status["last_refresh_error"] == "kospi_code.mst.zip: HTTP 503"
    assert master.is_known("quote", "247540") and not master.is_known("quote", "005930")
    assert master.is_known("index", "0001")  # index codes are not in the stock master


def test_a_new_master_replaces_the_old_one_whole(master, redis_client, redis_prefix):
    universe = Universe(1)
    master.store(parse_zip("KOSPI", universe.master_zip("kospi_code.mst.zip")), "a")
    master.store(parse_zip("KOSDAQ", universe.master_zip("kosdaq_code.mst.zip")), "b")
    assert master.lookup("005930") is None and master.lookup("247540").market == "KOSDAQ"
    versions = list(redis_client.scan_iter(match=f"{redis_prefix}:symbols:v:*"))
    assert len(versions) == 1  # the previous version is gone
    with pytest.raises(MasterError):
        master.store([], "empty")
    assert master.lookup("247540") is not None


def test_a_fresh_instance_answers_membership_and_names_from_the_whole_master(master, redis_client, redis_prefix):
    """A fresh instance reads the whole master from Redis on its first check (membership is exact from the first
    answer on: an unlisted code is unknown, a listed one known with its row), decoding a row when first asked for
    it: its first answer pays for the codes it names, not for the thousands it does not."""
    rows = parse_zip("KOSPI", Universe(1).master_zip("kospi_code.mst.zip"))
    master.store(rows, "test")
    fresh = SymbolMaster(redis_client, prefix=redis_prefix, clock=FakeClock(1_800_000_000.0), recheck_s=0)
    assert fresh.unknown("quote", ["005930", "999990"]) == ["999990"]
    assert fresh.describe("005930")["name"] == "삼성전자" and fresh.lookup("000000") is None
    snap = fresh._snapshot
    assert snap is not None and len(snap.symbols) == len(rows) and len(snap.symbols._rows) == 1
    assert fresh.search("삼성전자")[0]["code"] == "005930"  # search decodes every row once
    assert len(snap.symbols._rows) == len(rows)
    assert {s.code: s for s in rows}["069500"] == fresh.lookup("069500")


# ---- through the gateway --------------------------------------------------------------------------

def test_unknown_code_costs_no_kis_call_and_adds_nothing_pending(make_gateway, sim):
    gw = make_gateway()
    code = unlisted(sim)
    sim.reset_stats()
    out = gw.reader.get("quote", [code], deadline_s=5)
    assert out[code].status == "error" and out[code].reason == "unknown symbol"
    assert gw.drain.pending["quote"].size() == 0
    for kind in ("daily", "info"):
        assert gw.reader.get(kind, [code])[code].reason == "unknown symbol"
        assert gw.drain.pending[kind].size() == 0
    stats = sim.stats()
    assert stats["total_calls"] == 0 and stats["total_refused"] == 0 and stats["tokens_issued"] == 0

    mixed = gw.reader.get("quote", ["005930", code], deadline_s=5)
    assert mixed["005930"].status == "fresh" and mixed[code].reason == "unknown symbol"
    assert list(mixed) == ["005930", code]


def test_without_a_master_unknown_codes_still_go_to_kis(make_gateway, sim):
    gw = make_gateway(load_symbol_master=False)
    code = unlisted(sim)
    sim.reset_stats()
    assert gw.reader.get("quote", [code], deadline_s=5)[code].reason == "unknown symbol"
    assert sim.stats()["total_calls"] >= 1  # today's behaviour: KIS answers that it does not know it


@pytest.fixture
def app(make_gateway):
    gw = make_gateway(GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key")
    set_gateway(gw)
    yield gw
    set_gateway(None)


def test_search_endpoint_health_and_names(app, sim):
    search = entry_client("symbol_search")
    r = search.get("/?q=삼성전자", headers=DEV)
    assert r.status_code == 200
    body = r.get_json()
    assert body["results"][0]["code"] == "005930" and body["results"][0]["market"] == "KOSPI"
    assert len(search.get("/?q=삼성&limit=3", headers=DEV).get_json()["results"]) == 3
    assert search.get("/?q=", headers=DEV).status_code == 400
    assert search.get("/?q=a&limit=500", headers=DEV).status_code == 400
    assert search.get("/?q=삼성").status_code == 401

    health = entry_client("health").get("/").get_json()
    master = health["checks"]["symbol_master"]
    assert master["loaded"] and master["check"] == "on" and master["symbols"] == len(sim.simulator.universe.listed())
    assert master["age_s"] >= 0

    code = unlisted(sim)
    quotes = entry_client("quotes").get(f"/?symbols=005930,{code}", headers=DEV).get_json()
    assert quotes["quotes"][code] == {"status": "error", "reason": "unknown symbol"}
    assert quotes["quotes"]["005930"]["name"] == "삼성전자" and quotes["quotes"]["005930"]["market"]


def test_search_is_503_until_a_master_is_loaded(make_gateway):
    gw = make_gateway(load_symbol_master=False, GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key")
    set_gateway(gw)
    try:
        r = entry_client("symbol_search").get("/?q=삼성", headers=DEV)
        assert r.status_code == 503 and r.get_json()["error"]["code"] == "unavailable"
        health = entry_client("health").get("/").get_json()
        assert health["checks"]["symbol_master"]["check"].startswith("off")
        assert refresh_from_settings(gw.symbols, gw.settings)["loaded"]
        r = entry_client("symbol_search").get("/?q=삼성", headers=DEV)
        assert r.status_code == 200
    finally:
        set_gateway(None)


def test_preload_downloads_the_master(make_gateway, sim):
    gw = make_gateway(load_symbol_master=False, GATEWAY_MODE="local", GATEWAY_DEV_API_KEY="test-dev-key")
    set_gateway(gw)
    try:
        r = entry_client("preload").post("/", json={"force": True}, headers=DEV)
        assert r.status_code == 200
        master = r.get_json()["symbol_master"]
        assert master["loaded"] and master["source"] == sim.base_url + "/common/master"
        assert gw.symbols.is_known("quote", "005930") and not gw.symbols.is_known("quote", unlisted(sim))
    finally:
        set_gateway(None)
