"""App keys and access tokens, with KIS's per-app-key rules on an injectable clock.

- tokenP: at most one successful issue per 60 s per app key (else 403 EGW00133). Within 6 h of the
  token's issue the same token comes back with the same `access_token_token_expired`; `expires_in` is
  always 86400 (whether KIS sends the remaining time instead is unconfirmed). Older tokens stay valid
  until they expire. A refused issue does not restart the 60 s.
- Tokens carry no app key or secret (KIS's JWT puts the app key in `jti`; the simulator uses a random id
  so a logged token leaks nothing else). A token answers only for the app key it was issued to.
Callers hold the simulator's gate lock; nothing here locks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from shared.clock import Clock
from shared.sim import envelopes as E
from shared.sim.prices import KST

TOKEN_LIFETIME_S = 86_400
SAME_TOKEN_WINDOW_S = 6 * 3600
ISSUE_INTERVAL_S = 60.0


def app_label(app_key: str) -> str:
    """How an app key appears in stats: a short hash, never the key."""
    return "app-" + hashlib.sha256(app_key.encode()).hexdigest()[:8]


@dataclass
class Token:
    value: str
    app_key: str
    issued_at: float
    expires_at: float
    expired: bool = False  # forced by expire_tokens()
    revoked: bool = False

    def expiry_text(self) -> str:
        return datetime.fromtimestamp(self.expires_at, KST).strftime("%Y-%m-%d %H:%M:%S")

    def __repr__(self) -> str:
        return f"Token(app={app_label(self.app_key)}, expires={self.expiry_text()})"


class AppRegistry:
    """Which app keys may call, with which secret, on which environment."""

    def __init__(self, env: str, apps: dict[str, tuple[str, str]] | None) -> None:
        self.env = env
        self._apps = dict(apps) if apps is not None else None
        self._pinned: dict[str, str] = {}  # open mode: the first secret seen for a key

    def check(self, app_key: str, app_secret: str) -> tuple[int, str, str] | None:
        if not app_key:
            return E.APPKEY_MISSING
        if self._apps is not None:
            entry = self._apps.get(app_key)
            if entry is None:
                return E.APPKEY_INVALID
            secret, app_env = entry
            if app_env != self.env:
                return E.PAPER_KEY_ON_REAL if app_env == "paper" else E.REAL_KEY_ON_PAPER
        else:
            secret = self._pinned.get(app_key, "")
        if not app_secret:
            return E.SECRET_MISSING
        if not secret:
            self._pinned[app_key] = app_secret
        elif not secrets.compare_digest(secret, app_secret):
            return E.SECRET_INVALID
        return None

    def reset(self) -> None:
        self._pinned.clear()


class TokenBook:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tokens: dict[str, Token] = {}
        self._current: dict[str, Token] = {}  # app key -> newest token
        self._last_issue: dict[str, float] = {}

    def issue(self, app_key: str) -> tuple[Token | None, bool]:
        """(token, new) for a tokenP call; (None, False) when the 60 s rule refuses it."""
        now = self.clock.time()
        last = self._last_issue.get(app_key)
        if last is not None and now - last < ISSUE_INTERVAL_S:
            return None, False
        self._last_issue[app_key] = now
        current = self._current.get(app_key)
        if (current and not current.expired and not current.revoked and now < current.expires_at
                and now - current.issued_at < SAME_TOKEN_WINDOW_S):
            return current, False
        token = Token(_new_token_value(now), app_key, now, now + TOKEN_LIFETIME_S)
        self._tokens[token.value] = token
        self._current[app_key] = token
        return token, True

    def check(self, value: str, app_key: str) -> str | None:
        """None when the token may call for this app key, else "invalid" or "expired"."""
        token = self._tokens.get(value)
        if token is None or token.revoked or not secrets.compare_digest(token.app_key, app_key):
            return "invalid"
        if token.expired or self.clock.time() >= token.expires_at:
            return "expired"
        return None

    def revoke(self, value: str, app_key: str) -> bool:
        token = self._tokens.get(value)
        if token is None or token.app_key != app_key or token.revoked:
            return False
        token.revoked = True
        return True

    def expire_all(self) -> int:
        for token in self._tokens.values():
            token.expired = True
        return len(self._tokens)

    def reset(self) -> None:
        self._tokens.clear()
        self._current.clear()
        self._last_issue.clear()


def _new_token_value(now: float) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"typ": "JWT", "alg": "HS512"}).encode())
    payload = part(json.dumps({"sub": "token", "aud": secrets.token_hex(16), "prdt_cd": "", "iss": "unogw",
                               "exp": int(now) + TOKEN_LIFETIME_S, "iat": int(now),
                               "jti": secrets.token_hex(12)}).encode())
    return f"{header}.{payload}.{part(secrets.token_bytes(64))}"
