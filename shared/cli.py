"""`kisgw` command line: sim, dev, settings (and more as the gateway grows)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="kisgw", description="KIS market data gateway")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sim", help="run the KIS simulator (see `kisgw sim --help`)", add_help=False)
    sub.add_parser("bench", help="benchmark the local stack against a naive gateway (see `kisgw bench --help`)",
                   add_help=False)
    sub.add_parser("keys", help="create, list or revoke gateway API keys (see `kisgw keys --help`)", add_help=False)
    dev = sub.add_parser("dev", help="run the deployed topology locally on loopback")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--threads", type=int, default=64, help="gunicorn threads (waiting requests hold one)")
    dev.add_argument("--workers", type=int, default=1)
    fs = dev.add_mutually_exclusive_group()
    fs.add_argument("--firestore", dest="firestore", action="store_true", default=None,
                    help="require the Google Cloud SDK's Firestore emulator (default: used where installed)")
    fs.add_argument("--no-firestore", dest="firestore", action="store_false",
                    help="Redis-backed stand-ins for Firestore")
    sub.add_parser("settings", help="print every setting with its current value (secrets masked)")
    sub.add_parser("settings-table", help="print the settings table (markdown) for README")
    if argv and argv[0] == "sim":
        from shared.sim.cli import run as run_sim

        return run_sim(argv[1:])
    if argv and argv[0] == "bench":
        from shared.bench import run as run_bench

        return run_bench(argv[1:])
    if argv and argv[0] == "keys":
        from shared.keys_cli import run as run_keys

        return run_keys(argv[1:])
    args = parser.parse_args(argv)
    if args.cmd == "dev":
        from shared.localstack import run

        return run(args.port, threads=args.threads, workers=args.workers, firestore=args.firestore)
    if args.cmd == "settings":
        from shared.config import SettingsError, load_settings

        try:
            values = load_settings().redacted()
        except SettingsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for k, v in values.items():
            print(f"{k}={v}")
        return 0
    if args.cmd == "settings-table":
        from shared.config import settings_markdown

        print(settings_markdown(), end="")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
