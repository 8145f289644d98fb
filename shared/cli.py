"""`kisgw` command line: sim, dev, settings, keys, bench."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kisgw", description="KIS market data gateway")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("settings", help="print every setting with its current value (secrets masked)")
    args = parser.parse_args(argv)
    if args.cmd == "settings":
        from shared.config import load_settings

        for k, v in load_settings().redacted().items():
            print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
