"""Domain exceptions for every KIS failure. Each carries KIS's own `msg_cd` and `msg1`.

The classes drive policy elsewhere: rate-limit, server and transport errors are retried; token errors
refresh the token once; configuration errors stop loudly; business errors are answers, not failures
(the circuit breaker does not count them).
"""

from __future__ import annotations

import contextlib


class KISError(Exception):
    """Base of every KIS failure."""

    retryable = False

    def __init__(self, msg1: str = "", *, msg_cd: str = "", http_status: int | None = None, tr_id: str = "") -> None:
        self.msg_cd = msg_cd
        self.msg1 = msg1
        self.http_status = http_status
        self.tr_id = tr_id
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [p for p in (self.msg_cd, self.msg1) if p]
        where = f" [{self.tr_id}]" if self.tr_id else ""
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return (": ".join(parts) or type(self).__name__) + where + status


class KISRateLimitError(KISError):
    """EGW00201 (app key TPS) or EGW00215 (account ledger TPS)."""

    retryable = True

    @property
    def ledger(self) -> bool:
        return self.msg_cd == "EGW00215"


class KISAuthError(KISError):
    """The access token was refused."""


class KISTokenExpiredError(KISAuthError):
    """EGW00123."""


class KISTokenInvalidError(KISAuthError):
    """EGW00121."""


class KISTokenIssueThrottledError(KISError):
    """EGW00133: token issue is allowed once per 60 s per app key."""


class KISConfigError(KISError):
    """Wrong key/secret/environment (EGW00103, EGW00105, EGW02004, TR not offered on paper): fatal."""


class KISServerError(KISError):
    """5xx or a gateway error that may pass (EGW00001/2, blank msg_cd, unreadable body)."""

    retryable = True


class KISTransportError(KISError):
    """Connection refused/reset or timeout. `sent` says whether the request may have reached KIS."""

    retryable = True

    def __init__(self, msg1: str = "", *, sent: bool = False, **kw: object) -> None:
        self.sent = sent
        super().__init__(msg1, **kw)  # type: ignore[arg-type]


class KISTimeoutError(KISTransportError):
    """No answer within the client's timeout."""


class KISBusinessError(KISError):
    """KIS answered and said no (HTTP 200, rt_cd != "0"): a valid answer, never retried or counted."""


class KISUnknownSymbolError(KISBusinessError):
    """The code is not a listed symbol."""

    def __init__(self, symbol: str, msg1: str = "", **kw: object) -> None:
        self.symbol = symbol
        super().__init__(msg1 or f"unknown symbol {symbol}", **kw)  # type: ignore[arg-type]


class KISOrderRejectedError(KISBusinessError):
    """An order KIS refused (price limit, insufficient cash, market closed...)."""


NOT_SENT_ATTR = "kis_not_sent"


def mark_not_sent(exc: BaseException) -> BaseException:
    """Tag a failure that happened before a request to KIS was put on the wire (token store, limiter,
    Redis, configuration): KIS cannot have acted on it, so an order it stopped was not sent."""
    # An exception type without a __dict__ stays untagged (treated as maybe sent).
    with contextlib.suppress(AttributeError):
        setattr(exc, NOT_SENT_ATTR, True)
    return exc


def was_not_sent(exc: BaseException) -> bool:
    return bool(getattr(exc, NOT_SENT_ATTR, False))


# Codes whose class is known in advance; anything else is classified by status and rt_cd.
CODE_CLASSES: dict[str, type[KISError]] = {
    "EGW00201": KISRateLimitError,
    "EGW00215": KISRateLimitError,
    "EGW00123": KISTokenExpiredError,
    "EGW00121": KISTokenInvalidError,
    "EGW00133": KISTokenIssueThrottledError,
    "EGW00103": KISConfigError,
    "EGW00105": KISConfigError,
    "EGW02004": KISConfigError,
    "EGW00206": KISConfigError,
    "EGW00208": KISConfigError,
    "EGW00001": KISServerError,
    "EGW00002": KISServerError,
    "EGW00202": KISServerError,
    "EGW00203": KISServerError,
}
PAPER_TR_REFUSED_MSG = "모의투자 TR 이 아닙니다."
