"""The KIS REST surface the simulator serves: paths, methods, TR ids, and which TRs exist on paper."""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_PATH = "/oauth2/tokenP"
REVOKE_PATH = "/oauth2/revokeP"
APPROVAL_PATH = "/oauth2/Approval"
HASHKEY_PATH = "/uapi/hashkey"
OAUTH_PATHS = frozenset({TOKEN_PATH, REVOKE_PATH, APPROVAL_PATH})

# Not offered on the paper host (kis-openapi.md §4.9, §4.4b); the simulator serves FHKST11300006,
# FHPUP02100000 and CTPF1002R on the real host. README.md has the whole paper/real matrix with sources.
REAL_ONLY_TRS = frozenset({"FHKST11300006", "FHPUP02100000", "CTPF1002R", "CTPF1604R", "CTCA0903R"})
# Real-only quotation TRs the paper host answers as an unknown service (MCA00124) rather than with
# "모의투자 TR 이 아닙니다." (which KIS is seen giving for T/J/C TR ids).
NO_PAPER_SERVICE = frozenset({"FHPUP02100000"})
MASTER_PATH = "/common/master/"  # KIS's master-file location has the files under this path


@dataclass(frozen=True)
class Route:
    method: str
    tr_ids: frozenset[str]  # real-environment ids; paper twins are derived
    handler: str
    ledger: bool = False  # account TRs: also under the ledger TPS (EGW00215)


_Q = "/uapi/domestic-stock/v1/quotations/"
_T = "/uapi/domestic-stock/v1/trading/"
ROUTES: dict[str, Route] = {
    _Q + "inquire-price": Route("GET", frozenset({"FHKST01010100"}), "inquire_price"),
    _Q + "intstock-multprice": Route("GET", frozenset({"FHKST11300006"}), "multi_price"),
    _Q + "inquire-index-price": Route("GET", frozenset({"FHPUP02100000"}), "index_price"),
    _Q + "inquire-daily-price": Route("GET", frozenset({"FHKST01010400"}), "daily_price"),
    _Q + "inquire-daily-itemchartprice": Route("GET", frozenset({"FHKST03010100"}), "period_chart"),
    _Q + "search-stock-info": Route("GET", frozenset({"CTPF1002R"}), "stock_info"),
    _Q + "search-info": Route("GET", frozenset({"CTPF1604R"}), "product_info"),
    _T + "order-cash": Route("POST", frozenset({"TTTC0012U", "TTTC0011U", "TTTC0802U", "TTTC0801U"}), "order",
                             ledger=True),
    _T + "inquire-balance": Route("GET", frozenset({"TTTC8434R"}), "balance", ledger=True),
}


def paper_twin(tr_id: str) -> str:
    """Real T/J/C TR ids have a V-prefixed paper twin; F/H quotation ids are the same on both hosts."""
    return "V" + tr_id[1:] if tr_id[:1] in ("T", "J", "C") else tr_id


def accepted_tr_ids(route: Route, env: str) -> frozenset[str]:
    if env == "real":
        return route.tr_ids
    return frozenset(paper_twin(t) for t in route.tr_ids if t not in REAL_ONLY_TRS)


def refused_on_paper(tr_id: str) -> bool:
    """The paper host answers "모의투자 TR 이 아닙니다." to real-only TRs and to real (T/J/C) twins."""
    return tr_id in REAL_ONLY_TRS or tr_id[:1] in ("T", "J", "C")
