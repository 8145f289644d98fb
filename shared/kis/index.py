"""Index level: FHPUP02100000, one index per call (0001 KOSPI, 1001 KOSDAQ, 2001 KOSPI200)."""

from __future__ import annotations

from shared.kis.errors import KISUnknownSymbolError
from shared.kis.fields import first_row, signed, text, to_decimal, to_int
from shared.kis.http import KISHttp
from shared.kis.models import IndexQuote

INDEX_PATH = "/uapi/domestic-stock/v1/quotations/inquire-index-price"
INDEX_TR = "FHPUP02100000"
INDEX_CODES = {"0001": "KOSPI", "1001": "KOSDAQ", "2001": "KOSPI200"}


def check_index_code(code: str) -> str:
    if not isinstance(code, str) or len(code) != 4 or not code.isdigit():
        raise ValueError(f"index code {code!r} is not 4 digits (0001 KOSPI, 1001 KOSDAQ, 2001 KOSPI200)")
    return code


def get_index_price(http: KISHttp, code: str) -> IndexQuote:
    check_index_code(code)
    resp = http.get(INDEX_PATH, INDEX_TR, "quotes", {"FID_COND_MRKT_DIV_CODE": "U", "FID_INPUT_ISCD": code})
    row = first_row(resp.body.get("output"))
    value = to_decimal(row.get("bstp_nmix_prpr"))
    if value <= 0:  # unknown codes come back as rt_cd "0" with an empty output, like stocks
        raise KISUnknownSymbolError(code, msg_cd=text(resp.body.get("msg_cd")), http_status=resp.status,
                                    tr_id=INDEX_TR)
    sign = text(row.get("prdy_vrss_sign"))
    return IndexQuote(
        code=code,
        value=value,
        change=signed(to_decimal(row.get("bstp_nmix_prdy_vrss")), sign),
        change_rate=signed(to_decimal(row.get("bstp_nmix_prdy_ctrt")), sign),
        sign=sign,
        open=to_decimal(row.get("bstp_nmix_oprc")),
        high=to_decimal(row.get("bstp_nmix_hgpr")),
        low=to_decimal(row.get("bstp_nmix_lwpr")),
        volume=to_int(row.get("acml_vol")),
        trade_value=to_int(row.get("acml_tr_pbmn")),
        as_of=resp.received_at,
    )
