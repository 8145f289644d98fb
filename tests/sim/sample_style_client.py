"""A small KIS client that reads answers the way KIS's official sample client does (our own code).

What it copies from the sample's behaviour, because that is what breaks against a server that is not KIS:
- requests with `Content-Type: application/json`, `Accept: text/plain`, `charset: UTF-8`, a User-Agent, and
  `custtype: P` and `tr_cont` on every call; the token and the order body go as `data=json.dumps(...)`;
- a T/J/C TR id becomes V… on paper; F/H ids are sent as they are;
- any HTTP status other than 200 is an error object (status code and text), whatever the body says;
- on 200, EVERY response header whose name is all lower case becomes a field of a namedtuple (so such
  names must be identifiers: `content-type` would raise), and the body's keys become a namedtuple too;
- success is `body.rt_cd == "0"`; the next page is asked for when the response header `tr_cont` is
  M or F, with request header `tr_cont: N` and the CTX_AREA keys from the body;
- the token's expiry is read from `access_token_token_expired` as "%Y-%m-%d %H:%M:%S".
"""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

Q = "/uapi/domestic-stock/v1/quotations/"
T = "/uapi/domestic-stock/v1/trading/"


class Answer:
    def __init__(self, resp: requests.Response) -> None:
        self.status = resp.status_code
        fields = {k: resp.headers.get(k) for k in resp.headers if k.islower()}
        self.header = namedtuple("header", fields.keys())(**fields)  # raises on a non-identifier name
        payload = resp.json()
        self.body = namedtuple("body", payload.keys())(**payload)

    def ok(self) -> bool:
        return getattr(self.body, "rt_cd", None) == "0"


class Failure:
    def __init__(self, status: int, text: str) -> None:
        self.status, self.text = status, text

    def ok(self) -> bool:
        return False


