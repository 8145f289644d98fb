"""The one KIS access token of an app key, shared by every instance.

Readers keep the token in memory until shortly before it expires and otherwise read the token store
(Secret Manager in the cloud). Only the writer (the refresh function; every part of a one-process gateway)
issues and stores a token: a reader (`writer=False`) that finds none usable, or whose token KIS rejected,
asks for a refresh through `request_refresh` (the refresh function's queue) and raises
`TokenUnavailableError` meanwhile, so callers answer from cache or 503 `token_unavailable`.
Refreshing is single-flight in the process (a lock; waiters take the token the first one stored) and across
the fleet (a Redis lock), with a separate 60-second guard so the gateway never asks KIS for a token more
than once a minute (KIS answers EGW00133 and may lock the key out). Expiry is KIS's
`access_token_token_expired`, never "now + 24 h": a token re-issued within 6 h keeps its first expiry.
The writer also publishes the token's times (never the token) in Redis, which /health, /stats and the
dashboard read without any access to the secret.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any, cast

import redis

from shared.clock import SYSTEM_CLOCK, Clock
from shared.config import TOKEN_ISSUE_INTERVAL_S
from shared.kis.errors import KISError, KISTokenIssueThrottledError
from shared.kis.models import AccessToken
from shared.market import redis_keys
from shared.market.ports import StoredToken, TokenStore

log = logging.getLogger(__name__)

Alert = Callable[[str, dict[str, Any]], object]

# A reader stops using a token this long before its expiry even if no refresh has happened yet.
READER_SAFETY_S = 60.0


def token_fingerprint(token: str) -> str:
    """A short, non-reversible id of a token, safe to put in a task body or a log line."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def rejected_fingerprint(reason: str) -> str | None:
    """The fingerprint a reader's refresh request names, if any."""
    m = re.search(r"\(fp=([0-9a-f]{16})\)", reason)
    return m.group(1) if m else None


class TokenUnavailableError(RuntimeError):
    """No usable token: KIS calls stop until a refresh succeeds. A configuration/availability error of the
    gateway, not a sign of KIS trouble: the breaker does not count it."""

    code = "token_unavailable"


