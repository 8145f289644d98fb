"""The ports the market service talks to; their adapters live in `shared/cloud` and import this module.

- `DrainTrigger`: how a request that found cache misses asks for a drain (Cloud Tasks, or in-process).
- `TokenStore`: where the KIS access token is kept between processes (Secret Manager, Redis, memory),
  holding `StoredToken` records. The token never appears in reprs, logs or exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Protocol


class DrainTriggerError(RuntimeError):
    """The trigger could not enqueue a drain (queue missing, service unreachable); pending work stays."""


class DrainTrigger(Protocol):
    def request_drain(self, kind: str, call_class: str, slot: int) -> bool:
        """Ask for a drain of `kind` in `call_class` for time slot `slot`; True if this call created it."""
        ...


@dataclass(frozen=True)
class StoredToken:
    access_token: str = field(repr=False)
    expires_at: float  # epoch seconds, from KIS's access_token_token_expired (not "issued + 24 h")
    issued_at: float

    def __repr__(self) -> str:
        return f"StoredToken(access_token='***', expires_at={self.expires_at!r}, issued_at={self.issued_at!r})"

    __str__ = __repr__

    def expires_in(self, now: float) -> float:
        return self.expires_at - now

    def usable(self, now: float, margin_s: float = 0.0) -> bool:
        """True while the token stays valid for at least `margin_s` more seconds."""
        return bool(self.access_token) and self.expires_at - now > margin_s

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "expires_at": self.expires_at,
                           "issued_at": self.issued_at}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> StoredToken:
        """Parse a stored record; the error never quotes the record (it holds the token)."""
        try:
            data = json.loads(raw)
            return cls(access_token=str(data["access_token"]), expires_at=float(data["expires_at"]),
                       issued_at=float(data["issued_at"]))
        except (ValueError, KeyError, TypeError):
            raise ValueError("stored token record is not valid JSON with access_token, expires_at, issued_at") \
                from None


class TokenStore(Protocol):
    def read(self) -> StoredToken | None: ...

    def write(self, token: StoredToken) -> None: ...