class SampleStyleClient:
    def __init__(self, base_url: str, app_key: str, app_secret: str, *, paper: bool,
                 pause: Callable[[], None] = lambda: None) -> None:
        self.base, self.paper, self.pause = base_url, paper, pause
        self.app_key, self.app_secret = app_key, app_secret
        self.headers = {"Content-Type": "application/json", "Accept": "text/plain", "charset": "UTF-8",
                        "User-Agent": "sample-style-client"}
        self.token_expires: datetime | None = None

    def auth(self) -> None:
        body = {"grant_type": "client_credentials", "appkey": self.app_key, "appsecret": self.app_secret}
        res = requests.post(self.base + "/oauth2/tokenP", data=json.dumps(body), headers=dict(self.headers),
                            timeout=5)
        assert res.status_code == 200, res.text
        tok = namedtuple("res", res.json().keys())(**res.json())
        self.token_expires = datetime.strptime(tok.access_token_token_expired, "%Y-%m-%d %H:%M:%S")
        self.headers.update(authorization=f"Bearer {tok.access_token}", appkey=self.app_key,
                            appsecret=self.app_secret)

    def fetch(self, path: str, tr_id: str, tr_cont: str, params: dict[str, Any], post: bool = False,
              extra: dict[str, str] | None = None) -> Answer | Failure:
        self.pause()
        if tr_id[0] in ("T", "J", "C") and self.paper:
            tr_id = "V" + tr_id[1:]
        headers = {**self.headers, "tr_id": tr_id, "custtype": "P", "tr_cont": tr_cont, **(extra or {})}
        if post:
            res = requests.post(self.base + path, headers=headers, data=json.dumps(params), timeout=5)
        else:
            res = requests.get(self.base + path, headers=headers, params=params, timeout=5)
        if res.status_code == 200:
            return Answer(res)
        return Failure(res.status_code, res.text)

    def hashkey(self, params: dict[str, Any]) -> str:
        self.pause()  # a REST call like any other: it counts in the rate window
        res = requests.post(self.base + "/uapi/hashkey", data=json.dumps(params), headers=dict(self.headers),
                            timeout=5)
        assert res.status_code == 200, res.text
        return namedtuple("res", res.json().keys())(**res.json()).HASH

    # ---- the eight calls of the issue ---------------------------------------------------------------
    def inquire_price(self, code: str) -> Answer | Failure:
        return self.fetch(Q + "inquire-price", "FHKST01010100", "",
                          {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": code})

    def intstock_multprice(self, codes: list[str]) -> Answer | Failure:
        params: dict[str, str] = {}
        for i, code in enumerate(codes, 1):
            params[f"FID_COND_MRKT_DIV_CODE_{i}"] = "J"
            params[f"FID_INPUT_ISCD_{i}"] = code
        return self.fetch(Q + "intstock-multprice", "FHKST11300006", "", params)

    def inquire_daily_itemchartprice(self, code: str, start: str, end: str) -> Answer | Failure:
        return self.fetch(Q + "inquire-daily-itemchartprice", "FHKST03010100", "",
                          {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": code, "FID_INPUT_DATE_1": start,
                           "FID_INPUT_DATE_2": end, "FID_PERIOD_DIV_CODE": "D", "FID_ORG_ADJ_PRC": "0"})

    def inquire_daily_price(self, code: str) -> Answer | Failure:
        return self.fetch(Q + "inquire-daily-price", "FHKST01010400", "",
                          {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": code, "FID_PERIOD_DIV_CODE": "D",
                           "FID_ORG_ADJ_PRC": "1"})

    def inquire_index_price(self, code: str) -> list[Answer | Failure]:
        """Follows tr_cont like the sample (it pages while the header says M)."""
        pages: list[Answer | Failure] = []
        tr_cont = ""
        for _ in range(10):
            res = self.fetch(Q + "inquire-index-price", "FHPUP02100000", tr_cont,
                             {"FID_COND_MRKT_DIV_CODE": "U", "FID_INPUT_ISCD": code})
            pages.append(res)
            if not isinstance(res, Answer) or not res.ok() or res.header.tr_cont != "M":
                break
            tr_cont = "N"
        return pages

    def search_stock_info(self, code: str) -> list[Answer | Failure]:
        pages: list[Answer | Failure] = []
        tr_cont = ""
        for _ in range(10):
            res = self.fetch(Q + "search-stock-info", "CTPF1002R", tr_cont, {"PRDT_TYPE_CD": "300", "PDNO": code})
            pages.append(res)
            if not isinstance(res, Answer) or not res.ok() or res.header.tr_cont != "M":
                break
            tr_cont = "N"
        return pages

    def inquire_balance(self, cano: str, product: str) -> list[Answer | Failure]:
        pages: list[Answer | Failure] = []
        fk, nk, tr_cont = "", "", ""
        for _ in range(10):
            res = self.fetch(T + "inquire-balance", "TTTC8434R", tr_cont,
                             {"CANO": cano, "ACNT_PRDT_CD": product, "AFHR_FLPR_YN": "N", "OFL_YN": "",
                              "INQR_DVSN": "01", "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N",
                              "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00", "CTX_AREA_FK100": fk,
                              "CTX_AREA_NK100": nk})
            pages.append(res)
            if not isinstance(res, Answer) or not res.ok() or res.header.tr_cont not in ("M", "F"):
                break
            fk, nk, tr_cont = res.body.ctx_area_fk100, res.body.ctx_area_nk100, "N"
        return pages

    def order_cash(self, side: str, cano: str, product: str, code: str, qty: int, division: str,
                   price: int, *, with_hashkey: bool = False) -> Answer | Failure:
        tr_id = "TTTC0012U" if side == "buy" else "TTTC0011U"
        params = {"CANO": cano, "ACNT_PRDT_CD": product, "PDNO": code, "ORD_DVSN": division, "ORD_QTY": str(qty),
                  "ORD_UNPR": str(price), "EXCG_ID_DVSN_CD": "KRX", "SLL_TYPE": "", "CNDT_PRIC": ""}
        extra = {"hashkey": self.hashkey(params)} if with_hashkey else None
        return self.fetch(T + "order-cash", tr_id, "", params, post=True, extra=extra)