class TokenManager:
    def __init__(
        self,
        store: TokenStore,
        issue: Callable[[], AccessToken],
        redis_client: redis.Redis,
        *,
        prefix: str,
        app_key_id: str,
        margin_s: float,
        clock: Clock = SYSTEM_CLOCK,
        alert: Alert | None = None,
        lock_ttl_s: float = 20.0,
        wait_for_peer_s: float = 10.0,
        writer: bool = True,
        request_refresh: Callable[[str], object] | None = None,
    ) -> None:
        self._store = store
        self._issue = issue
        self._redis = redis_client
        self._lock_key = redis_keys.token_lock(prefix, app_key_id)
        self._guard_key = redis_keys.token_issued(prefix, app_key_id)
        self._status_key = redis_keys.token_status(prefix, app_key_id)
        self.writer = writer
        self._request_refresh = request_refresh
        self._flight = threading.Lock()  # one refresh per process; waiters share its result
        self._rejected: str | None = None
        self._margin_s = margin_s
        self._clock = clock
        self._alert = alert
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._wait_for_peer_s = wait_for_peer_s
        self._release = redis_client.register_script(redis_keys.lua_source("token_lock_release"))
        self._memory: StoredToken | None = None
        self.last_error: str = ""

    # ---- readers ------------------------------------------------------------------------------
    def get(self) -> str:
        """The current token; refreshes (once, fleet-wide) only when none is usable."""
        now = self._clock.time()
        tok = self._memory
        if tok is not None and now < tok.expires_at - READER_SAFETY_S:
            return tok.access_token
        tok = self._store.read()
        if tok is not None and now < tok.expires_at - READER_SAFETY_S and tok.access_token != self._rejected:
            self._memory = tok
            if not self.writer:
                self.last_error = ""  # the refresh function delivered
            return tok.access_token
        if not self.writer:
            if self._rejected is not None and (tok is None or tok.access_token == self._rejected):
                # Still (or again) the token KIS refused, or none: name it, so the refresh function replaces it
                # even when it finds that token usable in its own memory or re-stored it after a store outage.
                raise self._unavailable(f"KIS rejected the token (fp={token_fingerprint(self._rejected)})")
            raise self._unavailable("no usable KIS token yet")
        return self.refresh(reason="no usable token").access_token

    def _unavailable(self, why: str) -> TokenUnavailableError:
        """A reader: ask the refresh function (through its queue) and report the token unavailable meanwhile."""
        self.last_error = why
        if self._request_refresh is not None:
            try:
                self._request_refresh(why)
            except Exception:  # asking failed: the scheduled refresh still comes
                log.exception("token refresh request failed")
        return TokenUnavailableError(f"{why}; a refresh was requested")

    def current(self) -> StoredToken | None:
        return self._memory or self._store.read()

    def _published(self) -> dict[str, float] | None:
        raw = cast(dict[bytes, bytes], self._redis.hgetall(self._status_key))
        try:
            return {"issued_at": float(raw[b"issued_at"]), "expires_at": float(raw[b"expires_at"])} if raw else None
        except (KeyError, ValueError):
            return None

    def status(self) -> dict[str, Any]:
        """Plain data for /health, /stats and the dashboard; never the token itself. Read from memory or the times
        the writer published in Redis: no Secret Manager access needed."""
        try:
            tok = self._memory
            times = ({"issued_at": tok.issued_at, "expires_at": tok.expires_at} if tok is not None
                     else self._published())
        except Exception as exc:  # a broken store is reported, not raised
            return {"state": f"unreadable: {type(exc).__name__}"}
        if times is None:
            return {"state": "none yet", "last_error": self.last_error or None}
        now = self._clock.time()
        return {"state": "valid" if now < times["expires_at"] else "expired",
                "age_s": round(now - times["issued_at"], 1), "expires_in_s": round(times["expires_at"] - now, 1),
                "last_error": self.last_error or None}

    def on_rejected(self, token: str | None = None) -> None:
        """KIS said EGW00121/EGW00123 for `token`: the writer issues a new one; a reader asks for one and raises
        TokenUnavailableError (used by the retry policy)."""
        rejected = token or (self._memory.access_token if self._memory else None)
        self._memory = None
        if not self.writer:
            self._rejected = rejected
            # The refresh function replaces the token only when told which one KIS refused (by fingerprint:
            # the token itself never leaves this process), otherwise it would find it "not due" and keep it.
            raise self._unavailable(f"KIS rejected the token (fp={token_fingerprint(rejected)})"
                                    if rejected else "KIS rejected the token")
        self.refresh(reason="token rejected by KIS", rejected=rejected)

    # ---- refresh ------------------------------------------------------------------------------
    def refresh_if_due(self, every_s: float = 0.0) -> bool:
        """Scheduled entry, run every `every_s`: refresh when the token is missing or would come within the
        margin of its expiry before the next run, so the refresh always lands at least the margin ahead."""
        tok = self._store.read()
        mine = self._memory
        if mine is not None and self._usable(mine, None) and (tok is None or mine.issued_at > tok.issued_at):
            with self._flight:  # issued here while the store was away (or it came back empty): store it now
                self._restore(mine, None)
            return True
        if tok is not None and self._clock.time() < tok.expires_at - self._margin_s - every_s:
            self._memory = tok
            self._publish(tok)
            return False
        self.refresh(reason="scheduled refresh", rejected=tok.access_token if tok else None)
        return True

    def refresh(self, *, reason: str, rejected: str | None = None) -> StoredToken:
        if not self.writer:
            raise self._unavailable(f"{reason}; only the refresh function issues tokens")
        with self._flight:  # one refresh per process: a waiter finds the token the first one stored
            return self._refresh(reason, rejected)

    def _refresh(self, reason: str, rejected: str | None) -> StoredToken:
        if self._memory is not None and self._usable(self._memory, rejected):
            return self._restore(self._memory, rejected)
        owner = uuid.uuid4().hex
        if not self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ttl_ms):
            return self._wait_for_peer(rejected)
        try:
            current = self._store.read()
            if self._usable(current, rejected):
                assert current is not None
                self._memory = current  # another instance refreshed while we waited for the lock
                return current
            if not self._redis.set(self._guard_key, "1", nx=True, ex=int(TOKEN_ISSUE_INTERVAL_S)):
                return self._fallback(current, rejected, "token issue allowed once per 60 s; issued recently")
            try:
                issued = self._issue()
            except KISTokenIssueThrottledError:
                self._redis.set(self._guard_key, "1", ex=int(TOKEN_ISSUE_INTERVAL_S))
                return self._fallback(current, rejected, "KIS refused token issue (EGW00133)")
            except KISError as exc:
                self._fail(f"token issue failed: {type(exc).__name__} {exc.msg_cd}".strip())
                raise TokenUnavailableError(self.last_error) from exc
            stored = StoredToken(access_token=issued.value, expires_at=issued.expires_at.timestamp(),
                                 issued_at=self._clock.time())
            # Kept before it is stored: a store that is away (Secret Manager down) fails this refresh, and the
            # next one writes this token again instead of losing it (KIS issues one a minute at most).
            self._memory = stored
            self._store.write(stored)
            self._publish(stored)
            self.last_error = ""
            log.info("KIS token refreshed (%s); expires at %s", reason, issued.expires_at.isoformat())
            return stored
        finally:
            self._release(keys=[self._lock_key], args=[owner])

    def _restore(self, tok: StoredToken, rejected: str | None) -> StoredToken:
        """The writer's token is still usable: make sure the store holds it. A store that lost it (Secret Manager
        back empty, or a write that failed while it was away) would otherwise leave every reader without a token
        while this process, finding its own copy usable, never issues or writes one."""
        current = self._store.read()
        if current is not None and current.access_token == tok.access_token:
            return tok
        if self._usable(current, rejected) and current is not None and current.issued_at >= tok.issued_at:
            self._memory = current  # another writer stored a newer token: use it
            return current
        log.warning("the token store lacks the current KIS token; writing it again")
        self._store.write(tok)
        self._publish(tok)
        return tok

    def _publish(self, tok: StoredToken) -> None:
        """The token's times (not the token) for status readers that hold no access to the secret. No TTL: under
        Memorystore's volatile-lru only keys with one are evicted, and an evicted status would report "no token
        yet" while a valid one is in use (an expired token's times say "expired" by themselves)."""
        try:
            self._redis.hset(self._status_key, mapping={"issued_at": repr(tok.issued_at),
                                                        "expires_at": repr(tok.expires_at)})
            self._redis.persist(self._status_key)  # written with a TTL by earlier versions
        except Exception:  # the token is stored; only its status display would lag
            log.warning("could not publish the token status", exc_info=True)

    def _usable(self, tok: StoredToken | None, rejected: str | None) -> bool:
        if tok is None or tok.access_token == rejected:
            return False
        return self._clock.time() < tok.expires_at - self._margin_s

    def _wait_for_peer(self, rejected: str | None) -> StoredToken:
        """Another instance holds the lock: wait for the token it writes."""
        stop = self._clock.monotonic() + self._wait_for_peer_s
        while self._clock.monotonic() < stop:
            self._clock.sleep(0.05)
            tok = self._store.read()
            if tok is not None and tok.access_token != rejected and self._clock.time() < tok.expires_at:
                self._memory = tok
                return tok
            if not self._redis.exists(self._lock_key):
                break
        tok = self._store.read()
        if tok is not None and tok.access_token != rejected and self._clock.time() < tok.expires_at:
            self._memory = tok
            return tok
        self._fail("waited for another instance's token refresh; none arrived")
        raise TokenUnavailableError(self.last_error)

    def _fallback(self, current: StoredToken | None, rejected: str | None, why: str) -> StoredToken:
        # The shared token may still be valid (just inside the margin): keep using it until the guard lifts.
        if current is not None and current.access_token != rejected and self._clock.time() < current.expires_at:
            self._memory = current
            log.warning("%s; keeping the current token until it can be refreshed", why)
            return current
        self._fail(why)
        raise TokenUnavailableError(self.last_error)

    def _fail(self, why: str) -> None:
        self.last_error = why
        log.error("KIS token unavailable: %s", why)
        if self._alert is not None:
            try:
                self._alert("token_refresh_failed", {"reason": why})
            except Exception:  # an alert channel failing must not hide the token failure
                log.exception("token alert hook failed")
