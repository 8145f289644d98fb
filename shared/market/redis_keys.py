"""The gateway's Redis key scheme, in one place, and the one loader of the Lua scripts that work on it.

Every key starts with the configured prefix (settings.redis_prefix), so several gateways or test runs can
share one Redis. Keys that one Lua script touches together carry the same hash tag (`{...}`), which keeps
the scripts valid on a clustered Redis too.

    <prefix>:lim:{<app_key_id>}:log        ZSET  grant log of the last second (score = Redis time in µs)
    <prefix>:lim:{<app_key_id>}:state      HASH  last grant, AIMD state, last demand per call class
    <prefix>:lim:{<app_key_id>}:egw        ZSET  recent EGW00201 reports (burst detection)
    <prefix>:lim:{<app_key_id>}:epoch      STR   since when the limiter's state is complete (fail-safe marker)
    <prefix>:pend:{<kind>}:set             ZSET  pending symbols (score = first-wanted Redis time, s)
    <prefix>:pend:{<kind>}:lease           ZSET  claimed symbols (score = lease expiry, Redis time, s)
    <prefix>:pend:{<kind>}:owner           HASH  symbol -> owner of its current claim
    <prefix>:pend:{<kind>}:fail:<symbol>   STR   why the last fetch of a symbol failed (expires)
    <prefix>:pend:{<kind>}:want            ZSET  pending symbols a reader waits for (score = until when, s)
    <prefix>:pend:{<kind>}:keep            SET   pending symbols that never expire unwanted (preloads)
    <prefix>:pend:{<kind>}:new:<caller>    HASH  new symbols this caller entered in the current second

Limiter and pending keys carry no expiry that could drop them early (only the per-caller second counter and
failure notes expire); cache keys all carry a TTL, so a volatile-* eviction policy evicts only cache entries.
    <prefix>:cache:<kind>:fresh:<symbol>   STR   value while fresh (expires with the freshness)
    <prefix>:cache:<kind>:last:<symbol>    STR   last-known copy for stale answers (long TTL)
    <prefix>:cache:<kind>:updates          channel: comma-separated symbols just written
    <prefix>:breaker:<name>                HASH  the shared circuit breaker (state, opened_at, failures, probe)
    <prefix>:breaker:<name>:failures       STR   run of failures when the breaker itself lives in Firestore
    <prefix>:kis:token                     HASH  the KIS access token record (TOKEN_STORE=redis://)
    <prefix>:token:<app_key_id>:lock       STR   the token refresh lock (owner id, expires)
    <prefix>:token:<app_key_id>:issued     STR   guard: a token was issued within KIS's one-per-minute window
    <prefix>:token:<app_key_id>:status     HASH  the last refresh's outcome, shared by every instance
    <prefix>:idem:<sha256(key)>            STR   an order's idempotency record (JSON, 24 h)
    <prefix>:apikey:<key_id>               HASH  an API key's record (digest, scopes, dates)
    <prefix>:apikeys                       SET   every API key id
    <prefix>:apikeys:revoked               channel: ids of keys just revoked
    <prefix>:metrics:src:<function:host:pid>  STR  one process's counters and histograms (JSON, expires)
    <prefix>:symbols:meta                  HASH  the symbol master in use (version, loaded_at, count, source, errors)
    <prefix>:symbols:v:<version>           HASH  one stored master: code -> symbol JSON
    <prefix>:symbols:en                    HASH  code -> English name learned from symbol-info answers
    <prefix>:inbound:<caller>              STR   per-caller request rate (GCRA theoretical arrival time, µs)
    <prefix>:inflight:<caller>             ZSET  per-caller requests in flight (score = slot expiry, Redis time s)
    <prefix>:cache:<kind>:ahead:<symbol>   STR   set (NX) by the one reader that starts a refresh ahead

Lua scripts live in `lua/` beside this module, one file each, loaded by `lua_source` and run by SHA.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_LUA_DIR = Path(__file__).with_name("lua")


def limiter_log(prefix: str, app_key_id: str) -> str:
    return f"{prefix}:lim:{{{app_key_id}}}:log"


def limiter_state(prefix: str, app_key_id: str) -> str:
    return f"{prefix}:lim:{{{app_key_id}}}:state"


def limiter_epoch(prefix: str, app_key_id: str) -> str:
    return f"{prefix}:lim:{{{app_key_id}}}:epoch"


def limiter_reports(prefix: str, app_key_id: str) -> str:
    return f"{prefix}:lim:{{{app_key_id}}}:egw"


def pending_set(prefix: str, kind: str) -> str:
    return f"{prefix}:pend:{{{kind}}}:set"


def pending_leases(prefix: str, kind: str) -> str:
    return f"{prefix}:pend:{{{kind}}}:lease"


def pending_owners(prefix: str, kind: str) -> str:
    return f"{prefix}:pend:{{{kind}}}:owner"


def pending_failure(prefix: str, kind: str, symbol: str) -> str:
    return f"{prefix}:pend:{{{kind}}}:fail:{symbol}"


def pending_wanted(prefix: str, kind: str) -> str:
    return f"{prefix}:pend:{{{kind}}}:want"


def pending_kept(prefix: str, kind: str) -> str:
    return f"{prefix}:pend:{{{kind}}}:keep"


def pending_caller(prefix: str, kind: str, caller: str) -> str:
    return f"{prefix}:pend:{{{kind}}}:new:{caller}"


def cache_fresh(prefix: str, kind: str, symbol: str) -> str:
    return f"{prefix}:cache:{kind}:fresh:{symbol}"


def cache_last_known(prefix: str, kind: str, symbol: str) -> str:
    return f"{prefix}:cache:{kind}:last:{symbol}"


def cache_channel(prefix: str, kind: str) -> str:
    return f"{prefix}:cache:{kind}:updates"


def cache_refresh_marker(prefix: str, kind: str, symbol: str) -> str:
    return f"{prefix}:cache:{kind}:ahead:{symbol}"


def breaker(prefix: str, name: str) -> str:
    return f"{prefix}:breaker:{name}"


def breaker_failures(prefix: str, name: str) -> str:
    return f"{prefix}:breaker:{name}:failures"


def breaker_shown(prefix: str, name: str) -> str:
    """The same read kept longer, only to be shown with its age (health, stats), never to decide with."""
    return f"{prefix}:breaker:{name}:shown"


def breaker_copy(prefix: str, name: str) -> str:
    """The last read of a breaker's Firestore document, for instances whose own read is due (expires)."""
    return f"{prefix}:breaker:{name}:copy"


