"""The Redis key scheme of the service layer, in one place, and the Lua scripts that work on it.

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
    <prefix>:cache:<kind>:ahead:<symbol>   STR   set (NX) by the one reader that starts a refresh ahead
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


@cache
def lua_source(name: str) -> str:
    """Text of `shared/market/lua/<name>.lua`, read once per process (scripts then run by SHA). The limiter's
    scripts get `limiter_common.lua` (Redis time, AIMD budget) prepended: Redis scripts cannot import."""
    text = (_LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    if name.startswith("limiter_") and name != "limiter_common":
        text = (_LUA_DIR / "limiter_common.lua").read_text(encoding="utf-8") + text
    return text
