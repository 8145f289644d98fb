"""The ports the market service talks to; their adapters live in `shared/cloud` and import this module.

- `DrainTrigger`: how a request that found cache misses asks for a drain (Cloud Tasks, or in-process).
- `TokenStore`: where the KIS access token is kept between processes (Secret Manager, Redis, memory),
  holding `StoredToken` records. The token never appears in reprs, logs or exceptions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from shared.budget import CALL_CLASSES


class DrainTriggerError(RuntimeError):
    """The trigger could not enqueue a drain (queue missing, service unreachable); pending work stays."""


# What an in-process trigger runs: (kind, call_class, slot) -> anything (the drain's report).
DrainCallback = Callable[[str, str, int], object]
_KIND = re.compile(r"^[A-Za-z0-9_]{1,40}$")


def drain_task_id(kind: str, call_class: str, slot: int) -> str:
    """The name of `kind`'s drain request in `slot`: one per slot, whatever the trigger (a Cloud Tasks task id)."""
    if not _KIND.match(kind):
        raise ValueError(f"drain kind {kind!r} must be 1..40 letters, digits or _")
    if call_class not in CALL_CLASSES:
        raise ValueError(f"unknown call class {call_class!r}; use one of {', '.join(CALL_CLASSES)}")
    if slot < 0:
        raise ValueError("slot must be >= 0")
    return f"drain-{kind}-{slot}"


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
