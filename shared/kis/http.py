"""One pooled HTTP session to KIS: headers, timeouts, envelope parsing and error mapping.

KIS reports failures three ways: HTTP 200 with rt_cd != "0" (business), HTTP 500 with the same envelope
(gateway EGW codes), and HTTP 403 with an OAuth body (`error_code`/`error_description`). The body is
parsed on every status so the code, not the status, decides the exception class.
Nothing here retries: the service layer owns retry policy, and an order POST must never be resent.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.config import Settings
from shared.kis.errors import (
    CODE_CLASSES,
    PAPER_TR_REFUSED_MSG,
    KISAuthError,
    KISBusinessError,
    KISConfigError,
    KISError,
    KISRateLimitError,
    KISServerError,
    KISTimeoutError,
    KISTransportError,
    mark_not_sent,
)
from shared.kis.fields import KST
from shared.kis.models import CallRecord
from shared.lazy import lazy_module

if TYPE_CHECKING:
    import requests
else:
    # Imported on the first KIS call (or when a session is made): functions that never call KIS never load it.
    requests = lazy_module("requests")

log = logging.getLogger("shared.kis")

Gate = Callable[[str, str], None]
Observer = Callable[[CallRecord], None]
# Not offered to paper keys (kis-openapi.md §4.9; FHPUP02100000: "모의투자 미지원" on its portal page and
# blank in the paper column of the official repository's legacy/README.md). Paper keys are refused here,
# before any KIS call.
REAL_ONLY_TRS = frozenset({"FHKST11300006", "FHPUP02100000", "CTPF1002R", "CTPF1604R", "CTCA0903R"})
# Query-server codes that mean "this request can never work here", beyond errors.CODE_CLASSES:
# OPSQ0002 없는 서비스 코드 (unknown TR); MCA00124 해당 서비스를 찾을수 없습니다 (the paper host on a service it
# does not offer, official repository issue #17) — a configuration error whatever the HTTP status.
EXTRA_CODE_CLASSES: dict[str, type[KISError]] = {"OPSQ0002": KISConfigError, "MCA00124": KISConfigError}
# Account-ledger TRs (orders, balance): KIS limits them per account on top of the app-key limit (EGW00215).
LEDGER_TRS = frozenset({"TTTC0012U", "TTTC0011U", "TTTC0802U", "TTTC0801U", "TTTC8434R"})
MORE_PAGES = frozenset({"F", "M"})  # response tr_cont: F/M more data, D/E last page
_PAPER_REFUSED = "".join(PAPER_TR_REFUSED_MSG.split())


@dataclass(frozen=True)
class KISResponse:
    status: int
    body: dict[str, Any]
    tr_cont: str  # response header; "M"/"F" means another page follows
    received_at: datetime

    @property
    def has_more(self) -> bool:
        return self.tr_cont in MORE_PAGES


def is_ledger_tr(tr_id: str) -> bool:
    """Orders and balance, real or paper (V-prefixed) ids."""
    return ("T" + tr_id[1:] if tr_id.startswith("V") else tr_id) in LEDGER_TRS


def paper_tr_id(tr_id: str) -> str:
    """Paper twins of real T/J/C TRs start with V (TTTC8434R -> VTTC8434R); F/H quotation TRs are shared.
    Real-only TRs have no twin (KISHttp refuses them on paper before calling)."""
    if tr_id in REAL_ONLY_TRS:
        return tr_id
    return "V" + tr_id[1:] if tr_id[:1] in ("T", "J", "C") else tr_id


class PaperNotOfferedError(KISConfigError):
    """A real-only TR asked for with paper keys: refused without calling KIS."""

    def __init__(self, tr_id: str) -> None:
        super().__init__(f"{tr_id} is not offered to paper-trading keys (KIS serves it on real keys only)",
                         msg_cd="PAPER_NOT_OFFERED", tr_id=tr_id)


def classify(status: int, body: dict[str, Any] | None, tr_id: str = "") -> KISError | None:
    """The exception an answer stands for, or None when it is a success."""
    if body is None:  # an HTML error page or a cut-off answer: a 200 here is a server fault too
        return _by_status(status, "", "unreadable response body", tr_id)
    if "error_code" in body or "error_description" in body:  # OAuth endpoints use their own shape
        code, msg = _text(body.get("error_code")), _text(body.get("error_description"))
        known = CODE_CLASSES.get(code)
        if known:
            return known(msg, msg_cd=code, http_status=status, tr_id=tr_id)
        return _by_status(status if status != 200 else 403, code, msg, tr_id)
    msg_cd, msg1 = _text(body.get("msg_cd")), _text(body.get("msg1"))
    rt_cd = body.get("rt_cd")
    if rt_cd is None:  # token, revoke and hashkey answers carry no envelope
        return None if 200 <= status < 300 else _by_status(status, msg_cd, msg1 or _text(body.get("message")), tr_id)
    if _text(rt_cd) == "0":
        return None if 200 <= status < 300 else _by_status(status, msg_cd, msg1, tr_id)
    known = CODE_CLASSES.get(msg_cd) or EXTRA_CODE_CLASSES.get(msg_cd)
    if known:  # EGW00123 has been seen with HTTP 200 and 500: the code decides
        return known(msg1, msg_cd=msg_cd, http_status=status, tr_id=tr_id)
    if _PAPER_REFUSED in "".join(msg1.split()):
        return KISConfigError(msg1, msg_cd=msg_cd, http_status=status, tr_id=tr_id)
    if status == 200:
        return KISBusinessError(msg1, msg_cd=msg_cd, http_status=status, tr_id=tr_id)
    return _by_status(status, msg_cd, msg1, tr_id)


def _by_status(status: int, msg_cd: str, msg1: str, tr_id: str) -> KISError:
    kw: dict[str, Any] = {"msg_cd": msg_cd, "http_status": status, "tr_id": tr_id}
    if status == 429:
        return KISRateLimitError(msg1, **kw)
    if status >= 500 or status < 400:  # blank-code 500s are reported to pass after a cold start
        return KISServerError(msg1, **kw)
    if status == 401:
        return KISAuthError(msg1, **kw)
    return KISConfigError(msg1, **kw)  # other 4xx: wrong URL, key or request shape; retrying will not help


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


class KISHttp:
    """Sends one request and turns the answer into a `KISResponse` or a `KISError`."""

    def __init__(self, settings: Settings, *, session: requests.Session | None = None, gate: Gate | None = None,
                 observer: Observer | None = None, now: Callable[[], datetime] | None = None) -> None:
        self.base_url = settings.kis_base_url.rstrip("/")
        self.timeout_s = settings.kis_http_timeout_s
        self.paper = settings.paper
        self._app_key = settings.kis_app_key
        self._app_secret = settings.kis_app_secret
        self._session_given = session  # None: a pooled session of our own, made on the first call
        self._session_made: requests.Session | None = None
        self._gate = gate
        self._observer = observer
        self._now = now or (lambda: datetime.now(KST))
        self.token: Callable[[], str] = _no_token
        self.on_token_rejected: Callable[[], None] = lambda: None

    @property
    def _session(self) -> requests.Session:
        session = self._session_given if self._session_given is not None else self._session_made
        if session is None:
            with _SESSION_LOCK:
                session = self._session_made
                if session is None:
                    session = self._session_made = _pooled_session()
        return session

    def prepare(self) -> None:
        """Make the session now (imports requests), so the first call does not."""
        self._session  # noqa: B018

    def close(self) -> None:
        session = self._session_given if self._session_given is not None else self._session_made
        if session is not None:
            session.close()

    # ---- the three kinds of call ---------------------------------------------------------
    def get(self, path: str, tr_id: str, call_class: str, params: Mapping[str, str], *,
            tr_cont: str = "") -> KISResponse:
        return self._rest("GET", path, tr_id, call_class, params=params, tr_cont=tr_cont)

    def post(self, path: str, tr_id: str, call_class: str, body: Mapping[str, Any]) -> KISResponse:
        return self._rest("POST", path, tr_id, call_class, body=body)

    def post_with_app_key(self, path: str, name: str, call_class: str, body: Mapping[str, Any]) -> KISResponse:
        """Hashkey: app key headers, no token, but still a rate-limited REST call (gated)."""
        if self._gate:
            try:
                self._gate(call_class, name)
            except Exception as exc:
                mark_not_sent(exc)
                raise
        headers = {"appkey": self._app_key.get(), "appsecret": self._app_secret.get()}
        return self._exchange("POST", path, name, call_class, headers=headers, body=body)

    def oauth(self, path: str, name: str, body: Mapping[str, Any]) -> KISResponse:
        """Token endpoints: not gated (the token guard limits them), no auth headers."""
        return self._exchange("POST", path, name, "auth", headers={}, body=body)

    # ---- internals -------------------------------------------------------------------------
    def _rest(self, method: str, path: str, tr_id: str, call_class: str, *, params: Mapping[str, str] | None = None,
              body: Mapping[str, Any] | None = None, tr_cont: str = "") -> KISResponse:
        if self.paper:
            if tr_id in REAL_ONLY_TRS:
                raise PaperNotOfferedError(tr_id)  # KIS would refuse it: no token, no rate slot, no call
            tr_id = paper_tr_id(tr_id)
        try:
            token = self.token()  # first: a token issue must not sit between the rate grant and the call
            if self._gate:
                self._gate(call_class, tr_id)
        except Exception as exc:
            # Nothing has left yet (no token, no rate grant, Redis or configuration trouble): say so, so an
            # order stopped here is "not sent" rather than "unknown".
            mark_not_sent(exc)
            raise
        headers = {
            "authorization": f"Bearer {token}",
            "appkey": self._app_key.get(),
            "appsecret": self._app_secret.get(),
            "tr_id": tr_id,
            "tr_cont": tr_cont,
            "custtype": "P",
        }
        try:
            return self._exchange(method, path, tr_id, call_class, headers=headers, params=params, body=body)
        except KISAuthError:
            self.on_token_rejected()
            raise

    def _exchange(self, method: str, path: str, tr_id: str, call_class: str, *, headers: dict[str, str],
                  params: Mapping[str, str] | None = None, body: Mapping[str, Any] | None = None) -> KISResponse:
        headers = {"content-type": "application/json; charset=utf-8", "accept": "application/json", **headers}
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        started = time.monotonic()
        try:
            resp = self._session.request(method, self.base_url + path, headers=headers, params=params, data=data,
                                         timeout=self.timeout_s, allow_redirects=False)
        except requests.RequestException as exc:
            transport_error = _transport_error(exc, tr_id, self.timeout_s)
            self._record(CallRecord(tr_id, call_class, None, "", time.monotonic() - started, False))
            # `from None`: requests' messages carry the URL, whose query may hold the account number.
            raise transport_error from None
        duration = time.monotonic() - started
        payload = _json_object(resp.content)
        error = classify(resp.status_code, payload, tr_id)
        msg_cd = _text((payload or {}).get("msg_cd") or (payload or {}).get("error_code"))
        self._record(CallRecord(tr_id, call_class, resp.status_code, msg_cd, duration, error is None))
        log.debug("kis %s %s -> %s %s in %.3fs", tr_id, call_class, resp.status_code, msg_cd, duration)
        if error is not None:
            raise error
        return KISResponse(resp.status_code, payload or {}, resp.headers.get("tr_cont", "").strip(), self._now())

    def _record(self, record: CallRecord) -> None:
        if self._observer is None:
            return
        try:
            self._observer(record)
        except Exception:  # metrics must never break a KIS call
            log.exception("KIS call observer failed")


class _RedactAccountQuery(logging.Filter):
    """urllib3 logs request lines (query included) at DEBUG; balance queries carry the account number."""

    _pattern = re.compile(r"((?:CANO|ACNT_PRDT_CD|CTX_AREA_FK100|CTX_AREA_NK100)=)[^&\s\"]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._pattern.sub(r"\1***", record.msg)
        return True


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactAccountQuery) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_RedactAccountQuery())


_SESSION_LOCK = threading.Lock()


def _pooled_session() -> requests.Session:
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    # max_retries=0: urllib3 must not resend anything on its own (orders must never go twice).
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # no proxy or netrc surprises between us and KIS
    return session


def _json_object(content: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _transport_error(exc: requests.RequestException, tr_id: str, timeout_s: float) -> KISTransportError:
    kind = type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout):  # TCP never connected: the request did not leave
        return KISTimeoutError(f"connect timeout after {timeout_s:g}s", sent=False, tr_id=tr_id)
    if isinstance(exc, requests.Timeout):  # sent, no answer: for a POST the outcome is unknown
        return KISTimeoutError(f"no answer within {timeout_s:g}s", sent=True, tr_id=tr_id)
    if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
        return KISTransportError(f"connection failed ({kind})", sent=False, tr_id=tr_id)
    # Reset or closed mid-exchange: KIS may have received the request.
    return KISTransportError(f"connection lost ({kind})", sent=True, tr_id=tr_id)


def _never_connected(exc: BaseException) -> bool:
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, (NewConnectionError, NameResolutionError, ConnectionRefusedError)):
            return True
        todo.extend([getattr(cur, "reason", None), cur.__cause__, cur.__context__,
                     *(a for a in cur.args if isinstance(a, BaseException))])
    return False


def _no_token() -> str:
    raise KISConfigError("no access token source configured")