def token_record(prefix: str, name: str = "kis:token") -> str:
    return f"{prefix}:{name}"


def token_lock(prefix: str, app_key_id: str) -> str:
    return f"{prefix}:token:{app_key_id}:lock"


def token_issued(prefix: str, app_key_id: str) -> str:
    return f"{prefix}:token:{app_key_id}:issued"


def token_status(prefix: str, app_key_id: str) -> str:
    return f"{prefix}:token:{app_key_id}:status"


def idempotency_record(prefix: str, record_id: str) -> str:
    return f"{prefix}:idem:{record_id}"


def api_key(prefix: str, key_id: str) -> str:
    return f"{prefix}:apikey:{key_id}"


def api_key_ids(prefix: str) -> str:
    return f"{prefix}:apikeys"


def api_key_revocations(prefix: str) -> str:
    """Channel on which a revoked key's id is announced, so instances drop it from their caches."""
    return f"{prefix}:apikeys:revoked"


def metrics_source(prefix: str, source: str) -> str:
    """One process's published counters; `source="*"` is the pattern that finds them all."""
    return f"{prefix}:metrics:src:{source}"


def symbol_master_meta(prefix: str) -> str:
    return f"{prefix}:symbols:meta"


def symbol_master_version(prefix: str, version: str) -> str:
    return f"{prefix}:symbols:v:{version}"


def symbol_master_english(prefix: str) -> str:
    return f"{prefix}:symbols:en"


def inbound(prefix: str, caller: str) -> str:
    return f"{prefix}:inbound:{caller}"


def inflight(prefix: str, caller: str) -> str:
    return f"{prefix}:inflight:{caller}"


@cache
def lua_source(name: str) -> str:
    """Text of `shared/market/lua/<name>.lua`, read once per process (scripts then run by SHA). The limiter's
    scripts get `limiter_common.lua` (Redis time, AIMD budget) prepended: Redis scripts cannot import."""
    text = (_LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    if name.startswith("limiter_") and name != "limiter_common":
        text = (_LUA_DIR / "limiter_common.lua").read_text(encoding="utf-8") + text
    return text
