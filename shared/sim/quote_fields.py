"""KIS field layouts of the quotation TRs, filled from the price model. Every value is a string.

Fundamentals (PER, EPS, shares...) are fixed per symbol by the seed; order-book and investor figures are
plausible fillers. `blank()` turns a layout into KIS's answer for a code it does not know: numbers "0",
text and dates "".
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared.sim.prices import Bar, Quote
from shared.sim.ticks import price_limits, tick_size
from shared.sim.universe import Instrument

MARKET_KOR = {"KOSPI": "코스피", "KOSDAQ": "코스닥"}


def blank(layout: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, value in layout.items():
        textual = key.endswith(("_date", "_dt", "_cd", "iscd", "pdno"))
        out[key] = "0" if not textual and _numeric(value) else ""
    return out


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def sign(change: int, price: int, upper: int, lower: int) -> str:
    """prdy_vrss_sign: 1 upper limit, 2 up, 3 flat, 4 lower limit, 5 down."""
    if change > 0:
        return "1" if price >= upper else "2"
    if change < 0:
        return "4" if price <= lower else "5"
    return "3"


def rate(part: float, whole: float) -> str:
    return f"{part / whole * 100:.2f}" if whole else "0.00"


def points(units: int) -> str:
    """Index level from hundredths of a point."""
    return f"{units / 100:.2f}"


def fundamentals(inst: Instrument) -> dict[str, Any]:
    h = int.from_bytes(hashlib.blake2b(inst.code.encode(), digest_size=8).digest(), "big")
    per = 4.0 + (h % 3600) / 100  # 4.00 .. 39.99
    pbr = 0.3 + (h // 3600 % 400) / 100  # 0.30 .. 4.29
    return {"per": per, "pbr": pbr, "eps": int(inst.base / per), "bps": int(inst.base / pbr),
            "frgn": (h // 1_440_000 % 6000) / 100}


def price_output(inst: Instrument, q: Quote, extremes: dict[str, tuple[int, str]]) -> dict[str, str]:
    """inquire-price (FHKST01010100) `output`. `extremes` holds 52-week/250-day/year highs and lows."""
    f = fundamentals(inst)
    change = q.price - q.prev_close
    cap = inst.shares * q.price // 100_000_000  # 억원
    out = {
        "iscd_stat_cls_code": "55", "marg_rate": "20.00",
        "rprs_mrkt_kor_name": "KOSPI200" if inst.kospi200 else inst.market, "new_hgpr_lwpr_cls_code": "",
        "bstp_kor_isnm": inst.sector, "temp_stop_yn": "N", "oprc_rang_cont_yn": "N", "clpr_rang_cont_yn": "N",
        "crdt_able_yn": "Y", "grmn_rate_cls_code": "40", "elw_pblc_yn": "N",
        "stck_prpr": str(q.price), "prdy_vrss": str(change), "prdy_vrss_sign": sign(change, q.price, q.upper, q.lower),
        "prdy_ctrt": rate(change, q.prev_close), "acml_tr_pbmn": str(q.value), "acml_vol": str(q.volume),
        "prdy_vrss_vol_rate": "100.00", "stck_oprc": str(q.open), "stck_hgpr": str(q.high),
        "stck_lwpr": str(q.low), "stck_mxpr": str(q.upper), "stck_llam": str(q.lower),
        "stck_sdpr": str(q.prev_close), "wghn_avrg_stck_prc": f"{q.value / q.volume:.2f}" if q.volume else "0.00",
        "hts_frgn_ehrt": f"{f['frgn']:.2f}", "frgn_ntby_qty": "0", "pgtr_ntby_qty": "0",
        "dmrs_val": str(q.high), "dmsp_val": str(q.low), "cpfn": str(inst.shares * inst.par // 100_000_000),
        "rstc_wdth_prc": str(q.upper - q.prev_close), "stck_fcam": str(inst.par),
        "stck_sspr": str(q.prev_close * 7 // 10),
        "aspr_unit": str(tick_size(q.price)), "hts_deal_qty_unit_val": "1", "lstn_stcn": str(inst.shares),
        "hts_avls": str(cap), "per": f"{f['per']:.2f}", "pbr": f"{f['pbr']:.2f}", "stac_month": "12",
        "vol_tnrt": rate(q.volume, inst.shares), "eps": f"{f['eps']:.2f}", "bps": f"{f['bps']:.2f}",
    }
    for prefix, key in (("d250_hgpr", "d250_high"), ("d250_lwpr", "d250_low")):
        value, day = extremes[key]
        out.update({prefix: str(value), f"{prefix}_date": day,
                    f"{prefix}_vrss_prpr_rate": rate(q.price - value, value)})
    for field, key in (("stck_dryy_hgpr", "year_high"), ("stck_dryy_lwpr", "year_low")):
        value, day = extremes[key]
        short = "dryy_hgpr" if "hgpr" in field else "dryy_lwpr"
        out.update({field: str(value), f"{short}_vrss_prpr_rate": rate(q.price - value, value), f"{short}_date": day})
    for prefix, key in (("w52_hgpr", "w52_high"), ("w52_lwpr", "w52_low")):
        value, day = extremes[key]
        out.update({prefix: str(value), f"{prefix}_vrss_prpr_ctrt": rate(q.price - value, value),
                    f"{prefix}_date": day})
    out.update({
        "whol_loan_rmnd_rate": "0.10", "ssts_yn": "Y", "stck_shrn_iscd": inst.code, "fcam_cnnm": str(inst.par),
        "cpfn_cnnm": f"{inst.shares * inst.par // 100_000_000} 억",
        "frgn_hldn_qty": str(int(inst.shares * f["frgn"] / 100)),
        "vi_cls_code": "N", "ovtm_vi_cls_code": "N", "last_ssts_cntg_qty": "0", "invt_caful_yn": "N",
        "mrkt_warn_cls_code": "00", "short_over_yn": "N", "sltr_yn": "N", "mang_issu_cls_code": "N",
    })
    return out


def multi_row(inst: Instrument, q: Quote) -> dict[str, str]:
    """One intstock-multprice (FHKST11300006) row."""
    change = q.price - q.prev_close
    tick = tick_size(q.price)
    seed = q.volume % 9973
    return {
        "kospi_kosdaq_cls_name": MARKET_KOR.get(inst.market, inst.market),
        "mrkt_trtm_cls_name": "정규장" if q.live else "장종료", "hour_cls_code": "0",
        "inter_shrn_iscd": inst.code, "inter_kor_isnm": inst.name,
        "inter2_prpr": str(q.price), "inter2_prdy_vrss": str(change),
        "prdy_vrss_sign": sign(change, q.price, q.upper, q.lower), "prdy_ctrt": rate(change, q.prev_close),
        "acml_vol": str(q.volume), "acml_tr_pbmn": str(q.value),
        "inter2_oprc": str(q.open), "inter2_hgpr": str(q.high), "inter2_lwpr": str(q.low),
        "inter2_mxpr": str(q.upper), "inter2_llam": str(q.lower),
        "inter2_askp": str(min(q.upper, q.price + tick)), "inter2_bidp": str(q.price),
        "seln_rsqn": str(100 + seed), "shnu_rsqn": str(100 + (seed * 7) % 9973),
        "total_askp_rsqn": str(5000 + seed * 3), "total_bidp_rsqn": str(5000 + (seed * 11) % 29989),
        "inter2_prdy_clpr": str(q.prev_close), "oprc_vrss_hgpr_rate": rate(q.high - q.open, q.open),
        "intr_antc_cntg_vrss": "0", "intr_antc_cntg_vrss_sign": "3", "intr_antc_cntg_prdy_ctrt": "0.00",
        "intr_antc_vol": "0", "inter2_sdpr": str(q.prev_close),
    }


def index_output(q: Quote, prev_volume: int, year: tuple[int, str, int, str]) -> dict[str, str]:
    """inquire-index-price (FHPUP02100000) `output`; `year` = (high, date, low, date) this year."""
    change = q.price - q.prev_close

    def vs_prev(level: int) -> tuple[str, str, str]:
        diff = level - q.prev_close
        return points(diff), sign(diff, 0, 1, -1), rate(diff, q.prev_close)

    o_diff, o_sign, o_rate = vs_prev(q.open)
    h_diff, h_sign, h_rate = vs_prev(q.high)
    l_diff, l_sign, l_rate = vs_prev(q.low)
    return {
        "bstp_nmix_prpr": points(q.price), "bstp_nmix_prdy_vrss": points(change),
        "prdy_vrss_sign": sign(change, 0, 1, -1), "bstp_nmix_prdy_ctrt": rate(change, q.prev_close),
        "acml_vol": str(q.volume), "prdy_vol": str(prev_volume), "acml_tr_pbmn": str(q.value),
        "prdy_tr_pbmn": str(prev_volume * 25 // 1000),
        "bstp_nmix_oprc": points(q.open), "prdy_nmix_vrss_nmix_oprc": o_diff, "oprc_vrss_prpr_sign": o_sign,
        "bstp_nmix_oprc_prdy_ctrt": o_rate,
        "bstp_nmix_hgpr": points(q.high), "prdy_nmix_vrss_nmix_hgpr": h_diff, "hgpr_vrss_prpr_sign": h_sign,
        "bstp_nmix_hgpr_prdy_ctrt": h_rate,
        "bstp_nmix_lwpr": points(q.low), "prdy_clpr_vrss_lwpr": l_diff, "lwpr_vrss_prpr_sign": l_sign,
        "prdy_clpr_vrss_lwpr_rate": l_rate,
        "ascn_issu_cnt": "512", "uplm_issu_cnt": "3", "stnr_issu_cnt": "71", "down_issu_cnt": "329",
        "lslm_issu_cnt": "0",
        "dryy_bstp_nmix_hgpr": points(year[0]), "dryy_hgpr_vrss_prpr_rate": rate(q.price - year[0], year[0]),
        "dryy_bstp_nmix_hgpr_date": year[1],
        "dryy_bstp_nmix_lwpr": points(year[2]), "dryy_lwpr_vrss_prpr_rate": rate(q.price - year[2], year[2]),
        "dryy_bstp_nmix_lwpr_date": year[3],
    }


def daily_rows(bars: list[Bar], inst: Instrument) -> list[dict[str, str]]:
    """inquire-daily-price (FHKST01010400) `output` rows, newest first."""
    f = fundamentals(inst)
    out = []
    for i, b in enumerate(bars):
        change = b.close - b.prev_close
        upper, lower = (10**12, 0) if inst.is_index else price_limits(b.prev_close)
        prev_volume = bars[i + 1].volume if i + 1 < len(bars) else 0
        out.append({
            "stck_bsop_date": b.day.strftime("%Y%m%d"), "stck_oprc": str(b.open), "stck_hgpr": str(b.high),
            "stck_lwpr": str(b.low), "stck_clpr": str(b.close), "acml_vol": str(b.volume),
            "prdy_vrss_vol_rate": rate(b.volume - prev_volume, prev_volume),
            "prdy_vrss": str(change), "prdy_vrss_sign": sign(change, b.close, upper, lower),
            "prdy_ctrt": rate(change, b.prev_close), "hts_frgn_ehrt": f"{f['frgn']:.2f}", "frgn_ntby_qty": "0",
            "flng_cls_code": "00", "acml_prtt_rate": "0.00",
        })
    return out


def chart_summary(inst: Instrument, q: Quote, prev: Bar) -> dict[str, str]:
    """inquire-daily-itemchartprice (FHKST03010100) `output1`."""
    f = fundamentals(inst)
    change = q.price - q.prev_close
    return {
        "prdy_vrss": str(change), "prdy_vrss_sign": sign(change, q.price, q.upper, q.lower),
        "prdy_ctrt": rate(change, q.prev_close), "stck_prdy_clpr": str(q.prev_close), "acml_vol": str(q.volume),
        "acml_tr_pbmn": str(q.value), "hts_kor_isnm": inst.name, "stck_prpr": str(q.price),
        "stck_shrn_iscd": inst.code, "prdy_vol": str(prev.volume), "stck_mxpr": str(q.upper),
        "stck_llam": str(q.lower), "stck_oprc": str(q.open), "stck_hgpr": str(q.high), "stck_lwpr": str(q.low),
        "stck_prdy_oprc": str(prev.open), "stck_prdy_hgpr": str(prev.high), "stck_prdy_lwpr": str(prev.low),
        "askp": str(min(q.upper, q.price + tick_size(q.price))), "bidp": str(q.price),
        "prdy_vrss_vol": str(q.volume - prev.volume), "vol_tnrt": rate(q.volume, inst.shares),
        "stck_fcam": str(inst.par), "lstn_stcn": str(inst.shares),
        "cpfn": str(inst.shares * inst.par // 100_000_000), "hts_avls": str(inst.shares * q.price // 100_000_000),
        "per": f"{f['per']:.2f}", "eps": f"{f['eps']:.2f}", "pbr": f"{f['pbr']:.2f}",
        "itewhol_loan_rmnd_ratem": "0.10",
    }


def chart_rows(bars: list[Bar]) -> list[dict[str, str]]:
    """inquire-daily-itemchartprice `output2` rows, newest first."""
    out = []
    for b in bars:
        change = b.close - b.prev_close
        upper, lower = price_limits(b.prev_close)
        out.append({
            "stck_bsop_date": b.day.strftime("%Y%m%d"), "stck_clpr": str(b.close), "stck_oprc": str(b.open),
            "stck_hgpr": str(b.high), "stck_lwpr": str(b.low), "acml_vol": str(b.volume),
            "acml_tr_pbmn": str(b.value), "flng_cls_code": "00", "prtt_rate": "0.00", "mod_yn": "N",
            "prdy_vrss_sign": sign(change, b.close, upper, lower), "prdy_vrss": str(change),
            "revl_issu_reas": "",
        })
    return out


def stock_info(inst: Instrument, q: Quote, listed: str) -> dict[str, str]:
    """search-stock-info (CTPF1002R) `output`."""
    kospi = inst.market == "KOSPI"
    return {
        "pdno": inst.code, "prdt_type_cd": "300", "mket_id_cd": MARKET_IDS.get(inst.market, "STK"),
        "scty_grp_id_cd": inst.group,
        "excg_dvsn_cd": "02" if kospi else "03", "setl_mmdd": "1231", "lstg_stqt": str(inst.shares),
        "lstg_cptl_amt": "0", "cpta": str(inst.shares * inst.par), "papr": f"{inst.par:.2f}",
        "issu_pric": f"{inst.par:.2f}", "kospi200_item_yn": "Y" if inst.kospi200 else "N",
        "scts_mket_lstg_dt": listed if kospi else "", "scts_mket_lstg_abol_dt": "",
        "kosdaq_mket_lstg_dt": "" if kospi else listed, "kosdaq_mket_lstg_abol_dt": "",
        "frbd_mket_lstg_dt": "", "frbd_mket_lstg_abol_dt": "", "reits_kind_cd": "", "etf_dvsn_cd": "",
        "oilf_fund_yn": "N", "idx_bztp_lcls_cd": "", "idx_bztp_mcls_cd": "", "idx_bztp_scls_cd": "",
        "idx_bztp_lcls_cd_name": "시가총액규모대" if kospi else "KOSDAQ", "idx_bztp_mcls_cd_name": inst.sector,
        "idx_bztp_scls_cd_name": inst.sector, "stck_kind_cd": "101", "mfnd_opng_dt": "", "mfnd_end_dt": "",
        "dpsi_erlm_cncl_dt": "", "etf_cu_qty": "0", "prdt_name": inst.name, "prdt_name120": inst.name,
        "prdt_abrv_name": inst.name, "std_pdno": isin(inst.code), "prdt_eng_name": inst.eng_name,
        "prdt_eng_name120": inst.eng_name, "prdt_eng_abrv_name": inst.eng_name, "dpsi_aptm_erlm_yn": "Y",
        "etf_txtn_type_cd": "", "etf_type_cd": "", "lstg_abol_dt": "", "nwst_odst_dvsn_cd": "",
        "sbst_pric": str(q.prev_close * 7 // 10), "thco_sbst_pric": str(q.prev_close * 7 // 10),
        "thco_sbst_pric_chng_dt": "", "tr_stop_yn": "Y" if inst.halted else "N",
        "admn_item_yn": "Y" if inst.managed else "N",
        "thdt_clpr": str(q.price), "bfdy_clpr": str(q.prev_close), "clpr_chng_dt": q.day.strftime("%Y%m%d"),
        "std_idst_clsf_cd": "", "std_idst_clsf_cd_name": inst.sector, "ocr_no": "", "crfd_item_yn": "N",
        "elec_scty_yn": "Y", "issu_istt_cd": "", "etf_chas_erng_rt_dbnb": "0", "etf_etn_ivst_heed_item_yn": "N",
        "stln_int_rt_dvsn_cd": "", "frnr_psnl_lmt_rt": "0.00", "lstg_rqsr_issu_istt_cd": "",
        "lstg_rqsr_item_cd": "", "trst_istt_issu_istt_cd": "", "cptt_trad_tr_psbl_yn": "Y", "nxt_tr_stop_yn": "N",
    }


def product_info(inst: Instrument) -> dict[str, str]:
    """CTPF1604R output (official chk_search_info.py fields plus the names python-kis reads)."""
    group = {"EF": "ETF", "EN": "ETN"}.get(inst.group, "주권")
    return {
        "pdno": inst.code, "prdt_type_cd": "300", "prdt_name": inst.name, "prdt_name120": inst.name,
        "prdt_abrv_name": inst.name, "prdt_eng_name": inst.eng_name, "prdt_eng_name120": inst.eng_name,
        "prdt_eng_abrv_name": inst.eng_name, "std_pdno": isin(inst.code), "shtn_pdno": inst.code,
        "prdt_sale_stat_cd": "", "prdt_risk_grad_cd": "", "prdt_clsf_cd": "101210", "prdt_clsf_name": group,
        "sale_strt_dt": "", "sale_end_dt": "", "wrap_asst_type_cd": "", "ivst_prdt_type_cd": "",
        "ivst_prdt_type_cd_name": "", "frst_erlm_dt": inst.listed.strftime("%Y%m%d"),
    }


MARKET_IDS = {"KOSPI": "STK", "KOSDAQ": "KSQ", "KONEX": "KNX"}


def isin(code: str) -> str:
    """KRX ISIN of a common share: KR7 + code + 00 + Luhn check digit over the letters-as-numbers."""
    body = f"KR7{code}00"
    digits = "".join(str(int(c, 36)) for c in body)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)
