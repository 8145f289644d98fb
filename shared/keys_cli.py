"""`kisgw keys create|list|revoke`: manage the gateway's API keys where IDEMPOTENCY_STORE points.

`create` prints the key once; only its HMAC digest is stored, so a lost key is revoked and replaced,
never recovered. Each key may carry its own rate and concurrency (`--rate`, `--concurrency`; 0 = the
default of its scopes) and, for a key shipped in a web page, the origins it may be used from (`--origins`;
such a browser key holds read scopes only). `set` changes them later.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from shared.api.key_limits import limits_for
from shared.backends import api_keys_from_settings
from shared.config import Settings, SettingsError, load_settings
from shared.orders.api_keys import SCOPES, ApiKeys, KeyPolicyError, UnknownScopeError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kisgw keys", description="manage API keys of the gateway")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--scopes", required=True, help=f"comma-separated: {','.join(SCOPES)}")
    create.add_argument("--name", default="", help="who or what uses the key (shown by list)")
    _limit_args(create)
    change = sub.add_parser("set", help="change a key's rate, concurrency or origins")
    change.add_argument("key_id")
    _limit_args(change)
    sub.add_parser("list", help="list keys (ids, names, scopes, limits; never the keys)")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    return parser


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=int, default=None, help="requests per second (0 = the scopes' default)")
    p.add_argument("--concurrency", type=int, default=None, help="requests in flight at once (0 = default)")
    p.add_argument("--origins", default=None,
                   help="browser key: comma-separated web origins it may be used from (read scopes only); "
                        "'' clears")


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(argv: list[str], *, settings: Settings | None = None, redis_client: Any = None,
        firestore_client: Any = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        settings = settings or load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if settings.idempotency_store.startswith("memory://"):
        print("error: IDEMPOTENCY_STORE=memory:// keeps keys inside one process; use redis:// or firestore://",
              file=err)
        return 2
    try:
        keys: ApiKeys = api_keys_from_settings(settings, redis_client=redis_client, firestore_client=firestore_client)
    except SettingsError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if args.action == "create":
        try:
            key, record = keys.create(args.scopes, name=args.name, rate_per_s=args.rate or 0,
                                      max_concurrent=args.concurrency or 0, origins=args.origins or ())
        except (UnknownScopeError, KeyPolicyError) as exc:
            print(f"error: {exc}", file=err)
            return 2
        print(key, file=out)
        rate, conc = limits_for(settings, record.scopes, record.rate_per_s, record.max_concurrent)
        print(f"id={record.key_id} scopes={','.join(record.scopes)} name={record.name or '-'} rate={rate}/s "
              f"concurrency={conc} origins={','.join(record.origins) or '-'}", file=err)
        print("store the key now: it is not kept and cannot be shown again", file=err)
        return 0
    if args.action == "set":
        try:
            changed = keys.update(args.key_id.strip(), rate_per_s=args.rate, max_concurrent=args.concurrency,
                                  origins=args.origins)
        except KeyPolicyError as exc:
            print(f"error: {exc}", file=err)
            return 2
        if changed is None:
            print(f"error: no key with id {args.key_id[:20]!r}", file=err)
            return 1
        rate, conc = limits_for(settings, changed.scopes, changed.rate_per_s, changed.max_concurrent)
        print(f"{changed.key_id} rate={rate}/s concurrency={conc} origins={','.join(changed.origins) or '-'}",
              file=out)
        return 0
    if args.action == "list":
        print(f"{'id':<14}{'state':<9}{'created':<22}{'revoked':<22}{'scopes':<36}{'rate/s':<8}{'conc':<6}"
              f"{'origins':<30}name", file=out)
        for r in keys.list():
            state = "active" if r.active else "revoked"
            rate, conc = limits_for(settings, r.scopes, r.rate_per_s, r.max_concurrent)
            print(f"{r.key_id:<14}{state:<9}{_when(r.created_at):<22}{_when(r.revoked_at):<22}"
                  f"{','.join(r.scopes):<36}{rate:<8}{conc:<6}{','.join(r.origins) or '-':<30}{r.name}", file=out)
        return 0
    if args.action == "revoke":
        if not keys.revoke(args.key_id.strip()):
            print(f"error: no key with id {args.key_id[:20]!r}", file=err)
            return 1
        print(f"revoked {args.key_id.strip()}", file=out)
        return 0
    return 1


def main() -> int:
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
