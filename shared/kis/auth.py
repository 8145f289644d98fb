"""OAuth token issue/revoke and the order hashkey."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.config import Secret
from shared.kis.errors import KISServerError
from shared.kis.fields import text, to_int, to_kst_datetime
from shared.kis.http import KISHttp
from shared.kis.models import AccessToken

TOKEN_PATH = "/oauth2/tokenP"
REVOKE_PATH = "/oauth2/revokeP"
HASHKEY_PATH = "/uapi/hashkey"


def issue_token(http: KISHttp, app_key: Secret, app_secret: Secret) -> AccessToken:
    """One tokenP call. KIS allows one per minute per app key and answers a re-issue within 6 h with the
    same token and the same expiry, so the expiry is read from the answer, never computed from now."""
    body = {"grant_type": "client_credentials", "appkey": app_key.get(), "appsecret": app_secret.get()}
    resp = http.oauth(TOKEN_PATH, "tokenP", body)
    value = text(resp.body.get("access_token"))
    if not value:
        raise KISServerError("token answer without access_token", http_status=resp.status, tr_id="tokenP")
    expires_at = to_kst_datetime(resp.body.get("access_token_token_expired"))
    if expires_at is None:
        # Only when KIS leaves the field out: expires_in has no reference time, so it is a last resort.
        seconds = to_int(resp.body.get("expires_in"))
        if seconds <= 0:
            raise KISServerError("token answer without expiry", http_status=resp.status, tr_id="tokenP")
        expires_at = resp.received_at + timedelta(seconds=seconds)
    return AccessToken(value=value, expires_at=expires_at, issued_at=resp.received_at,
                       token_type=text(resp.body.get("token_type")) or "Bearer")


def revoke_token(http: KISHttp, app_key: Secret, app_secret: Secret, token: str) -> None:
    body = {"appkey": app_key.get(), "appsecret": app_secret.get(), "token": token}
    resp = http.oauth(REVOKE_PATH, "revokeP", body)
    # revokeP answers {"code": 200, "message": ...}; `code` is an int despite the docs saying string.
    code = text(resp.body.get("code"))
    if code and code != "200":
        raise KISServerError(text(resp.body.get("message")) or "token revoke refused", msg_cd=code,
                             http_status=resp.status, tr_id="revokeP")


def hashkey(http: KISHttp, body: dict[str, Any]) -> str:
    """Optional for KIS orders; a REST call that counts against the rate limit, hence gated as "orders"."""
    resp = http.post_with_app_key(HASHKEY_PATH, "hashkey", "orders", body)
    value = text(resp.body.get("HASH"))
    if not value:
        raise KISServerError("hashkey answer without HASH", http_status=resp.status, tr_id="hashkey")
    return value
