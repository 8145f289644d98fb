"""`kisgw keys create|list|revoke`: manage the gateway's API keys where IDEMPOTENCY_STORE points.

`create` prints the key once; only its HMAC digest is stored, so a lost key is revoked and replaced,
never recovered.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from shared.config import Settings, SettingsError, load_settings
from shared.orders.api_keys import SCOPES, ApiKeys, UnknownScopeError, api_keys_from_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kisgw keys", description="manage API keys of the gateway")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--scopes", required=True, help=f"comma-separated: {','.join(SCOPES)}")
    create.add_argument("--name", default="", help="who or what uses the key (shown by list)")
    sub.add_parser("list", help="list keys (ids, names, scopes; never the keys)")
    revoke = sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    return parser


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
            key, record = keys.create(args.scopes, name=args.name)
        except UnknownScopeError as exc:
            print(f"error: {exc}", file=err)
            return 2
        print(key, file=out)
        print(f"id={record.key_id} scopes={','.join(record.scopes)} name={record.name or '-'}", file=err)
        print("store the key now: it is not kept and cannot be shown again", file=err)
        return 0
    if args.action == "list":
        print(f"{'id':<14}{'state':<9}{'created':<22}{'revoked':<22}{'scopes':<36}name", file=out)
        for r in keys.list():
            state = "active" if r.active else "revoked"
            print(f"{r.key_id:<14}{state:<9}{_when(r.created_at):<22}{_when(r.revoked_at):<22}"
                  f"{','.join(r.scopes):<36}{r.name}", file=out)
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
