"""Stock basic info: CTPF1002R (real only; product type 300 = stock/ETF/ETN)."""

from __future__ import annotations

from shared.kis.errors import KISUnknownSymbolError
from shared.kis.fields import check_symbol, first_row, text, to_date, to_int
from shared.kis.http import KISHttp
from shared.kis.models import StockInfo

INFO_PATH = "/uapi/domestic-stock/v1/quotations/search-stock-info"
INFO_TR = "CTPF1002R"


def get_stock_info(http: KISHttp, symbol: str) -> StockInfo:
    check_symbol(symbol)
    resp = http.get(INFO_PATH, INFO_TR, "reference", {"PRDT_TYPE_CD": "300", "PDNO": symbol})
    row = first_row(resp.body.get("output"))
    name = text(row.get("prdt_abrv_name")) or text(row.get("prdt_name"))
    if not name:
        raise KISUnknownSymbolError(symbol, msg_cd=text(resp.body.get("msg_cd")), http_status=resp.status,
                                    tr_id=INFO_TR)
    listed_on = to_date(row.get("scts_mket_lstg_dt")) or to_date(row.get("kosdaq_mket_lstg_dt"))
    return StockInfo(
        symbol=symbol,
        name=name,
        market=text(row.get("mket_id_cd")),
        listed_shares=to_int(row.get("lstg_stqt")),
        short_name=text(row.get("prdt_abrv_name")),
        english_name=text(row.get("prdt_eng_name")),
        isin=text(row.get("std_pdno")),
        par_value=to_int(row.get("papr")),
        sector=text(row.get("std_idst_clsf_cd_name")) or text(row.get("idx_bztp_scls_cd_name")),
        kospi200=text(row.get("kospi200_item_yn")) == "Y",
        trading_halted=text(row.get("tr_stop_yn")) == "Y",
        administrative=text(row.get("admn_item_yn")) == "Y",
        listed_on=listed_on,
        prev_close=to_int(row.get("bfdy_clpr")),
    )
