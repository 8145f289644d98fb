"""`kisgw kis ...`: call KIS once from the command line with the configured key (a debugging aid).

Orders are left out on purpose: a typo here must not buy anything. Each run issues a token, and KIS
allows one issue per minute per app key: do not run it in a loop.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any

from shared.config import load_settings
from shared.kis.client import KISClient
from shared.kis.errors import KISError
from shared.kis.models import plain


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kisgw kis", description="one KIS call with the configured app key")
    parser.add_argument("--base-url", help="override KIS_BASE_URL (e.g. the local simulator)")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("token", help="issue a token and print its expiry (never the token)")
    sub.add_parser("price", help="current price").add_argument("symbols", nargs="+")
    sub.add_parser("index", help="index level (0001 KOSPI, 1001 KOSDAQ, 2001 KOSPI200)").add_argument(
        "codes", nargs="+")
    sub.add_parser("daily", help="last 30 daily bars").add_argument("symbol")
    period = sub.add_parser("period", help="daily bars between two dates (YYYY-MM-DD)")
    period.add_argument("symbol")
    period.add_argument("start", type=date.fromisoformat)
    period.add_argument("end", type=date.fromisoformat)
    sub.add_parser("info", help="stock basic info").add_argument("symbol")
    sub.add_parser("balance", help="account balance")
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {"kis_base_url": args.base_url} if args.base_url else {}
    with KISClient(load_settings(**overrides)) as client:
        try:
            result = _call(client, args)
        except KISError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}, ensure_ascii=False))
            return 1
    print(json.dumps(plain(result), ensure_ascii=False, indent=2))
    return 0


def _call(client: KISClient, args: argparse.Namespace) -> Any:
    if args.what == "token":
        token = client.issue_token()
        return {"expires_at": token.expires_at, "issued_at": token.issued_at}
    if args.what == "price":
        return client.get_current_prices(args.symbols)
    if args.what == "index":
        return client.get_index_prices(args.codes)
    if args.what == "daily":
        return client.get_daily_prices(args.symbol)
    if args.what == "period":
        return client.get_period_ohlcv(args.symbol, args.start, args.end)
    if args.what == "info":
        return client.get_stock_info(args.symbol)
    return client.get_balance()


main = run
