"""Current price, multi-quote, index: parsing, unknown symbols, batching on real and paper keys."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.kis.errors import KISConfigError, KISUnknownSymbolError
from tests.kis.fake_kis import Reply, egw, make_client, ok

PRICE_ROW = {
    "stck_prpr": "71000", "prdy_vrss": "-500", "prdy_vrss_sign": "5", "prdy_ctrt": "-0.70",
    "acml_vol": "12345678", "acml_tr_pbmn": "876543210000", "stck_oprc": "71500", "stck_hgpr": "72000",
    "stck_lwpr": "70500", "stck_mxpr": "92800", "stck_llam": "50000", "stck_sdpr": "71500",
    "stck_shrn_iscd": "005930",
}


def multi_row(symbol, price, name="종목"):
    return {"inter_shrn_iscd": symbol, "inter_kor_isnm": name, "inter2_prpr": str(price),
            "inter2_prdy_vrss": "100", "prdy_vrss_sign": "2", "prdy_ctrt": "0.50", "acml_vol": "1000",
            "acml_tr_pbmn": "100000", "inter2_oprc": str(price - 50), "inter2_hgpr": str(price + 100),
            "inter2_lwpr": str(price - 100), "inter2_mxpr": str(price * 13 // 10), "inter2_llam": "1",
            "inter2_prdy_clpr": str(price - 100)}


def test_current_price_parses_numbers_and_signs():
    client, _ = make_client(lambda s: ok(PRICE_ROW))
    q = client.get_current_price("005930")
    assert (q.symbol, q.price, q.change, q.change_rate, q.sign) == ("005930", 71000, -500, Decimal("-0.70"), "5")
    assert (q.open, q.high, q.low, q.volume) == (71500, 72000, 70500, 12345678)
    assert q.prev_close == 71500
    assert (q.upper_limit, q.lower_limit, q.trade_value) == (92800, 50000, 876543210000)
    assert q.as_of is not None and q.as_of.tzinfo is not None


def test_unsigned_change_is_signed_from_the_sign_code():
    client, _ = make_client(lambda s: ok({**PRICE_ROW, "prdy_vrss": "500", "prdy_ctrt": "0.70"}))
    q = client.get_current_price("005930")
    assert q.change == -500 and q.change_rate == Decimal("-0.70") and q.prev_close == 71500


@pytest.mark.parametrize("output", [
    {k: "0" for k in PRICE_ROW},
    {k: "" for k in PRICE_ROW},
    {},
    [],
])
def test_unknown_symbol_zero_output_is_business_error(output):
    client, _ = make_client(lambda s: ok(output))
    with pytest.raises(KISUnknownSymbolError) as info:
        client.get_current_price("999999")
    assert info.value.symbol == "999999"


def test_invalid_symbol_never_reaches_kis():
    client, fake = make_client(lambda s: ok(PRICE_ROW))
    for bad in ("5930", "00593O0", "abcdef", ""):
        with pytest.raises(ValueError):
            client.get_current_price(bad)
    assert fake.seen == []


def test_multi_quote_one_call_numbered_params_rows_matched_by_code():
    rows = [multi_row("000660", 180000, "SK하이닉스"), multi_row("005930", 71000, "삼성전자")]  # out of order
    client, fake = make_client(lambda s: ok(rows))
    out = client.get_multi_quotes(["005930", "000660", "035420"])
    assert len(fake.seen) == 1
    seen = fake.seen[0]
    assert seen.headers["tr_id"] == "FHKST11300006"
    assert seen.params == {"FID_COND_MRKT_DIV_CODE_1": "J", "FID_INPUT_ISCD_1": "005930",
                           "FID_COND_MRKT_DIV_CODE_2": "J", "FID_INPUT_ISCD_2": "000660",
                           "FID_COND_MRKT_DIV_CODE_3": "J", "FID_INPUT_ISCD_3": "035420"}
    assert set(out) == {"005930", "000660"}  # 035420 had no row: absent, caller decides
    assert out["005930"].name == "삼성전자" and out["005930"].price == 71000
    assert out["000660"].prev_close == 179900 and out["000660"].change == 100


def test_multi_quote_accepts_a_bare_object_and_drops_zero_rows():
    client, _ = make_client(lambda s: ok(multi_row("005930", 71000)))
    assert list(client.get_multi_quotes(["005930"])) == ["005930"]
    client, _ = make_client(lambda s: ok([multi_row("005930", 71000), multi_row("000660", 0)]))
    assert list(client.get_multi_quotes(["005930", "000660"])) == ["005930"]


def test_multi_quote_limit_is_30():
    client, fake = make_client(lambda s: ok([]))
    with pytest.raises(ValueError):
        client.get_multi_quotes([f"{i:06d}" for i in range(31)])
    assert fake.seen == []
    client.get_multi_quotes([f"{i:06d}" for i in range(30)])
    assert len(fake.seen[0].params) == 60


def test_current_prices_batches_by_batch_size_on_real():
    def handler(seen):
        codes = [v for k, v in seen.params.items() if k.startswith("FID_INPUT_ISCD_")]
        return ok([multi_row(c, 1000 + i) for i, c in enumerate(codes)])

    client, fake = make_client(handler, settings={"batch_size": 2})
    symbols = ["000001", "000002", "000003", "000004", "000005", "000001"]
    out = client.get_current_prices(symbols)
    assert set(out) == set(symbols)
    assert [s.headers["tr_id"] for s in fake.seen] == ["FHKST11300006"] * 3


def test_current_prices_uses_single_calls_on_paper():
    def handler(seen):
        if seen.params["FID_INPUT_ISCD"] == "999999":
            return ok({})
        return ok({**PRICE_ROW, "stck_shrn_iscd": seen.params["FID_INPUT_ISCD"]})

    client, fake = make_client(handler, paper=True)
    out = client.get_current_prices(["005930", "000660", "999999"])
    assert set(out) == {"005930", "000660"}
    assert [s.headers["tr_id"] for s in fake.seen] == ["FHKST01010100"] * 3  # F-TRs keep their id on paper


def test_multi_quote_refused_on_paper_is_config_error():
    client, _ = make_client(lambda s: egw("", "모의투자 TR 이 아닙니다."), paper=True)
    with pytest.raises(KISConfigError):
        client.get_multi_quotes(["005930"])


INDEX_ROW = {"bstp_nmix_prpr": "2650.12", "bstp_nmix_prdy_vrss": "-12.34", "prdy_vrss_sign": "5",
             "bstp_nmix_prdy_ctrt": "-0.46", "acml_vol": "400000", "acml_tr_pbmn": "9000000",
             "bstp_nmix_oprc": "2660.00", "bstp_nmix_hgpr": "2670.50", "bstp_nmix_lwpr": "2640.01"}


def test_index_price_and_unknown_index():
    def handler(seen):
        return ok(INDEX_ROW) if seen.params["FID_INPUT_ISCD"] != "9999" else ok({})

    gated = []
    client, fake = make_client(handler, gate=lambda cc, tr: gated.append((cc, tr)))
    idx = client.get_index_price("0001")
    assert (idx.code, idx.value, idx.change, idx.change_rate) == ("0001", Decimal("2650.12"), Decimal("-12.34"),
                                                                  Decimal("-0.46"))
    assert fake.seen[0].params == {"FID_COND_MRKT_DIV_CODE": "U", "FID_INPUT_ISCD": "0001"}
    assert fake.seen[0].headers["tr_id"] == "FHPUP02100000"
    with pytest.raises(KISUnknownSymbolError):
        client.get_index_price("9999")
    out = client.get_index_prices(["0001", "1001", "2001", "9999"])
    assert set(out) == {"0001", "1001", "2001"}
    assert all(g == ("quotes", "FHPUP02100000") for g in gated)


def test_unreadable_200_body_is_server_error():
    from shared.kis.errors import KISServerError

    client, _ = make_client(lambda s: Reply(200, raw=b"<html>maintenance</html>"))
    with pytest.raises(KISServerError):
        client.get_current_price("005930")
