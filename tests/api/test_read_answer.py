"""The read answer encoded from kept parts (`shared.api.read_answer`) is the answer every result gives
(`SymbolResult.to_json`, with the symbol master's name and market where the copy has none)."""

import json
from types import SimpleNamespace

from shared.api import read_answer
from shared.market.answers import SymbolResult


def _expected(results, rows):
    out = {}
    for code, r in results.items():
        shown = r.to_json()
        row = rows.get(code) if rows else None
        if row is not None:
            if not shown.get("name"):
                shown["name"] = row.name
            shown.setdefault("market", row.market)
        out[code] = shown
    return out


def test_the_encoded_answer_is_each_results_answer():
    copy = {"symbol": "005930", "price": 60800, "name": "", "note": "한글 \"quoted\""}
    rows = {"005930": SimpleNamespace(name="삼성전자", market="KOSPI"),
            "000660": SimpleNamespace(name="SK하이닉스", market="KOSPI")}
    results = {
        "005930": SymbolResult("fresh", copy, 0.0123456),
        "000660": SymbolResult("stale", {"symbol": "000660", "price": 1, "name": "own name"}, 12.5, "KIS unavailable"),
        "035420": SymbolResult("pending", reason="being fetched from KIS"),
        "999999": SymbolResult("error", reason="unknown symbol"),
    }
    body = read_answer.answer("quotes", results, rows, "2026-12-02T01:02:03.004+00:00")
    assert isinstance(body, read_answer.RawJson) and read_answer.encode(body) == body
    got = json.loads(body)
    assert got == {"quotes": _expected(results, rows), "served_at": "2026-12-02T01:02:03.004+00:00"}
    assert got["quotes"]["005930"]["age_s"] == 0.012 and got["quotes"]["005930"]["name"] == "삼성전자"
    assert got["quotes"]["000660"]["name"] == "own name" and got["quotes"]["000660"]["market"] == "KOSPI"
    assert json.loads(read_answer.answer("indices", {}, None, "t")) == {"indices": {}, "served_at": "t"}


def test_a_kept_part_is_used_only_for_its_own_copy_and_master_row():
    rows = {"005930": SimpleNamespace(name="삼성전자", market="KOSPI")}
    first = {"symbol": "005930", "price": 100}
    one = json.loads(read_answer.answer("quotes", {"005930": SymbolResult("fresh", first, 1.0)}, rows, "t"))
    again = json.loads(read_answer.answer("quotes", {"005930": SymbolResult("fresh", first, 2.0)}, rows, "t"))
    assert one["quotes"]["005930"]["price"] == again["quotes"]["005930"]["price"] == 100
    assert (one["quotes"]["005930"]["age_s"], again["quotes"]["005930"]["age_s"]) == (1.0, 2.0)
    newer = {"symbol": "005930", "price": 200}  # a new copy: its own part
    got = json.loads(read_answer.answer("quotes", {"005930": SymbolResult("fresh", newer, 0.0)}, rows, "t"))
    assert got["quotes"]["005930"]["price"] == 200
    renamed = {"005930": SimpleNamespace(name="Samsung", market="KOSPI")}  # a new master version: its own part
    got = json.loads(read_answer.answer("quotes", {"005930": SymbolResult("fresh", newer, 0.0)}, renamed, "t"))
    assert got["quotes"]["005930"]["name"] == "Samsung"
    stale = SymbolResult("stale", newer, 5.0, "KIS unavailable (circuit open)")  # same copy, another status
    got = json.loads(read_answer.answer("quotes", {"005930": stale}, renamed, "t"))
    assert got["quotes"]["005930"]["status"] == "stale" and got["quotes"]["005930"]["reason"].startswith("KIS")


def test_kept_answers_are_bounded_by_their_symbol_parts(monkeypatch):
    monkeypatch.setattr(read_answer, "_kept", {})
    monkeypatch.setattr(read_answer, "_kept_parts", 0)
    monkeypatch.setattr(read_answer, "KEPT_MAX_PARTS", 250)
    near = SimpleNamespace(version=1)

    def kept_answer(n):
        results = {f"{i:06d}": SymbolResult("fresh", {"price": i}, 0.5) for i in range(n)}
        return read_answer.Kept("quotes", results, None, 10.0, 10.0, {}, near, 11.0)

    for q in range(2):
        read_answer.keep(("q", q), kept_answer(100))
    read_answer.keep(("q", 0), kept_answer(100))  # the same query again: counted once
    assert read_answer.kept(("q", 0), near, 10.5, None) is not None
    assert read_answer.kept(("q", 1), near, 10.5, None) is not None
    read_answer.keep(("q", 2), kept_answer(100))  # 300 parts: over the bound, the memo starts over
    assert read_answer.kept(("q", 0), near, 10.5, None) is None
    assert read_answer.kept(("q", 2), near, 10.5, None) is not None
    assert sum(k.size for k in read_answer._kept.values()) == read_answer._kept_parts <= 250
