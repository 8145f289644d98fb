"""KIS answer shapes: the rt_cd envelope, the OAuth error shape, and every error the simulator emits.

Where KIS's exact answer is unknown the choice is written next to it; kis-openapi.md §3, §6 and §11
give the observed ones; README.md lists every choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK_QUOTE = ("MCA00000", "정상처리 되었습니다.")
OK_ORDER_REAL = ("APBK0013", "주문 전송 완료 되었습니다.")
OK_ORDER_PAPER = {"buy": ("40600000", "모의투자 매수주문이 완료 되었습니다."),
                  "sell": ("40600000", "모의투자 매도주문이 완료 되었습니다.")}

# Gateway (EGW) refusals: HTTP status, msg_cd, msg1
RATE_LIMITED = (500, "EGW00201", "초당 거래건수를 초과하였습니다.")
LEDGER_LIMITED = (500, "EGW00215", "원장에서 허용 가능한 초당 거래건수를 초과하였습니다.")
TOKEN_INVALID = (500, "EGW00121", "유효하지 않은 token 입니다.")
TOKEN_EXPIRED_MSG = ("EGW00123", "기간이 만료된 token 입니다.")  # status comes from SimConfig
NOT_BEARER = (500, "EGW00205", "credentials_type이 유효하지 않습니다.(Bearer)")
BAD_CUSTTYPE = (500, "EGW00208", "고객유형(custtype)이 유효하지 않습니다.")
APPKEY_MISSING = (403, "EGW00102", "AppKey는 필수입니다.")
APPKEY_INVALID = (403, "EGW00103", "유효하지 않은 AppKey입니다.")
SECRET_MISSING = (403, "EGW00104", "AppSecret은 필수입니다.")
SECRET_INVALID = (403, "EGW00105", "유효하지 않은 AppSecret입니다.")
PAPER_KEY_ON_REAL = (500, "EGW02004", "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다.")
REAL_KEY_ON_PAPER = (500, "EGW02004", "모의투자 도메인은 실전투자 앱키로 호출하실 수 없습니다.")  # mirrored guess
# KIS shows no msg_cd for this one; EGW00213 is listed with this text in a third-party code table.
NOT_PAPER_TR = (500, "EGW00213", "모의투자 TR 이 아닙니다.")
TOKEN_THROTTLED = (403, "EGW00133", "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)")
GRANT_MISSING = (403, "EGW00115", "권한부여 타입(grant_type)은 필수입니다.")
GRANT_UNSUPPORTED = (403, "EGW00116", "지원하지 않는 권한부여 타입(grant_type)입니다.")
NO_ROUTE = (404, "EGW00101", "유효하지 않은 요청입니다.")
BAD_OAUTH_REQUEST = (403, "EGW00101", "유효하지 않은 요청입니다.")
SERVER_ERROR = (500, "EGW00001", "일시적 오류가 발생했습니다.")
BLANK_ERROR = (500, "", "")  # observed for 15-60 s after a KIS cold start

# Query-server (OPSQ) answers: HTTP 200 with rt_cd "1"/"2", as captured from KIS
UNKNOWN_TR = ("1", "OPSQ0002", "없는 서비스 코드 입니다.")
BAD_JSON = ("1", "OPSQ9997", "JSON PARSING ERROR : invalid json format")
BAD_ACCOUNT = ("2", "OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO")
# A service the paper host does not offer (F/H quotation TRs without a paper version), as seen in the
# official repository's issue #17; the HTTP status there is not shown: the simulator answers 200.
NO_SERVICE = ("1", "MCA00124", "해당 서비스를 찾을수 없습니다.")
# More than 30 multi-quote pairs: KIS's answer is unconfirmed; the simulator refuses the whole call.
TOO_MANY_SYMBOLS = ("2", "OPSQ2002", "ERROR : INPUT INVALID_CHECK_FIELD_LENGTH")


def missing_field(name: str) -> tuple[str, str, str]:
    return ("2", "OPSQ2001", f"ERROR INPUT FIELD NOT FOUND [{name}]")


def invalid_field(name: str) -> tuple[str, str, str]:
    return ("2", "OPSQ2001", f"ERROR INVALID {name}")


# Order rejections (HTTP 200, rt_cd "7"); codes other than APBK0406 are the simulator's own choice.
ABOVE_UPPER = ("7", "APBK0406", "주문가격이 상한가를 초과합니다.")
BELOW_LOWER = ("7", "APBK0407", "주문가격이 하한가 미만입니다.")
OFF_TICK = ("7", "APBK0506", "호가단위가 맞지 않습니다.")
NO_SUCH_SYMBOL = ("7", "APBK0656", "해당종목정보가 없습니다.")
CASH_SHORT = ("7", "APBK0919", "주문가능금액을 초과 했습니다.")
HOLDING_SHORT = ("7", "APBK1234", "주문가능수량을 초과 했습니다.")


@dataclass
class Reply:
    """One HTTP answer. `drop` closes the connection without answering (timeouts, down)."""

    status: int = 200
    body: Any = field(default_factory=dict)  # a JSON object, or a list for /__admin/symbols
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    hold_s: float = 0.0  # wait this long before answering or dropping
    content_type: str = ""  # "" = JSON; set for the master files (a zip body in bytes)

    @property
    def msg_cd(self) -> str:
        if not isinstance(self.body, dict):
            return ""
        return str(self.body.get("msg_cd", self.body.get("error_code", "")))


def ok(payload: dict[str, Any], message: tuple[str, str] = OK_QUOTE) -> Reply:
    return Reply(200, {"rt_cd": "0", "msg_cd": message[0], "msg1": message[1], **payload})


def gateway_error(err: tuple[int, str, str]) -> Reply:
    status, code, msg = err
    return Reply(status, {"rt_cd": "1", "msg_cd": code, "msg1": msg})


def oauth_error(err: tuple[int, str, str]) -> Reply:
    status, code, msg = err
    return Reply(status, {"error_description": msg, "error_code": code})


def business_error(err: tuple[str, str, str]) -> Reply:
    rt_cd, code, msg = err
    return Reply(200, {"rt_cd": rt_cd, "msg_cd": code, "msg1": msg})


def token_expired(status: int) -> Reply:
    return Reply(status, {"rt_cd": "1", "msg_cd": TOKEN_EXPIRED_MSG[0], "msg1": TOKEN_EXPIRED_MSG[1]})
