import pytest

from shared.api.errors import ApiError
from shared.api.models import Snapshot, parse
from shared.api.validation import json_body, parse_bool, parse_deadline, parse_index_codes, parse_symbols


def test_symbols_are_normalised_and_deduplicated():
    assert parse_symbols("005930, 000660,005930,0001a0", 10) == ["005930", "000660", "0001A0"]


@pytest.mark.parametrize(("raw", "needle"), [
    (None, "symbols is required"),
    ("", "symbols is required"),
    ("12345", "not a symbol code"),
    ("005930,ABC$12", "not a symbol code"),
    (",".join(["005930"] * 4), "at most 3"),
])
def test_bad_symbols_name_the_field(raw, needle):
    with pytest.raises(ApiError) as err:
        parse_symbols(raw, 3)
    assert err.value.status == 400 and err.value.field == "symbols" and needle in err.value.message


def test_index_codes():
    assert parse_index_codes(None) == ["0001", "1001", "2001"]
    with pytest.raises(ApiError, match="index codes"):
        parse_index_codes("0001,9999")


def test_bool_and_deadline():
    assert parse_bool("true", "refresh") is True and parse_bool(None, "refresh") is False
    with pytest.raises(ApiError, match="refresh"):
        parse_bool("maybe", "refresh")
    assert parse_deadline("1500", 2.0) == 1.5 and parse_deadline(None, 2.0) == 2.0
    with pytest.raises(ApiError, match="deadline_ms"):
        parse_deadline("-1", 2.0)


def test_json_body_rules():
    assert json_body(b'{"stock_code": "005930"}') == {"stock_code": "005930"}
    with pytest.raises(ApiError, match="not valid JSON"):
        json_body(b"{nope")
    with pytest.raises(ApiError, match="JSON object"):
        json_body(b"[1]")
    with pytest.raises(ApiError, match="unknown field 'x'"):
        parse(Snapshot, json_body(b'{"stock_code": "005930", "x": 1}'))
    with pytest.raises(ApiError, match="stock_code is required"):
        parse(Snapshot, json_body(b"{}"))
    with pytest.raises(ApiError) as err:
        json_body(b" " * 20000)
    assert err.value.status == 413
